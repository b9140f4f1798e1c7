"""VAE training speed and quality against peers, all measured in one run.

    python benchmarks/vae_vs_peers.py [--data mnist5k] [--epochs 10] [--threads 2]
    python benchmarks/vae_vs_peers.py --data fashion-mnist --epochs 5 [--profile]

Same model for everyone: MLP 784-512-512-(32 Gaussian), decoder mirrored, Bernoulli likelihood,
ReLU, Adam 1e-3, batch 100, dynamic binarization, same data and split, same epochs. Contenders:

- bare:           a hand-written PyTorch loop (the floor of framework overhead), denormals as is
- bare+flush:     the same loop with torch.set_flush_denormal(True)
- bare compiled:  the flushed loop with its forward and loss under torch.compile (Inductor:
                  backward compiled with it) and fused Adam
- elbokit:        elbokit's Trainer, fp32 (it flushes denormals for the run)
- elbokit bf16:   the same with --precision bf16 (autocast)
- elbokit compiled, elbokit bf16 compiled: the same with --compile on
- pythae:         pythae's VAE with these nets and its BaseTrainer (if pythae is installed)
- pyro:           Pyro's SVI with TraceMeanField_ELBO (if pyro-ppl is installed)

Prints seconds per epoch (mean over epochs 2..N, after warm-up and compiling; the first epoch of
each compiled contender, which compiles, apart with the break-even in epochs) with the ratio to
elbokit, the test ELBO of every contender by one common evaluator (analytic KL, a fixed
binarization of the test set), the machine's fp32 and bf16 matmul throughput, and the fraction of
it that elbokit's training reaches. Peers are optional imports: install them into a separate
environment (pip install pythae pyro-ppl) to compare.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.data import load_data
from elbokit.divergence import vae_kl
from elbokit.evaluate import importance_log_likelihood
from elbokit.latents import GaussianLatent
from elbokit.likelihoods import BernoulliLikelihood
from elbokit.models.vae import VAE, VAEConfig
from elbokit.objectives import ELBO
from elbokit.train import AdamConfig, ObjectiveLearner, TrainConfig, Trainer
from elbokit.train.settings import bf16_is_native, describe_machine, matmul_rates

HIDDEN, LATENT, BATCH, LR = (512, 512), 32, 100, 1e-3


def nets():
    enc = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2 * LATENT)
    )
    dec = nn.Sequential(
        nn.Linear(LATENT, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 784)
    )
    return enc, dec


IS_K = 1000


class _Nets(nn.Module):
    """Any contender's trained nets seen through the LatentVariableModel interface, so that one
    estimator scores everyone's importance-sampled log-likelihood."""

    def __init__(self, encode, decode_logits):
        super().__init__()
        self.encode_fn, self.decode_fn = encode, decode_logits
        self.latent = GaussianLatent(LATENT)
        self.likelihood = BernoulliLikelihood()

    def encode(self, x):
        return self.encode_fn(x)

    def log_likelihood(self, z, x):
        logits = self.decode_fn(z.reshape(-1, LATENT)).view(*z.shape[:-1], -1)
        return self.likelihood.log_prob(logits, x)


@torch.no_grad()
def test_elbo(encode, decode_logits, test_raw: torch.Tensor) -> tuple[float, float]:
    """Mean test ELBO and importance-sampled log p(x) (k = IS_K) in nats, on the test set
    binarized once (seed 123); the ELBO with one z per image and the analytic KL."""
    x = torch.bernoulli(
        test_raw.float().div(255).flatten(1), generator=torch.Generator().manual_seed(123)
    )
    g = torch.Generator().manual_seed(456)
    total = 0.0
    for xb in x.split(500):
        h = encode(xb)
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
        recon = -F.binary_cross_entropy_with_logits(decode_logits(z), xb, reduction="none").sum(-1)
        total += (recon - vae_kl(mu, logvar)).sum().item()
    nets = _Nets(encode, decode_logits)
    ll = importance_log_likelihood(nets, x, IS_K, generator=torch.Generator().manual_seed(789))
    return total / len(x), ll.mean


def epochs_timed(run_epoch, epochs):
    times = []
    for e in range(epochs):
        t = time.perf_counter()
        run_epoch(e)
        times.append(time.perf_counter() - t)
    return times


