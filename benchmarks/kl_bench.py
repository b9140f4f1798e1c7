"""KL speed against its peers, measured in one run: prints times and ratios.

    python benchmarks/kl_bench.py [--threads 1] [--repeats 30] [--only small-classes]

1. The VAE term, B=4096, D=32, forward + backward:
   elbokit.vae_kl(mu, logvar) against torch.distributions.kl_divergence(Normal(mu, sigma),
   Normal(0, 1)).sum(-1) (torch's default validation on, as users run it) and against the
   hand-written closed form -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).
2. Categorical KL, 4096 x 1024, forward: elbokit.categorical_kl on float32 logits against
   scipy.special.rel_entr(p, q).sum(-1) on float64 probabilities (computed outside the timing),
   with the largest relative difference between the two. No autograd graph is recorded here,
   which lets elbokit reuse its buffers; the training path is measured in 3.
3. (no target; for the world-model work) factorized categorical KL at DreamerV2's size, 32
   groups x 32 classes, batch 50 x 50, forward + backward: elbokit against torch's
   kl_divergence on Independent(OneHotCategorical).
4. (no target; for the agent's 8 x 8 latents and 2-action policy) log_softmax and softmax over
   few classes, forward + backward: elbokit.divergence.categorical's against torch's, at the
   agent's sizes (256 x 8 groups x 8 classes, 3840 x 8 x 8, 3840 x 2) and at 16, 32 classes
   (where the two routes cross).

Timings are medians over interleaved repeats (each contender runs once per round, so drifts in
machine load hit all of them alike). The thread count is set explicitly and printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.special
import torch
from torch.distributions import Normal, kl_divergence

from elbokit import categorical_kl, vae_kl
from elbokit.train.settings import describe_machine


def _median_times(contenders: dict, repeats: int, inner: int) -> dict[str, float]:
    for fn in contenders.values():  # warm-up
        for _ in range(3):
            fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return {name: statistics.median(v) for name, v in times.items()}


def bench_vae_term(repeats: int) -> bool:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4096, 32, generator=g).requires_grad_()
    logvar = (0.5 * torch.randn(4096, 32, generator=g)).requires_grad_()

    def torch_dist():
        sigma = torch.exp(0.5 * logvar)
        prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
        kl_divergence(Normal(mu, sigma), prior).sum(-1).sum().backward()

    def hand_written():
        (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)).sum().backward()

    def elbokit_():
        vae_kl(mu, logvar).sum().backward()

    with torch.no_grad():
        ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
        err = ((vae_kl(mu, logvar) - ref).abs() / ref.abs()).max().item()
    t = _median_times(
        {"torch.distributions": torch_dist, "hand-written": hand_written, "elbokit": elbokit_},
        repeats,
        inner=20,
    )
    ours = t["elbokit"]
    print("VAE term KL(N(mu, diag(exp(logvar))) || N(0, I)), B=4096, D=32, forward+backward")
    for name, v in t.items():
        print(f"  {name:<22} {v * 1e6:9.1f} us   {v / ours:5.2f}x elbokit's time")
    print(f"  max relative difference from torch: {err:.1e}")
    ok = t["torch.distributions"] / ours >= 3.0 and t["hand-written"] / ours >= 1.0
    print(f"  target >= 3x torch and >= 1x hand-written: {'met' if ok else 'NOT met'}")
    return ok


def bench_categorical(repeats: int) -> bool:
    g = torch.Generator().manual_seed(1)
    p_logits = 2.0 * torch.randn(4096, 1024, generator=g)
    q_logits = 2.0 * torch.randn(4096, 1024, generator=g)
    p = torch.softmax(p_logits.double(), -1).numpy()
    q = torch.softmax(q_logits.double(), -1).numpy()

    def scipy_():
        return scipy.special.rel_entr(p, q).sum(-1)

    def elbokit_():
        return categorical_kl(p_logits, q_logits)

    ref = scipy_()
    err = float(np.max(np.abs(elbokit_().double().numpy() - ref) / np.abs(ref)))
    t = _median_times(
        {"scipy rel_entr (f64)": scipy_, "elbokit (f32 logits)": elbokit_}, repeats, inner=3
    )
    ours = t["elbokit (f32 logits)"]
    print("Categorical KL, 4096 x 1024, forward")
    for name, v in t.items():
        print(f"  {name:<22} {v * 1e3:9.2f} ms   {v / ours:5.2f}x elbokit's time")
    print(f"  max relative difference from scipy: {err:.1e}")
    ok = t["scipy rel_entr (f64)"] / ours >= 8.0 and err <= 1e-5
    print(f"  target >= 8x scipy, within 1e-5 relative: {'met' if ok else 'NOT met'}")
    return ok


def bench_factorized(repeats: int) -> None:
    from torch.distributions import Independent, OneHotCategorical

    g = torch.Generator().manual_seed(2)
    pl = torch.randn(2500, 32, 32, generator=g).requires_grad_()
    ql = torch.randn(2500, 32, 32, generator=g).requires_grad_()

    def torch_dist():
        p, q = (
            Independent(OneHotCategorical(logits=pl), 1),
            Independent(OneHotCategorical(logits=ql), 1),
        )
        kl_divergence(p, q).sum().backward()

    def elbokit_():
        categorical_kl(pl, ql, event_dims=2).sum().backward()

    t = _median_times({"torch.distributions": torch_dist, "elbokit": elbokit_}, repeats, inner=5)
    ours = t["elbokit"]
    print("Factorized categorical KL, 2500 x 32 groups x 32 classes, forward+backward")
    for name, v in t.items():
        print(f"  {name:<22} {v * 1e3:9.2f} ms   {v / ours:5.2f}x elbokit's time")


def bench_small_classes(repeats: int) -> None:
    import torch.nn.functional as F

    from elbokit.divergence.categorical import log_softmax, softmax

    print("log_softmax / softmax over the last dim, forward + backward (fp32)")
    for shape in ((256, 8, 8), (3840, 8, 8), (3840, 2), (4096, 16), (4096, 32)):
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)

        def fb(f, x=x, g=g):
            return lambda: torch.autograd.grad(f(x), x, g)

        t = _median_times({"torch log_softmax": fb(lambda v: F.log_softmax(v, -1)),
                           "elbokit log_softmax": fb(log_softmax),
                           "torch softmax": fb(lambda v: F.softmax(v, -1)),
                           "elbokit softmax": fb(softmax)}, repeats, 10)  # fmt: skip
        print(f"  {'x'.join(map(str, shape)):<12} log_softmax: torch {t['torch log_softmax'] * 1e6:8.1f} us, "
              f"elbokit {t['elbokit log_softmax'] * 1e6:8.1f} us ({t['torch log_softmax'] / t['elbokit log_softmax']:.2f}x); "
              f"softmax: torch {t['torch softmax'] * 1e6:8.1f} us, elbokit {t['elbokit softmax'] * 1e6:8.1f} us "
              f"({t['torch softmax'] / t['elbokit softmax']:.2f}x)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=30, help="interleaved rounds (default 30)")
    ap.add_argument("--only", choices=("vae", "categorical", "factorized", "small-classes"),
                    help="run one part (default: all)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe_machine()}; numpy {np.__version__}, scipy {scipy.__version__}")
    ok = True
    if args.only in (None, "vae"):
        ok &= bench_vae_term(args.repeats)
    if args.only in (None, "categorical"):
        ok &= bench_categorical(args.repeats)
    if args.only in (None, "factorized"):
        bench_factorized(args.repeats)
    if args.only in (None, "small-classes"):
        bench_small_classes(args.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
