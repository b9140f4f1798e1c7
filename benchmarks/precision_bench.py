"""bf16 against fp32, kind by kind: the training step of each kind's default preset, timed in one
process with the two precisions alternating (the machine drifts between runs minutes apart).

    python benchmarks/precision_bench.py [--kinds vae diffusion world-model agent] [--threads 2]
        [--steps 60] [--rounds 3]

Each kind's learner is built as ``elbokit train KIND`` builds it and stepped on the preset's own
batches (the acting kinds past their random prefill, so every step timed includes its gradient
steps), its step under ``torch.autocast(bfloat16)`` exactly as ``--precision bf16`` runs it. It
prints steps per second in each precision, the bf16 / fp32 ratio (the median over rounds), and
the bf16 and fp32 rates of the matrix multiply ``--precision auto`` probes on CPUs without bf16
flags. It times steps only: a kind's test metrics under bf16 are checked by training it both
ways over paired seeds (the vae kind's: ``vae_vs_peers.py --bf16-seeds``). These ratios are the
``BF16_SPEEDUP`` each kind declares (``elbokit.train.settings.resolve_kind_precision``), keyed by
the CPU's bf16 class (amx, avx512_bf16): auto takes bf16 for a kind only where its step was
measured faster by at least ``BF16_AUTO_SPEEDUP`` on that class.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from elbokit import recipes
from elbokit.train.distributed import World
from elbokit.train.learner import StepContext
from elbokit.train.settings import bf16_class, describe_machine, matmul_rates

ACTING = {"agent", "skills"}


def _build(kind: str, preset: str, out: Path):
    recipe = recipes.get_recipe(kind)
    cfg = recipe.preset(preset)
    torch.manual_seed(0)
    return recipe.build(cfg, out, world=World(), say=lambda *a: None)


def _steps(built, kind: str, n: int):
    """n batches of the preset (None for an acting kind: it draws its own)."""
    if kind in ACTING:
        return [None] * n
    data, bs = built.data, built.config.train.batch_size
    out, epoch = [], 0
    while len(out) < n:
        out += list(data.batches("train", bs, seed=0, epoch=epoch))
        epoch += 1
    return out[:n]


def _learner(kind: str, preset: str, precision: str, out: Path):
    built = _build(kind, preset, out)
    learner = built.learner
    learner.setup(StepContext("cpu", precision=precision, batch_size=built.config.train.batch_size))
    step = 0
    if kind == "agent":  # past the random prefill: every timed step learns
        while learner.transitions < built.config.agent.prefill:
            learner.train_step(None, step)
            step += 1
    elif kind == "skills":
        while len(learner.replay) < built.config.loop.learning_starts:
            learner.train_step(None, step)
            step += 1
    return built, learner, step


def rate(kind: str, preset: str, precision: str, steps: int, out: Path) -> float:
    built, learner, step = _learner(kind, preset, precision, out)
    batches = _steps(built, kind, steps + 5)
    for i, b in enumerate(batches[:5]):  # warm: first-call allocations
        learner.train_step(b, step + i)
    t0 = time.perf_counter()
    for i, b in enumerate(batches[5:]):
        learner.train_step(b, step + 5 + i)
    seconds = time.perf_counter() - t0
    learner.close()
    return steps / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--kinds", nargs="*", default=["vae", "diffusion", "world-model", "agent"],
                    help="kinds whose step has a bf16 path: vae, diffusion, world-model, agent, "
                    "linear-gaussian (default: %(default)s)")  # fmt: skip
    ap.add_argument("--preset", default="default", help="each kind's preset (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=60,
                    help="training steps timed per kind, precision and round (default: %(default)s)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3,
                    help="fp32 and bf16 alternating this many times (default: %(default)s)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    rates = matmul_rates(budget=0.2)
    print(f"bf16 class: {bf16_class() or 'none (bf16 not native)'}; matmul probe: bf16 "
          f"{rates['bf16']:.1f} GFLOP/s, fp32 {rates['fp32']:.1f} "
          f"({rates['bf16'] / rates['fp32']:.2f}x)")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            got = {"fp32": [], "bf16": []}
            for _ in range(args.rounds):
                for p in ("fp32", "bf16"):
                    got[p].append(rate(kind, args.preset, p, args.steps, Path(tmp)))
            ratios = [b / f for f, b in zip(got["fp32"], got["bf16"], strict=True)]
            rows.append((kind, statistics.median(got["fp32"]), statistics.median(got["bf16"]),
                         statistics.median(ratios), min(ratios), max(ratios)))  # fmt: skip
            r = rows[-1]
            print(f"{kind:12s} fp32 {r[1]:8.2f} steps/s  bf16 {r[2]:8.2f}  bf16/fp32 {r[3]:.2f}x "
                  f"(rounds {r[4]:.2f}-{r[5]:.2f})", flush=True)  # fmt: skip
    print(f"\n{describe_machine()}\n\n| kind ({args.preset} preset) | fp32 steps/s | bf16 steps/s "
          "| bf16 / fp32 (median, range over rounds) |\n|---|---|---|---|")  # fmt: skip
    for kind, f, b, m, lo, hi in rows:
        print(f"| {kind} | {f:.2f} | {b:.2f} | {m:.2f}x ({lo:.2f}-{hi:.2f}) |")


if __name__ == "__main__":
    main()
