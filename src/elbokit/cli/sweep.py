"""``elbokit sweep beta --values 0.25 0.5 1 2 4 [options of the kind]``: one run per beta of the
kind whose recipe names the ``beta`` sweep, then its figure (the rate-distortion curve: rate,
test KL; distortion, test reconstruction NLL; both in nats).

Each run is an ordinary run directory under OUT/beta-B (resumable, reportable); the curve is
OUT/rate_distortion.png and the numbers OUT/sweep.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from elbokit import recipes
from elbokit.cli._args import Parser, UsageError, add_config_arguments, given, merged, parse
from elbokit.config import merge
from elbokit.files import atomic_write_text
from elbokit.report.metrics import last_with, read_metrics


def _kind_of(sweep: str):
    """The recipe that names ``sweep`` among its own sweeps."""
    return next((r for r in recipes.RECIPES.values() if sweep in r.sweeps), None)


def sweep_command(argv: list[str]) -> int:
    recipe = _kind_of("beta")
    if not argv or argv[0] != "beta":
        usage = (
            f"usage: elbokit sweep beta --values B [B ...] [options of elbokit train {recipe.name}]"
        )
        if argv and argv[0] in ("-h", "--help"):
            print(f"{usage}\n\none run per beta, then the rate-distortion curve (see elbokit "
                  "sweep beta --help)")  # fmt: skip
            return 0
        raise UsageError(f"elbokit sweep: the one sweep is over beta\n{usage}")
    parser = Parser(prog="elbokit sweep beta",
                    description=f"one {recipe.name} run per beta, then the rate-distortion curve")  # fmt: skip
    by_dest = add_config_arguments(parser, recipe.default())
    parser.add_argument("--values", type=float, nargs="+", required=True,
                        help="the betas to train, e.g. 0.5 1 2 4")  # fmt: skip
    parser.add_argument("--preset", choices=list(recipe.presets), default="default",
                        help="named settings the other options override (default: default)")  # fmt: skip
    parser.add_argument("--out", default="", metavar="DIR",
                        help="folder of the runs (default: runs/sweep-beta-DATA-TIME)")  # fmt: skip
    ns = parse(parser, argv[1:])
    if "beta" in given(ns, by_dest).get("objective", {}):
        raise UsageError("elbokit sweep beta: --beta is what the sweep varies; give --values only")
    base = merged(recipe.preset(ns.preset), ns, by_dest, parser.prog)
    return run_sweep_beta(recipe, base, tuple(ns.values), ns.out)


def run_sweep_beta(recipe, base, values: tuple[float, ...], out: str = "") -> int:
    if not values:
        raise UsageError("--values needs at least one beta, e.g. --values 0.5 1 2 4")
    if any(not (v >= 0 and math.isfinite(v)) for v in values):
        raise UsageError(f"betas must be finite and >= 0, got {list(values)}")
    if len({f"{v:g}" for v in values}) != len(values):
        raise UsageError(f"--values {' '.join(map(str, values))}: each beta once, please")
    folder = Path(
        out or f"runs/sweep-beta-{Path(base.data.source).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    taken = [
        folder / f"beta-{v:g}" for v in values if (folder / f"beta-{v:g}" / "state.json").exists()
    ]
    if taken:
        raise UsageError(
            f"{', '.join(map(str, taken))} already hold runs: pick another --out, or resume one "
            "with elbokit train --resume RUN"
        )
    points = []
    for beta in values:
        run = folder / f"beta-{beta:g}"
        print(f"--- beta = {beta:g}: {run}")
        cfg = merge(base, {"objective": {"beta": beta}, "evaluate": {"eval_k": 0}})
        recipes.train(recipe, cfg, out=run)
        last = last_with(read_metrics(run / "metrics.jsonl"), "test/elbo")
        points.append({"beta": beta, "rate": last["test/kl"], "distortion": last["test/recon"],
                       "elbo": last["test/elbo"], "run": str(run)})  # fmt: skip
    atomic_write_text(folder / "sweep.json", json.dumps(points, indent=2))
    png = recipe.sweep_figure("beta", points, folder)
    print(f"{'beta':>8} {'rate (KL)':>10} {'distortion':>11} {'ELBO':>9}")
    for p in points:
        print(f"{p['beta']:8g} {p['rate']:10.2f} {p['distortion']:11.2f} {p['elbo']:9.2f}")
    print(f"wrote {png} and {folder / 'sweep.json'}")
    return 0