def bare(data, epochs, flush: bool, compiled: bool = False):
    torch.manual_seed(0)
    enc, dec = nets()
    params = [*enc.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=LR, fused=compiled)
    train = data.train

    def loss_of(x):
        h = enc(x)
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").sum(-1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        return (recon + kl).mean()

    step_loss = torch.compile(loss_of) if compiled else loss_of

    def run_epoch(e):
        order = torch.randperm(len(train))
        for i in range(0, len(train), BATCH):
            x = torch.bernoulli(train[order[i : i + BATCH]].float().div(255).flatten(1))
            loss = step_loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()

    torch.set_flush_denormal(flush)
    try:
        times = epochs_timed(run_epoch, epochs)
    finally:
        torch.set_flush_denormal(False)
    return times, test_elbo(enc, dec, data.test)


class _EpochClock:
    """The data with the time each training epoch's batches were asked for, and the time the
    evaluation after the last epoch asked for the test set's: the epochs' times."""

    def __init__(self, data):
        self.data, self.starts, self.test_asked = data, [], None

    def __getattr__(self, name):
        return getattr(self.data, name)

    def batches(self, split, *args, **kw):
        now = time.perf_counter()
        if split == "train":
            self.starts.append(now)
        elif self.test_asked is None:
            self.test_asked = now
        return self.data.batches(split, *args, **kw)


def elbokit_fit(data, epochs, precision: str, threads: int, seed: int = 0, compile="off"):
    """elbokit's training alone: (the model, each epoch's seconds without the evaluation after
    it)."""
    torch.manual_seed(seed)
    model = VAE(VAEConfig(data_shape=data.shape, latent_dim=LATENT, hidden=HIDDEN))
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, checkpoint_every=10**9, log_every=10**9,
                      eval_every=epochs, progress=False, precision=precision, threads=threads,
                      seed=seed, compile=compile)  # fmt: skip
    clock = _EpochClock(data)
    with tempfile.TemporaryDirectory() as d:
        Trainer(cfg, d).fit(ObjectiveLearner(model, ELBO(), AdamConfig(lr=LR)), clock)
        end = time.perf_counter()
    ends = [*clock.starts[1:], clock.test_asked or end]  # eval_every = epochs: only at the end
    return model, [b - a for a, b in zip(clock.starts, ends, strict=True)]


def profile_epoch(data, threads: int, top: int = 10) -> None:
    """One epoch of elbokit's fp32 training under torch.profiler: the operations by their own CPU
    time, and where the data's preparation (indexing the batch, binarizing it) ranks."""
    from torch.profiler import profile

    with profile() as prof:
        elbokit_fit(data, 1, "fp32", threads)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    print(f"\nprofile of one elbokit fp32 epoch ({total / 1e6:.2f} s of operations, self time):")
    for i, e in enumerate(rows[:top]):
        print(f"  {i + 1:2d}. {e.key:<45} {e.self_cpu_time_total / 1e3:8.1f} ms  "
              f"{e.self_cpu_time_total / total:5.1%}  ({e.count} calls)")  # fmt: skip
    data_ops = ("aten::bernoulli_", "aten::index", "aten::index_select", "aten::randperm")
    for i, e in enumerate(rows):
        if e.key in data_ops:
            print(
                f"  data preparation: {e.key} ranks {i + 1} ({e.self_cpu_time_total / total:.1%})"
            )


def elbokit_run(data, epochs, precision: str, threads: int, seed: int = 0, compile="off"):
    model, times = elbokit_fit(data, epochs, precision, threads, seed, compile)
    flat = lambda x: x.view(-1, *data.shape)  # noqa: E731
    return times, test_elbo(
        lambda x: model.encode(flat(x)), lambda z: model.decode(z).flatten(1), data.test
    )


def pythae_run(data, epochs):
    try:
        from pythae.data.datasets import BaseDataset, DatasetOutput
        from pythae.models import VAE as PVAE
        from pythae.models import VAEConfig as PConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
    except ImportError:
        return None

    torch.manual_seed(0)
    enc_net, dec_net = nets()

    class Enc(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = enc_net

        def forward(self, x):
            h = self.net(x.flatten(1))
            return ModelOutput(embedding=h[:, :LATENT], log_covariance=h[:, LATENT:])

    class Dec(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = dec_net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, 1, 28, 28))

    class Dynamic(BaseDataset):  # pythae's way to binarize each time an image is drawn
        def __getitem__(self, i):
            return DatasetOutput(data=torch.bernoulli(self.data[i] / 255.0), labels=self.labels[i])

    model = PVAE(
        PConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"),
        encoder=Enc(),
        decoder=Dec(),
    )
    train = Dynamic(data.train.float(), torch.zeros(len(data.train)))
    times = []
    with tempfile.TemporaryDirectory() as d:
        cfg = BaseTrainerConfig(output_dir=d, num_epochs=epochs, learning_rate=LR, per_device_train_batch_size=BATCH,
                                per_device_eval_batch_size=BATCH, steps_saving=None, no_cuda=True)  # fmt: skip
        trainer = BaseTrainer(model, train, None, cfg)
        t = time.perf_counter()
        trainer.train()
        times = [(time.perf_counter() - t) / epochs] * epochs
    return times, test_elbo(lambda x: enc_net(x), dec_net, data.test)


