"""Gaussian against straight-through categorical latents, the same data and trainer, one table.

    python benchmarks/latent_families.py [--data mnist5k] [--epochs 30] [--k 1000]

Trains `elbokit train vae` twice, with --latent gaussian (32 dims) and --latent categorical
(32 groups x 32 classes, DreamerV2's size, unimix 1%), each ending with the importance-sampled
log-likelihood and the diagnostics, and prints them side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from elbokit import recipes
from elbokit.train.settings import describe_machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for latent, dim in (("gaussian", 32), ("categorical", 32)):
            run = Path(d) / latent
            cfg = recipes.get_recipe("vae").preset("default", {
                "data": {"source": args.data},
                "model": {"latent": latent, "latent_dim": dim, "latent_classes": 32},
                "train": {"epochs": args.epochs, "threads": args.threads, "progress": False},
                "evaluate": {"eval_k": args.k}})  # fmt: skip
            t = time.perf_counter()
            recipes.train("vae", cfg, out=run)
            seconds = time.perf_counter() - t
            r = json.loads((run / "eval.json").read_text())
            rows.append((latent, r, seconds))
    print(f"\n{args.data}, {args.epochs} epochs, k = {args.k}, torch threads {args.threads}")
    print(
        f"{'latent':<28} {'test ELBO':>10} {'log p(x) (IS)':>18} {'KL':>7} {'I(x;z)':>7} {'active':>8} {'seconds':>8}"
    )
    for latent, r, seconds in rows:
        name = "gaussian, 32 dims" if latent == "gaussian" else "categorical, 32 x 32 classes"
        units = len(r["kl_per_unit"])
        print(f"{name:<28} {r['elbo']:10.2f} {r['log_likelihood']:10.2f} +- {r['log_likelihood_stderr']:.2f} "
              f"{r['kl']:7.2f} {r['mutual_information']:7.2f} {r['active_units']:>3}/{units:<4} {seconds:8.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
