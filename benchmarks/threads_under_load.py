"""Seconds per epoch of the main job's VAE with three thread policies, on an idle machine and
beside another process that keeps every core busy (a 2-thread matrix-multiply loop).

    python benchmarks/threads_under_load.py [--epochs 3] [--rounds 2]

Policies: torch's default (as many threads as cores), ``--threads -1`` (auto: the cores minus
those other work keeps busy, measured over 0.25 s when the run starts) and ``--threads 1``.
Rounds alternate the order of the policies; the table gives the mean and the spread.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from elbokit import recipes
from elbokit.recipes.base import derive
from elbokit.train import ObjectiveLearner, Trainer
from elbokit.train.settings import choose_threads, describe_machine

LOAD = (
    "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"
)


def one_run(data, cfg, threads: int) -> tuple[float, int]:
    chosen, _ = choose_threads(threads)
    torch.manual_seed(0)
    learner = ObjectiveLearner(
        __import__("elbokit.models.vae", fromlist=["VAE"]).VAE(cfg.model),
        cfg.objective.build(cfg.train.epochs * data.num_batches("train", cfg.train.batch_size)),
        cfg.optim,
    )
    train = cfg.train.__class__(**{**cfg.train.__dict__, "threads": chosen})
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        Trainer(train, d).fit(learner, data)
        return (time.perf_counter() - t0) / cfg.train.epochs, chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(describe_machine())
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("default", {"train": {"epochs": args.epochs, "progress": False,
                                           "checkpoint_every": 10**9, "eval_every": 10**6}})  # fmt: skip
    data = cfg.data.load(cfg.train.seed)
    cfg = derive(cfg, model={"data_shape": tuple(data.shape)})
    policies = {"default": 0, "auto (-1)": -1, "1 thread": 1}
    one_run(data, cfg, 0)  # warm-up: the first run pays for allocations and lazy imports
    rows: dict[tuple[str, str], list[float]] = {}
    chosen: dict[tuple[str, str], set] = {}
    for condition in ("idle", "loaded"):
        load = None
        if condition == "loaded":
            load = subprocess.Popen([sys.executable, "-c", LOAD])
            time.sleep(3)
        try:
            names = list(policies)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    seconds, n = one_run(data, cfg, policies[name])
                    rows.setdefault((condition, name), []).append(seconds)
                    chosen.setdefault((condition, name), set()).add(n)
                    print(f"  {condition:<6} {name:<10} {seconds:6.2f} s/epoch ({n} threads)",
                          flush=True)  # fmt: skip
        finally:
            if load is not None:
                load.kill()
                load.wait()
    print(f"\nmean s/epoch over {args.rounds} rounds (spread), {args.epochs} epochs each")
    print("| policy | idle | loaded (2-thread matmul beside it) |\n|---|---|---|")
    for name in policies:
        cells = []
        for condition in ("idle", "loaded"):
            v = rows[condition, name]
            threads = "/".join(map(str, sorted(chosen[condition, name])))
            cells.append(f"{statistics.mean(v):.2f} ({min(v):.2f}-{max(v):.2f}), {threads} thr")
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