def pyro_run(data, epochs):
    try:
        import pyro
        import pyro.distributions as dist
        from pyro.infer import SVI, TraceMeanField_ELBO
        from pyro.optim import Adam
    except ImportError:
        return None
    pyro.clear_param_store()
    torch.manual_seed(0)
    enc, dec = nets()

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=1.0 / x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z), validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        h = enc(x)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=1.0 / x.shape[0]):
            pyro.sample("z", dist.Normal(h[:, :LATENT], (0.5 * h[:, LATENT:]).exp()).to_event(1))

    svi = SVI(model, guide, Adam({"lr": LR}), TraceMeanField_ELBO())
    train = data.train

    def run_epoch(e):
        order = torch.randperm(len(train))
        for i in range(0, len(train), BATCH):
            svi.step(torch.bernoulli(train[order[i : i + BATCH]].float().div(255).flatten(1)))

    return epochs_timed(run_epoch, epochs), test_elbo(enc, dec, data.test)


def matmul_gflops(dtype, n=4096, reps=5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


LAYERS = [(784, 512), (512, 512), (512, 64), (32, 512), (512, 512), (512, 784)]


def step_gemm_seconds(reps: int = 300) -> float:
    """The matrix multiplies of one training step alone, at batch 100: per layer the forward
    x W^T, the input gradient g W and the weight gradient g^T x. No loop that multiplies the
    same matrices can step faster than this (in fp32)."""
    ws = [torch.randn(o, i) for i, o in LAYERS]
    xs = [torch.randn(BATCH, i) for i, o in LAYERS]
    gs = [torch.randn(BATCH, o) for i, o in LAYERS]

    def once():
        for w, x, g in zip(ws, xs, gs, strict=True):
            x @ w.T, g @ w, g.T @ x

    for _ in range(reps // 5):
        once()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t0) / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="contenders to leave out")
    ap.add_argument(
        "--rounds", type=int, default=2, help="rounds, alternating the order (default 2)"
    )
    ap.add_argument(
        "--bf16-seeds", type=int, default=0, help="bf16 against fp32 over this many paired seeds"
    )
    ap.add_argument("--profile", action="store_true", help="also profile one elbokit epoch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(args.data, binarize="dynamic")
    print(describe_machine())
    print(
        f"data {args.data}: {len(data.train)} train / {len(data.test)} test, {args.epochs} epochs, batch {BATCH}"
    )
    probe = matmul_rates()
    native = bf16_is_native(probe)
    fp32 = matmul_gflops(torch.float32)
    if native:
        bf16 = matmul_gflops(torch.bfloat16)
        print(
            f"matmul 4096^2: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s ({bf16 / fp32:.2f}x)"
        )
    else:
        # a 4096^2 bf16 multiply where bf16 is emulated takes minutes: measured small, not timed
        bf16 = probe["bf16"] * fp32 / probe["fp32"]
        print(f"matmul 4096^2: fp32 {fp32:.0f} GFLOP/s; bf16 is emulated on this CPU "
              f"({probe['bf16']:.2f} against {probe['fp32']:.1f} GFLOP/s at 128x256x256): the bf16 "
              "contender and --bf16-seeds are skipped")  # fmt: skip
        args.skip = [*args.skip, "elbokit bf16", "elbokit bf16 compiled"]
        args.bf16_seeds = 0
    contenders = {
        "bare": lambda: bare(data, args.epochs, flush=False),
        "bare+flush": lambda: bare(data, args.epochs, flush=True),
        "bare compiled": lambda: bare(data, args.epochs, flush=True, compiled=True),
        "elbokit": lambda: elbokit_run(data, args.epochs, "fp32", args.threads),
        "elbokit bf16": lambda: elbokit_run(data, args.epochs, "bf16", args.threads),
        "elbokit compiled": lambda: elbokit_run(
            data, args.epochs, "fp32", args.threads, compile="on"
        ),
        "elbokit bf16 compiled": lambda: elbokit_run(
            data, args.epochs, "bf16", args.threads, compile="on"
        ),
        "pythae": lambda: pythae_run(data, args.epochs),
        "pyro": lambda: pyro_run(data, args.epochs),
    }
    # Machine speed drifts by up to 10% between runs here: each round runs every contender, in
    # forward order and then reversed, and the report gives the mean and the spread over rounds.
    names = [n for n in contenders if n not in args.skip]
    per_epoch: dict[str, list[float]] = {}
    first: dict[str, list[float]] = {}  # each round's first epoch (a compiled one compiles)
    elbos: dict[str, list[float]] = {}
    lls: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out = contenders[name]()
            if out is None:
                print(f"  {name}: not installed, skipped")
                names.remove(name)
                continue
            times, (elbo, ll) = out
            per_epoch.setdefault(name, []).append(statistics.mean(times[1:] or times))
            first.setdefault(name, []).append(times[0])
            elbos.setdefault(name, []).append(elbo)
            lls.setdefault(name, []).append(ll)
            print(f"  round {r + 1} {name:<13} {per_epoch[name][-1]:6.3f} s/epoch (first {times[0]:.2f} s)   test ELBO {elbo:8.2f}   "
                  f"log p(x) {ll:8.2f} (IS, k = {IS_K})", flush=True)  # fmt: skip
    mean = {n: statistics.mean(v) for n, v in per_epoch.items()}
    ref = mean["elbokit"]
    print(
        f"mean over {args.rounds} round(s); ratio = contender's seconds per epoch / elbokit fp32's (> 1: slower than elbokit)"
    )
    for name in per_epoch:
        spread = f"{min(per_epoch[name]):.2f}-{max(per_epoch[name]):.2f}"
        elbo, ll = statistics.mean(elbos[name]), statistics.mean(lls[name])
        print(f"  {name:<13} {mean[name]:6.3f} s/epoch ({spread})  {mean[name] / ref:5.2f}x   "
              f"test ELBO {elbo:8.2f} ({elbo - statistics.mean(elbos['elbokit']):+.2f} vs elbokit)   "
              f"log p(x) {ll:8.2f} ({ll - statistics.mean(lls['elbokit']):+.2f})")  # fmt: skip
    for name in per_epoch:
        if "compiled" not in name:
            continue
        # the first epoch's excess over a steady one is the compile; the eager twin's steady
        # epoch minus this one's is what each later epoch saves
        twin = name.replace(" compiled", "") if name.startswith("elbokit") else "bare+flush"
        extra = [f - mean[name] for f in first[name]]
        saved = mean.get(twin, math.nan) - mean[name]
        pays = f"{max(extra) / saved:.0f} epochs" if saved > 0 else "never (no faster per epoch)"
        print(f"  {name}: compiling took {', '.join(f'{e:.1f}' for e in extra)} s in rounds 1.. "
              f"(the first cold, later from the cache); {mean.get(twin, math.nan) / mean[name]:.2f}x {twin} "
              f"per epoch after it; pays back after {pays}")  # fmt: skip
    results = {n: ([mean[n]], 0.0) for n in per_epoch}
    steps = -(-len(data.train) // BATCH)
    flops = 3 * 2 * BATCH * sum(a * b for a, b in LAYERS)
    if "elbokit" in results:
        gemm, step = step_gemm_seconds(), results["elbokit"][0][0] / steps
        print(
            f"fp32 floor: the step's 18 matrix multiplies alone take {gemm * 1e3:.2f} ms of elbokit's "
            f"{step * 1e3:.2f} ms per step (epoch / steps): no fp32 loop over these matrices can be "
            f"more than {step / gemm:.2f}x faster"
        )
    for name, peak in (("elbokit", fp32), ("elbokit bf16", bf16), ("elbokit compiled", fp32),
                       ("elbokit bf16 compiled", bf16)):  # fmt: skip
        if name in results:
            rate = flops * steps / statistics.mean(results[name][0]) / 1e9
            print(
                f"{name}: {rate:.0f} GFLOP/s in training = {rate / peak:.0%} of the {'bf16' if 'bf16' in name else 'fp32'} matmul rate"
            )
    if args.bf16_seeds:
        # Paired by seed (same initialization, data order and noise), so the difference is bf16's
        # effect plus the divergence of two chaotic trajectories, not seed-to-seed spread.
        diffs = []
        for seed in range(args.bf16_seeds):
            e32 = elbokit_run(data, args.epochs, "fp32", args.threads, seed)[1][0]
            e16 = elbokit_run(data, args.epochs, "bf16", args.threads, seed)[1][0]
            diffs.append(e16 - e32)
            print(
                f"  seed {seed}: test ELBO fp32 {e32:8.2f}, bf16 {e16:8.2f}, bf16 - fp32 {e16 - e32:+.2f} nats",
                flush=True,
            )
        m = statistics.mean(diffs)
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        print(
            f"bf16 - fp32 test ELBO over {len(diffs)} paired seeds: {m:+.2f} +- {se:.2f} (standard error) nats"
        )
    if args.profile:
        profile_epoch(data, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
