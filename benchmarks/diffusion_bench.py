"""The diffusion kind against the code people use, measured in one run.

    python benchmarks/diffusion_bench.py steps [--threads 2] [--steps 20] [--batch 64]
    python benchmarks/diffusion_bench.py bound [--images 500] [--t-stride 10] [--threads 2] [--batch 256]
        [--rounds 3]

steps: training steps per second on mnist5k 8-bit at batch 64, epsilon MSE, T = 1000, Adam,
gradient clipping at 1:

    elbokit      the trainer (``Trainer.fit``) with the default preset's U-Net (16-32-32),
                 eager and with ``--compile on`` (the compile, cold then from the cache, printed
                 apart; the rate from runs that load it from the cache)
    bare         a hand-written PyTorch loop over the same U-Net, loss and batches, as it is and
                 with denormal floats flushed to zero (as the trainer runs)
    diffusers    ``UNet2DModel`` (16-32-32 channels, one block down and two up per resolution,
                 as ours) with ``DDPMScheduler.add_noise``, the loop of diffusers' training
                 example, when diffusers is installed (``pip install diffusers``)

lucidrains' denoising-diffusion-pytorch imports torchvision at the top of its module, and PyPI's
torchvision does not import beside the CPU build of torch this project installs; it is named and
skipped.

bound: the bound for the first --images test images, T = 1000, of a freshly initialized
default-preset model (the timing does not depend on the weights), computed (a) as
``Diffusion.bound`` does, batched over (image, t) pairs, --batch pairs per network call, and (b)
as improved-diffusion's ``calc_bpd_loop`` does, one timestep at a time with all the images as the
batch, on the same model with the same noise; prints both times, the ratio and the largest
difference in bits/dim. With --t-stride k > 1 both compute only every k-th timestep (t = 1,
1 + k, ...): the same work per network evaluation, 1/k of the evaluations (500 images at every
t would take about 20 minutes each way on a 2-core CPU); the value compared is then the sum of
those terms. Then (c), ``elbokit eval --compile on``'s network (compiled once with its weights
frozen, chunks of --batch rows, the last padded), timed against (a) in --rounds alternating
rounds: the medians' ratio, each round's, and the largest difference from eager in bits/dim.
Each trainer timing is the difference of two runs (warm-up, then warm-up + steps), both after a
first untimed run of warm-up steps, so start-up and the process's one-time costs cancel (without
that first run the trainer read 37 steps/s against the bare loop's 17 over the same U-Net).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from elbokit import recipes
from elbokit.config import merge
from elbokit.models.diffusion import Diffusion
from elbokit.recipes.base import derive
from elbokit.recipes.diffusion import DiffusionObjective
from elbokit.train import ObjectiveLearner, Trainer
from elbokit.train.settings import describe_machine

KIND = recipes.get_recipe("diffusion")


def _cfg(batch: int):
    cfg = KIND.preset("default", {"model": {"loss": "simple", "variance": "fixed-large",
                                            "schedule": "linear"},
                                  "train": {"batch_size": batch, "progress": False}})  # fmt: skip
    data = KIND.data(cfg)
    return derive(cfg, model={"data_shape": tuple(data.shape)}), data


def time_elbokit(cfg, data, warmup: int, steps: int, workdir: Path, compile="off") -> float:
    run = merge(cfg, {"train": {"epochs": 10_000, "eval_every": 10_000, "checkpoint_every": 10**9,
                                "compile": compile}})  # fmt: skip
    seconds = []
    # a first run pays the process's one-time costs (oneDNN's kernel choices, allocations;
    # compiled: the cold compile), so the two timed runs come after it: timing (warmup, warmup +
    # steps) first would subtract those costs from the steps and overstate the rate (it did: 37
    # against 17 steps/s for a bare loop over the same U-Net)
    for n in (warmup, warmup, warmup + steps):
        torch.manual_seed(0)
        learner = ObjectiveLearner(Diffusion(run.model), DiffusionObjective(), run.optim)
        t0 = time.perf_counter()
        Trainer(run.train, Path(tempfile.mkdtemp(dir=workdir))).fit(learner, data, stop_at=n)
        seconds.append(time.perf_counter() - t0)
    if compile == "on":
        print(f"  elbokit --compile on: {warmup} steps took {seconds[0]:.1f} s compiling cold, "
              f"{seconds[1]:.1f} s with the kernels cached")  # fmt: skip
    return steps / (seconds[-1] - seconds[-2])


def _batches(data, batch, n):
    out = []
    while len(out) < n:
        out += list(data.batches("train", batch, seed=0, epoch=len(out)))
    return out[:n]


def _loop(net_step, params, batches, warmup, steps, lr) -> float:
    opt = torch.optim.Adam(params, lr=lr, fused=True)

    def run(k):
        for x in batches[:k]:
            loss = net_step(2 * x - 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

    run(warmup)
    t0 = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - t0)


def time_bare(cfg, data, warmup, steps) -> tuple[float, int]:
    torch.manual_seed(0)
    model = Diffusion(cfg.model)
    sch = model.schedule

    def step(x0):
        t = torch.randint(1, model.steps + 1, (len(x0),))
        noise = torch.randn_like(x0)
        xt = sch.q_sample(x0, t, noise)
        return F.mse_loss(model.net(xt, t), noise)

    params = list(model.parameters())
    return _loop(step, params, _batches(data, cfg.train.batch_size, warmup + steps), warmup, steps,
                 cfg.optim.lr), sum(p.numel() for p in params)  # fmt: skip


def time_diffusers(cfg, data, warmup, steps) -> tuple[float, int] | None:
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError:
        print("  diffusers is not installed (pip install diffusers): skipped")
        return None
    torch.manual_seed(0)
    c = cfg.model.channels
    widths = tuple(c * m for m in cfg.model.mults)
    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=widths,
                       layers_per_block=1, down_block_types=("DownBlock2D",) * len(widths),
                       up_block_types=("UpBlock2D",) * len(widths), norm_num_groups=8)  # fmt: skip
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")

    def step(x0):
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(x0),))
        return F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)

    params = list(unet.parameters())
    return _loop(step, params, _batches(data, cfg.train.batch_size, warmup + steps), warmup, steps,
                 cfg.optim.lr), sum(p.numel() for p in params)  # fmt: skip


def steps_main(args) -> int:
    cfg, data = _cfg(args.batch)
    print(f"mnist5k 8-bit, batch {args.batch}, T = 1000, epsilon MSE; {args.steps} timed steps "
          f"after {args.warmup}; torch threads {torch.get_num_threads()}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ours = time_elbokit(cfg, data, args.warmup, args.steps, Path(d))
        compiled = time_elbokit(cfg, data, args.warmup, args.steps, Path(d), compile="on")
    bare, n_ours = time_bare(cfg, data, args.warmup, args.steps)
    torch.set_flush_denormal(True)  # what the trainer does for its run
    flushed, _ = time_bare(cfg, data, args.warmup, args.steps)
    torch.set_flush_denormal(False)
    rows += [("elbokit (trainer)", ours, n_ours), ("elbokit, --compile on", compiled, n_ours),
             ("bare PyTorch loop, same U-Net", bare, n_ours),
             ("bare loop, denormals flushed", flushed, n_ours)]  # fmt: skip
    theirs = time_diffusers(cfg, data, args.warmup, args.steps)
    if theirs:
        rows.append(("diffusers UNet2DModel + DDPMScheduler", *theirs))
    print("  lucidrains' denoising-diffusion-pytorch: skipped (imports torchvision, which does not "
          "import beside the CPU torch here)")  # fmt: skip
    print(f"{'':<40} {'params':>9} {'steps/s':>8} {'elbokit / it':>13}")
    for name, rate, n in rows:
        print(f"{name:<40} {n:>9,} {rate:8.2f} {ours / rate:12.2f}x")
    return 0


def bound_main(args) -> int:
    cfg, data = _cfg(64)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = Diffusion(cfg.model).eval().to(dev)
    x = (2 * data.as_float(data.test[: args.images]) - 1).to(dev)
    bits = model.dims * math.log(2)
    ts = torch.arange(1, model.steps + 1, args.t_stride)
    noise = torch.randn(len(x), len(ts), *x.shape[1:], generator=torch.Generator().manual_seed(0))
    noise, ts = noise.to(dev), ts.to(dev)
    print(f"the bound at {len(ts)} of T = {model.steps} timesteps (every {args.t_stride}) for "
          f"{len(x)} test images; torch threads {torch.get_num_threads()}; "
          f"{len(x) * len(ts):,} network evaluations each way")  # fmt: skip

    def batched(vlb=None):
        t0 = time.perf_counter()
        prior, per_t = model.bound(x, batch=args.batch, noise=noise, timesteps=ts, vlb=vlb)
        return time.perf_counter() - t0, (prior.double() + per_t.double().sum(1)) / bits

    compiled = None
    if args.rounds:  # eval --compile on's network: compiled once, the last chunk padded
        from elbokit.recipes.diffusion import compiled_vlb

        compiled = compiled_vlb(model, args.batch)
        t0 = time.perf_counter()
        model.bound(x[:1], batch=args.batch, noise=noise[:1], timesteps=ts, vlb=compiled)
        print(f"  compiling the bound's network (and one image): {time.perf_counter() - t0:.1f} s")
    eager_s, compiled_s = [], []
    for _ in range(args.rounds):  # alternating, so that a drift of the machine hits both
        took, ours = batched()
        eager_s.append(took)
        took, fast = batched(compiled)
        compiled_s.append(took)
    ours_s, ours = batched() if not args.rounds else (min(eager_s), ours)

    t0 = time.perf_counter()
    with torch.no_grad():  # calc_bpd_loop: t from T down to 1, the images as the batch
        total = model.prior_term(x).double()
        for j in range(len(ts) - 1, -1, -1):
            tt = torch.full((len(x),), int(ts[j]), device=dev)
            total += model.terms(x, tt, noise[:, j])["vlb"].double()
    loop_s = time.perf_counter() - t0
    loop = total / bits
    print(f"  batched over (image, t), {args.batch} pairs per call: {ours_s:8.1f} s, "
          f"{ours.mean():.5f} bits/dim")  # fmt: skip
    print(
        f"  one t at a time (calc_bpd_loop's order):   {loop_s:8.1f} s, {loop.mean():.5f} bits/dim"
    )
    print(f"  ratio loop / batched: {loop_s / ours_s:.2f}x; largest difference per image "
          f"{(ours - loop).abs().max():.2e} bits/dim")  # fmt: skip
    if args.rounds:
        e, c = sorted(eager_s)[len(eager_s) // 2], sorted(compiled_s)[len(compiled_s) // 2]
        per = model.steps / len(ts) / len(x)  # a timing's seconds -> per image at every t
        print(f"  eager, {args.rounds} rounds: " + ", ".join(f"{v:.1f}" for v in eager_s)
              + f" s (median {e * per:.3f} s per image at all T = {model.steps})")  # fmt: skip
        print("  compiled (eval --compile on), alternating with it: "
              + ", ".join(f"{v:.1f}" for v in compiled_s)
              + f" s (median {c * per:.3f} s per image)")  # fmt: skip
        print(
            f"  compiled / eager speed: {e / c:.2f}x (per round: "
            + ", ".join(f"{a / b:.2f}" for a, b in zip(eager_s, compiled_s, strict=True))
            + f"); largest difference per image {(fast - ours).abs().max():.2e} bits/dim"
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("steps", "bound"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0, help="steps: 64; bound: 256 pairs per call")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--device", default="cpu", help="bound: cpu or cuda")
    ap.add_argument("--t-stride", type=int, default=10, help="bound: every k-th timestep only")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="bound: eager and compiled timings, alternating (0: eager once)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    if args.what == "steps":
        args.batch = args.batch or 64
        return steps_main(args)
    args.batch = args.batch or 256
    return bound_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
