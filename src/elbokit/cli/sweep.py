"""``elbokit sweep beta --values 0.25 0.5 1 2 4 [train vae options]``: one run per beta, then
the rate-distortion curve (rate: test KL, distortion: test reconstruction NLL, both in nats).

Each run is an ordinary run directory under OUT/beta-B (resumable, reportable); the curve is
OUT/rate_distortion.png and the numbers OUT/sweep.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from elbokit.cli.train import TrainVAEConfig, run_train_vae
from elbokit.report import figures
from elbokit.train.checkpoint import atomic_write_text


def _last_test(run: Path) -> dict:
    lines = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    tests = [line for line in lines if "test/elbo" in line]
    if not tests:
        raise ValueError(f"{run} has no test metrics")
    return tests[-1]


def run_sweep_beta(base: TrainVAEConfig, values: tuple[float, ...]) -> int:
    if not values:
        raise ValueError("--values needs at least one beta, e.g. --values 0.5 1 2 4")
    if any(v < 0 for v in values):
        raise ValueError(f"betas must be >= 0, got {list(values)}")
    out = Path(
        base.out or f"runs/sweep-beta-{Path(base.data).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    points = []
    for beta in values:
        run = out / f"beta-{beta:g}"
        print(f"--- beta = {beta:g}: {run}")
        run_train_vae(dataclasses.replace(base, beta=beta, out=str(run), eval_k=0))
        last = _last_test(run)
        points.append(
            {
                "beta": beta,
                "rate": last["test/kl"],
                "distortion": last["test/recon"],
                "elbo": last["test/elbo"],
                "run": str(run),
            }
        )
    atomic_write_text(out / "sweep.json", json.dumps(points, indent=2))
    png = figures.rate_distortion(points, out / "rate_distortion.png")
    print(f"{'beta':>8} {'rate (KL)':>10} {'distortion':>11} {'ELBO':>9}")
    for p in points:
        print(f"{p['beta']:8g} {p['rate']:10.2f} {p['distortion']:11.2f} {p['elbo']:9.2f}")
    print(f"wrote {png} and {out / 'sweep.json'}")
    return 0
