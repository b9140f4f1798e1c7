"""The UCI regression table, as far as the bnn kind reaches today: every split of each folder of
the benchmark's layout, Bayes by backprop (with its learned noise), the deterministic network
(MAP) and MC dropout trained side by side on the same batches, test RMSE and test log-likelihood
per point in the target's original units (logsumexp over the draws), mean +- standard error over
the splits, beside the published MC-dropout numbers where a folder's README table has them.

    python benchmarks/uci_bench.py ../shared/datasets/uci/yacht ../shared/datasets/uci/bostonHousing \
        [--splits 20] [--epochs 400] [--samples 100]

Not yet the published protocol (issue 25): no grid over dropout rate and tau on a validation part
of each training split, no 10x epochs, no empirical-Bayes prior, no DVI or deep ensemble.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from pathlib import Path

from elbokit import recipes
from elbokit.data.uci import uci_settings
from elbokit.train.settings import describe_machine

METHODS = {"bnn": "Bayes by backprop", "det": "deterministic (MAP)", "dropout": "MC dropout"}


def published(folder: Path) -> tuple[str, str] | None:
    """The (RMSE, LL) the README beside the folders lists for it (MC dropout), if any."""
    readme = folder.parent / "README.md"
    if not readme.exists():
        return None
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] == folder.name and re.match(r"-?\d", cells[2]):
            return cells[2], cells[3]
    return None


def one_split(folder: Path, split: int, epochs: int, samples: int, hidden: int, tmp: Path) -> dict:
    recipe = recipes.get_recipe("bnn")
    cfg = recipe.preset("default", {
        "data": {"source": str(folder), "split": split},
        "model": {"hidden": (hidden,)},
        "train": {"epochs": epochs, "batch_size": 32, "eval_every": epochs, "progress": False,
                  "threads": 1, "checkpoint_every": 10**9},
        "evaluate": {"eval_samples": 0},
    })  # fmt: skip
    run = recipes.train(recipe, cfg, out=tmp / f"{folder.name}-{split}", say=lambda *a: None)
    return recipes.evaluate(run, {"samples": samples}, say=lambda *a: None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--splits", type=int, default=0, help="first N splits (0: all)")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    print(describe_machine())
    print(f"{args.epochs} epochs, batch 32, 1 thread, {args.samples} draws per prediction")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.folders:
            s = uci_settings(folder)
            n = min(args.splits or s["n_splits"], s["n_splits"])
            t0 = time.perf_counter()
            per = {m: {"rmse": [], "ll": []} for m in METHODS}
            for k in range(n):
                r = one_split(
                    folder, k, args.epochs, args.samples, s.get("n_hidden", 50), Path(tmp)
                )
                for m in METHODS:
                    per[m]["rmse"].append(r[m]["rmse"])
                    per[m]["ll"].append(r[m]["log_likelihood"])
                print(f"  {folder.name} split {k}: " + ", ".join(
                    f"{m} {r[m]['rmse']:.3f} / {r[m]['log_likelihood']:.3f}" for m in METHODS), flush=True)  # fmt: skip
            row = {"data": folder.name, "splits": n, "seconds": time.perf_counter() - t0,
                   "published_dropout": published(folder)}  # fmt: skip
            for m, v in per.items():
                for key, values in v.items():
                    mean = sum(values) / len(values)
                    se = (
                        math.sqrt(
                            sum((x - mean) ** 2 for x in values) / (len(values) - 1) / len(values)
                        )
                        if len(values) > 1
                        else math.nan
                    )
                    row[f"{m}_{key}"] = (mean, se)
            rows.append(row)
    print(
        f"\n| data (splits) | {' | '.join(f'{METHODS[m]} RMSE | LL' for m in METHODS)} | published MC dropout RMSE / LL |"
    )
    print("|" + "---|" * (2 + 2 * len(METHODS)))
    for r in rows:
        cells = " | ".join(
            f"{r[f'{m}_rmse'][0]:.2f} +- {r[f'{m}_rmse'][1]:.2f} | {r[f'{m}_ll'][0]:.2f} +- {r[f'{m}_ll'][1]:.2f}"
            for m in METHODS
        )
        pub = " / ".join(r["published_dropout"]) if r["published_dropout"] else "-"
        print(f"| {r['data']} ({r['splits']}) | {cells} | {pub} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
