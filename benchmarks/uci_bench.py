"""The UCI regression table (Hernández-Lobato & Adams 2015 splits): every split of every folder of
the benchmark's layout, each method a setting of the bnn kind, test RMSE and test log-likelihood
per point in the target's original units (the predictive density, logsumexp over the draws), mean
+- standard error over the splits, beside the published numbers.

    python benchmarks/uci_bench.py ../shared/datasets/uci/* [--methods bnn dvi dropout ensemble]
        [--splits N] [--steps 8000] [--workers 2] [--json out.json] [--figure uci.png]

Per split (one process per split, one thread each, ``--workers`` at once):

1. MC dropout on Gal's protocol: one run of the grid (the folder's dropout_rates.txt x
   tau_values.txt, batched members) on the first 80% of the training split, the member with the
   best log-likelihood on the last 20% chosen (``--validation 0.2``);
2. one run of every method on the whole training split, side by side on the same batches: Bayes by
   backprop and DVI (both with the empirical-Bayes prior, IG(1, 10) hyperprior, as DVI's paper),
   MC dropout at the chosen rate and tau, a deep ensemble of 5.

With ``--storage sqlite:///uci.db`` (or a PostgreSQL URL) the splits are the trials of an Optuna
study instead: the same command started on other machines reaching the database shares them, and
each prints the table of all the finished splits.

Both runs take ``--steps`` optimizer steps (epochs = steps / batches per epoch), batch 128 and
Adam's learning rate ``--lr``; the published protocols train longer on the large data sets (Gal:
4,000 epochs; see docs/benchmarks.md), which a two-hour budget on two cores cannot. Predictions
average ``--samples`` draws. The claims "ours beats theirs" are paired over splits: the mean
difference of two methods' log-likelihoods and its standard error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

LABELS = {"bnn": "BBB", "dvi": "DVI", "dropout": "MC dropout", "ensemble": "ensemble",
          "det": "MAP"}  # fmt: skip

# Published test log-likelihoods (mean +- standard error over the splits) and RMSEs, by the
# benchmark's folder names. VI (Graves 2011) and PBP: Hernández-Lobato & Adams 2015 as reprinted
# in Gal & Ghahramani 2016, Table 1. DVI: Wu et al. 2019, Table 2 (LL only; their own random
# 90/10 splits). Deep ensembles: Lakshminarayanan et al. 2017, Table 1 (NLL sign flipped; their
# +- look like standard deviations). MC dropout: the README beside the folders (Gal's grid-search
# reruns), read at run time.
PUBLISHED = {
    "bostonHousing": {"VI": (-2.90, 0.07, 4.32), "PBP": (-2.57, 0.09, 3.01), "DVI": (-2.41, 0.02, None), "ensemble": (-2.41, 0.25, 3.28)},
    "concrete": {"VI": (-3.39, 0.02, 7.19), "PBP": (-3.16, 0.02, 5.67), "DVI": (-3.06, 0.01, None), "ensemble": (-3.06, 0.18, 6.03)},
    "energy": {"VI": (-2.39, 0.03, 2.65), "PBP": (-2.04, 0.02, 1.80), "DVI": (-1.01, 0.06, None), "ensemble": (-1.38, 0.22, 2.09)},
    "kin8nm": {"VI": (0.90, 0.01, 0.10), "PBP": (0.90, 0.01, 0.10), "DVI": (1.13, 0.00, None), "ensemble": (1.20, 0.02, 0.09)},
    "naval-propulsion-plant": {"VI": (3.73, 0.12, 0.01), "PBP": (3.73, 0.01, 0.01), "DVI": (6.29, 0.04, None), "ensemble": (5.63, 0.05, 0.00)},
    "power-plant": {"VI": (-2.89, 0.01, 4.33), "PBP": (-2.84, 0.01, 4.12), "DVI": (-2.80, 0.00, None), "ensemble": (-2.79, 0.04, 4.11)},
    "protein-tertiary-structure": {"VI": (-2.99, 0.01, 4.84), "PBP": (-2.97, 0.00, 4.73), "DVI": (-2.85, 0.01, None), "ensemble": (-2.83, 0.02, 4.71)},
    "wine-quality-red": {"VI": (-0.98, 0.01, 0.65), "PBP": (-0.97, 0.01, 0.64), "DVI": (-0.90, 0.01, None), "ensemble": (-0.94, 0.12, 0.64)},
    "yacht": {"VI": (-3.43, 0.16, 6.89), "PBP": (-1.63, 0.02, 1.02), "DVI": (-0.47, 0.03, None), "ensemble": (-1.18, 0.21, 1.58)},
}  # fmt: skip


def published_dropout(folder: Path) -> tuple[float, float, float] | None:
    """(LL, its SE, RMSE) of MC dropout from the README beside the folders, if it lists it."""
    readme = folder.parent / "README.md"
    if not readme.exists():
        return None
    num = r"(-?\d+\.\d+)\s*\+-\s*(\d+\.\d+)"
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] == folder.name:
            rmse, ll = re.match(num, cells[2]), re.match(num, cells[3])
            if rmse and ll:
                return float(ll[1]), float(ll[2]), float(rmse[1])
    return None


def _lines(path: Path) -> list[float]:
    return [float(v) for v in path.read_text().split()] if path.exists() else []


def one_split(folder: str, split: int, methods: tuple, steps: int, batch: int, lr: float,
              samples: int, hidden: int, tmp: str, ensemble_epochs: int = 40,
              epochs_scale: float = 0.0) -> dict:  # fmt: skip
    """Both runs of one split in this process (one thread); the evaluation of each method."""
    import torch

    from elbokit import recipes
    from elbokit.data.uci import read_uci

    torch.set_num_threads(1)
    folder_p = Path(folder)
    n_train = len(read_uci(folder_p, split)[1])
    quiet = lambda *a, **k: None  # noqa: E731
    recipe = recipes.get_recipe("bnn")

    reference_epochs = (_lines(folder_p / "n_epochs.txt") or [40])[0]

    def run(name, n, model, data):
        epochs = max(1, math.ceil(steps / math.ceil(n / batch)),
                     math.ceil(epochs_scale * reference_epochs))  # fmt: skip
        cfg = recipe.preset("default", {
            "data": {"source": folder, "split": split, **data},
            "model": {"hidden": (hidden,), "prior_variance": "empirical-bayes", **model},
            "optim": {"lr": lr},
            "train": {"epochs": epochs, "batch_size": batch, "eval_every": epochs, "progress": False,
                      "threads": 1, "checkpoint_every": 10**9, "log_every": 10**9},
            "evaluate": {"eval_samples": 0},
        })  # fmt: skip
        out = recipes.train(
            recipe, cfg, out=Path(tmp) / f"{folder_p.name}-{split}-{name}", say=quiet
        )
        return recipes.evaluate(out, {"samples": samples}, say=quiet)

    t0 = time.perf_counter()
    chosen = {}
    if "dropout" in methods:
        rates = tuple(_lines(folder_p / "dropout_rates.txt")) or (0.005, 0.01, 0.05, 0.1)
        taus = tuple(_lines(folder_p / "tau_values.txt"))
        if not taus:
            raise SystemExit(f"{folder}: tau_values.txt is missing (Gal's protocol needs its grid)")
        grid = run("grid", int(0.8 * n_train),
                   {"methods": ("dropout",), "dropout_rates": rates, "dropout_tau": taus},
                   {"validation": 0.2})  # fmt: skip
        chosen = {"dropout": grid["dropout"]["rate"], "dropout_tau": (grid["dropout"]["tau"],)}
    t1 = time.perf_counter()
    result = run(
        "all",
        n_train,
        {"methods": methods, "ensemble_epochs": ensemble_epochs, "ensemble_lr": 0.01, **chosen},
        {},
    )
    t2 = time.perf_counter()
    out = {"data": folder_p.name, "split": split, "grid_seconds": t1 - t0, "seconds": t2 - t1}
    for m in methods:
        out[m] = {"rmse": result[m]["rmse"], "ll": result[m]["log_likelihood"],
                  "calibration": result[m]["calibration"]}  # fmt: skip
    if chosen:
        out["dropout"]["rate"], out["dropout"]["tau"] = chosen["dropout"], chosen["dropout_tau"][0]
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def summarize(rows: list[dict], methods, folders) -> dict:
    table = {}
    for folder in folders:
        mine = sorted((r for r in rows if r["data"] == folder.name), key=lambda r: r["split"])
        if not mine:
            continue
        t = {"splits": len(mine), "seconds": sum(r["seconds"] + r["grid_seconds"] for r in mine)}
        for m in methods:
            t[m] = {"ll": mean_se([r[m]["ll"] for r in mine]),
                    "rmse": mean_se([r[m]["rmse"] for r in mine])}  # fmt: skip
        variational = [m for m in methods if m in ("bnn", "dvi")]
        if variational and "dropout" in methods:  # paired over splits
            best = max(variational, key=lambda m: t[m]["ll"][0])
            t["best_variational"] = best
            t["paired"] = mean_se([r[best]["ll"] - r["dropout"]["ll"] for r in mine])
        table[folder.name] = t
    return table


def print_table(table, methods, folders) -> None:
    head = " | ".join(f"{LABELS[m]} LL" for m in methods)
    pubs = ("MC dropout", "VI", "PBP", "DVI", "ensemble")
    print(f"\n| data (splits) | {head} | " + " | ".join(f"pub. {p}" for p in pubs) + " |")
    print("|" + "---|" * (1 + len(methods) + len(pubs)))
    for folder in folders:
        if folder.name not in table:
            continue
        t = table[folder.name]
        pub = dict(PUBLISHED.get(folder.name, {}))
        d = published_dropout(folder)
        if d:
            pub["MC dropout"] = d
        cells = [f"{t[m]['ll'][0]:.2f} +- {t[m]['ll'][1]:.2f}" for m in methods]
        cells += [f"{pub[p][0]:.2f} +- {pub[p][1]:.2f}" if p in pub else "-" for p in pubs]
        print(f"| {folder.name} ({t['splits']}) | " + " | ".join(cells) + " |")
    print(
        f"\n| data | {' | '.join(f'{LABELS[m]} RMSE' for m in methods)} | pub. MC dropout RMSE | minutes |"
    )
    print("|" + "---|" * (3 + len(methods)))
    for folder in folders:
        if folder.name not in table:
            continue
        t = table[folder.name]
        d = published_dropout(folder)
        cells = [f"{t[m]['rmse'][0]:.3g} +- {t[m]['rmse'][1]:.2g}" for m in methods]
        print(
            f"| {folder.name} | "
            + " | ".join(cells)
            + f" | {d[2] if d else '-'} | {t['seconds'] / 60:.1f} |"
        )
    print()
    for folder in folders:
        t = table.get(folder.name)
        if t and "paired" in t:
            diff, se = t["paired"]
            print(f"{folder.name}: {LABELS[t['best_variational']]} - MC dropout (ours) = {diff:+.3f} +- "
                  f"{se:.3f} nats per point, paired over {t['splits']} splits")  # fmt: skip


def figure(table, methods, folders, path: Path, machine: str) -> None:
    from elbokit.report._mpl import pyplot

    plt = pyplot()
    names = [f.name for f in folders if f.name in table]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    colors = {"bnn": "tab:blue", "dvi": "tab:purple", "dropout": "tab:orange",
              "ensemble": "tab:green", "det": "tab:gray"}  # fmt: skip
    for ax, name in zip(axes.flat, names, strict=False):
        t = table[name]
        for i, m in enumerate(methods):
            mean, se = t[m]["ll"]
            ax.errorbar([i], [mean], yerr=[0 if math.isnan(se) else 2 * se], fmt="o",
                        color=colors[m], capsize=3)  # fmt: skip
        pub = dict(PUBLISHED.get(name, {}))
        d = published_dropout(next(f for f in folders if f.name == name))
        if d:
            pub["MC dropout"] = d
        beside = {"bnn": ("VI", "PBP"), "dvi": ("DVI",), "dropout": ("MC dropout",),
                  "ensemble": ("ensemble",)}  # fmt: skip
        for i, m in enumerate(methods):
            for j, key in enumerate(beside.get(m, ())):
                if key in pub:
                    x = i + 0.22 * (j + 1)
                    ax.errorbar([x], [pub[key][0]], yerr=[2 * pub[key][1]], fmt="s", mfc="none",
                                color=colors[m], capsize=2, ms=5)  # fmt: skip
                    ax.annotate(key, (x, pub[key][0]), fontsize=6, xytext=(3, 0),
                                textcoords="offset points", va="center")  # fmt: skip
        ax.set_xticks(range(len(methods)), [LABELS[m] for m in methods], fontsize=8)
        ax.set_title(f"{name} ({t['splits']} splits)", fontsize=9)
        ax.set_ylabel("test LL per point (nats), +-2 SE", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"UCI regression test LL: ours (filled, +-2 SE over splits), published beside each (hollow, labelled)\n{machine}",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    from elbokit.data.uci import uci_settings
    from elbokit.train.settings import describe_machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--methods", nargs="+", default=["bnn", "dvi", "dropout", "ensemble"],
                    choices=list(LABELS))  # fmt: skip
    ap.add_argument("--splits", type=int, default=0, help="first N splits of each (0: all)")
    ap.add_argument("--steps", type=int, default=8000, help="optimizer steps per run")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument(
        "--epochs-scale",
        type=float,
        default=5.0,
        help="at least this times the folder's n_epochs.txt epochs (Gal: 100)",
    )
    ap.add_argument(
        "--ensemble-epochs",
        type=int,
        default=40,
        help="the ensemble's epochs (Lakshminarayanan et al.: 40; 0: the whole run)",
    )
    ap.add_argument("--samples", type=int, default=1000, help="draws per prediction")
    ap.add_argument("--workers", type=int, default=1, help="splits trained at once")
    ap.add_argument("--storage", default="", help="run the splits as an Optuna study in this "
                    "database (sqlite:///uci.db, postgresql://...): start the same command on "
                    "other machines to share them")  # fmt: skip
    ap.add_argument("--study", default="", help="the study's name (default: from the jobs)")
    ap.add_argument("--json", type=Path, default=None, help="write every split's numbers here")
    ap.add_argument("--figure", type=Path, default=Path("uci_table.png"))
    args = ap.parse_args()
    folders = [f for f in args.folders if f.is_dir()]
    machine = describe_machine()
    print(machine)
    print(f"{args.steps} steps per run, batch {args.batch_size}, lr {args.lr:g}, {args.samples} "
          f"draws per prediction, {args.workers} worker(s) of 1 thread", flush=True)  # fmt: skip
    jobs = []
    for folder in folders:
        s = uci_settings(folder)
        n = min(args.splits or s["n_splits"], s["n_splits"])
        jobs += [(str(folder.resolve()), k, s.get("n_hidden", 50)) for k in range(n)]
    rows, t0 = [], time.perf_counter()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.storage:
        rows = run_as_study(args, jobs)
    else:
        rows = run_in_pool(args, jobs, t0)
    wall = time.perf_counter() - t0
    table = summarize(rows, args.methods, folders)
    print_table(table, args.methods, folders)
    print(f"\n{len(rows)} splits in {wall / 60:.1f} min wall on {args.workers} worker(s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                         "wall_seconds": wall, "table": table, "splits": rows}, indent=1))  # fmt: skip
        print(f"wrote {args.json}")
    figure(table, args.methods, folders, args.figure, machine)


def _line(r: dict, methods) -> str:
    return (f"{r['data']} split {r['split']}: "
            + ", ".join(f"{LABELS[m]} {r[m]['ll']:.3f} ({r[m]['rmse']:.3g})" for m in methods)
            + (f"; dropout p={r['dropout']['rate']:g} tau={r['dropout']['tau']:g}" if "dropout" in methods else ""))  # fmt: skip


def run_as_study(args, jobs) -> list[dict]:
    """The splits as the trials of an Optuna study in ``args.storage`` (a grid over the jobs):
    every process started with the same command, on this machine or another reaching the same
    database, takes the splits no one has taken; the table is read from the finished trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"job": list(range(len(jobs)))}
    key = "|".join(f"{Path(f).name}:{k}" for f, k, _ in jobs) + f"|{args.steps}|{args.lr}"
    name = args.study or "uci-" + hashlib.sha1(key.encode()).hexdigest()[:10]
    study = optuna.create_study(study_name=name, storage=args.storage, load_if_exists=True,
                                sampler=optuna.samplers.GridSampler(grid), direction="maximize")  # fmt: skip
    print(f"study {name!r} in {args.storage}: {len(jobs)} splits as trials", flush=True)

    def objective(trial):
        f, k, h = jobs[trial.suggest_categorical("job", grid["job"])]
        with tempfile.TemporaryDirectory() as tmp:
            r = one_split(f, k, tuple(args.methods), args.steps, args.batch_size, args.lr,
                          args.samples, h, tmp, args.ensemble_epochs, args.epochs_scale)  # fmt: skip
        trial.set_user_attr("result", r)
        print(_line(r, args.methods), flush=True)
        return max(r[m]["ll"] for m in args.methods)

    done = lambda: [t for t in study.get_trials(deepcopy=False)  # noqa: E731
                    if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
    if len({t.params["job"] for t in done()}) < len(jobs):
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(
            len(jobs), states=(optuna.trial.TrialState.COMPLETE,))])  # fmt: skip
    seen, rows = set(), []
    for t in done():  # a grid point two workers both took counts once
        if t.params["job"] not in seen:
            seen.add(t.params["job"])
            rows.append(t.user_attrs["result"])
    return rows


def run_in_pool(args, jobs, t0) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(one_split, f, k, tuple(args.methods), args.steps, args.batch_size,
                               args.lr, args.samples, h, tmp, args.ensemble_epochs, args.epochs_scale)
                   for f, k, h in jobs]  # fmt: skip
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            rows.append(r)
            if args.json:  # every split as it ends: a stopped run keeps what it measured
                with args.json.with_suffix(".jsonl").open("a") as f:
                    f.write(json.dumps(r) + "\n")
            print(
                f"[{i}/{len(jobs)} {time.perf_counter() - t0:6.0f} s] " + _line(r, args.methods),
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
