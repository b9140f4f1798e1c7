"""``elbokit sweep``: studies of many runs.

    elbokit sweep KIND --param lr=log:1e-4:1e-2 --param beta=0.25,0.5,1 [--seeds 3]
                       [--objective test/elbo:max] [--trials 40] [--workers 2]
                       [--sampler tpe|grid|random] [--pruner median|none]
                       [--storage sqlite:///runs/NAME/study.db | postgresql://...] [--study NAME]
                       [--out runs/NAME] [--preset P] [other options of KIND, fixed]
    elbokit sweep --study NAME --storage URL        join a study as one more worker
    elbokit sweep report FOLDER | --storage URL --study NAME
    elbokit sweep beta --values 0.25 0.5 1 2 4      one run per beta of the kind that names the
                                                    beta sweep, then its rate-distortion curve

A study runs on Optuna (``elbokit.study``); each trial is an ordinary run folder. The beta sweep:
each run is OUT/beta-B (resumable, reportable); the curve is OUT/rate_distortion.png and the
numbers OUT/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
    if argv and argv[0] in recipes.RECIPES:
        return study_command(argv)
    if argv and argv[0] == "report":
        return report_command(argv[1:])
    if argv and argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        return join_command(argv)
    recipe = _kind_of("beta")
    if not argv or argv[0] != "beta":
        usage = (
            f"usage: elbokit sweep beta --values B [B ...] [options of elbokit train {recipe.name}]"
        )
        text = (f"usage: elbokit sweep KIND --param NAME=RANGE [...] (elbokit sweep KIND --help)\n"
                f"       elbokit sweep --study NAME --storage URL\n"
                f"       elbokit sweep report FOLDER\n       {usage[7:]}\n\nkinds: "
                + ", ".join(recipes.RECIPES))  # fmt: skip
        if argv and argv[0] in ("-h", "--help"):
            print(text)
            return 0
        from elbokit.config import closest

        hint = closest(argv[0], [*recipes.RECIPES, "report", "beta"]) if argv else None
        raise UsageError(
            f"elbokit sweep: {'which kind?' if not argv else repr(argv[0]) + ' is not a kind'}"
            + (f" (did you mean {hint!r}?)" if hint else "") + f"\n{text}"
        )  # fmt: skip
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


# ----------------------------------------------------------------------------------- studies
STUDY_OPTIONS = ("param", "seeds", "objective", "trials", "workers", "sampler", "pruner",
                 "storage", "study", "out", "preset", "heartbeat")  # fmt: skip


def _study_parser(recipe, preset: str):
    parser = Parser(
        prog=f"elbokit sweep {recipe.name}", conflict_handler="resolve",
        description=f"a study of {recipe.name} runs on Optuna: each trial one run (or one per "
        "seed) with its settings drawn from the --param ranges; the other options are fixed for "
        "every trial (a kind's option named like a study option, such as an --objective of its "
        "own, is varied with --param or set by --preset)",
        usage=f"elbokit sweep {recipe.name} --param NAME=RANGE [...] [study options] [options of the kind]",
    )  # fmt: skip
    by_dest = add_config_arguments(parser, recipe.preset(preset))
    parser.add_argument("--preset", choices=list(recipe.presets), default="default",
                        help="named settings the other options override (default: default)")  # fmt: skip
    parser.add_argument("--out", default="", metavar="DIR",
                        help=f"the study's folder (default: runs/sweep-{recipe.name}-TIME)")  # fmt: skip
    g = parser.add_argument_group("study")
    g.add_argument("--param", action="append", default=[], metavar="NAME=RANGE",
                   help="an option and its range: lr=log:1e-4:1e-2, dropout=float:0:0.5, "
                        "hidden=int:32:512, beta=0.25,0.5,1 (repeat for more)")  # fmt: skip
    g.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="runs of each setting, seeds --seed, --seed + 1, ...; the objective is their mean (default: 1)")  # fmt: skip
    g.add_argument("--objective", default="", metavar="METRIC[:max|:min]",
                   help=f"a metric the kind logs or a key of eval.json (default: {recipe.headline})")  # fmt: skip
    g.add_argument(
        "--trials",
        type=int,
        default=20,
        metavar="N",
        help="trials in all, over every worker (default: 20)",
    )
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local worker processes (threads split between them) (default: 1)")  # fmt: skip
    g.add_argument("--sampler", choices=("tpe", "grid", "random"), default="tpe",
                   help="how settings are drawn (grid: every combination of listed values) (default: tpe)")  # fmt: skip
    g.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="stop a trial whose evaluation is worse than the median of the others at that step (default: median)")  # fmt: skip
    g.add_argument("--storage", default="", metavar="URL",
                   help="the study's database (default: sqlite:///OUT/study.db); postgresql://... for many machines")  # fmt: skip
    g.add_argument(
        "--study", default="", metavar="NAME", help="the study's name (default: OUT's folder name)"
    )
    g.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help="seconds between a worker's heartbeats; its trial goes stale after 3 missed (default: 10)")  # fmt: skip
    return parser, by_dest


def study_command(argv: list[str]) -> int:
    from elbokit.cli.runs import _preset_named
    from elbokit.study.params import parse_params
    from elbokit.study.run import Study, worker_threads

    recipe = recipes.get_recipe(argv[0])
    parser, by_dest = _study_parser(recipe, _preset_named(argv[1:], recipe))
    ns = parse(parser, argv[1:])
    if ns.workers < 1:
        raise UsageError(f"--workers {ns.workers}: expected at least 1")
    base = merged(recipe.preset(ns.preset), ns, by_dest, parser.prog)
    if "threads" not in given(ns, by_dest).get("train", {}):  # split the cores; no load probe
        base = merge(base, {"train": {"threads": worker_threads(ns.workers)}})
    parse_params(ns.param, base)  # every range checked before anything is written
    folder = Path(ns.out or f"runs/sweep-{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    storage = ns.storage or f"sqlite:///{folder / 'study.db'}"
    name = ns.study or folder.name
    try:
        study = Study.create(recipe.name, ns.param, base, folder=folder, name=name, storage=storage,
                             trials=ns.trials, seeds=ns.seeds, objective=ns.objective,
                             sampler=ns.sampler, pruner=ns.pruner, heartbeat=ns.heartbeat)  # fmt: skip
    except Exception:
        if made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"study {name} in {storage}: {ns.trials} trials of {recipe.name} over "
          f"{', '.join(p.name for p in study.params)}, {study.metric} "
          f"({'max' if study.maximize else 'min'}imized), runs in {folder}")  # fmt: skip
    return _run_workers(study, storage, name, ns.workers, ns.heartbeat)


def join_command(argv: list[str]) -> int:
    """``elbokit sweep --study NAME --storage URL [--workers N]``: more workers for a study."""
    from elbokit.study.run import Study

    parser = Parser(prog="elbokit sweep", description="join a study as more workers")
    parser.add_argument("--study", required=True, metavar="NAME")
    parser.add_argument("--storage", required=True, metavar="URL")
    parser.add_argument("--workers", type=int, default=1, metavar="N")
    parser.add_argument("--heartbeat", type=int, default=10, metavar="S")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ns = parse(parser, argv)
    study = Study.join(ns.storage, ns.study, ns.heartbeat, worker=os.getpid() if ns.worker else 0)
    if ns.worker:  # one worker process, started by a sweep command
        study.work(say=lambda line: print(f"[worker {os.getpid()}] {line}", flush=True))
        return 0
    return _run_workers(study, ns.storage, ns.study, ns.workers, ns.heartbeat)


def _run_workers(study, storage: str, name: str, workers: int, heartbeat: int) -> int:
    """Run the study here (one worker) or in ``workers`` processes, restarting any that dies
    while the study still needs trials; Ctrl-C stops them and says how to continue."""
    import subprocess
    import sys

    how = f"elbokit sweep --study {name} --storage {storage}"
    try:
        if workers == 1:
            study.work()
        else:
            # workers - 1 processes beside this one, which works too (one start saved) and
            # replaces any that dies while the study still needs trials
            cmd = [sys.executable, "-m", "elbokit", "sweep", "--study", name, "--storage", storage,
                   "--heartbeat", str(heartbeat), "--worker"]  # fmt: skip
            procs = [subprocess.Popen(cmd) for _ in range(workers - 1)]

            def watch():
                for i, p in enumerate(procs):
                    if p is not None and p.poll() is not None:
                        if p.returncode != 0 and study.counts()["done"] < study.trials:
                            print(f"a worker ended with status {p.returncode}; starting another")
                            procs[i] = subprocess.Popen(cmd)
                        else:
                            procs[i] = None

            study.work(
                between=watch, say=lambda line: print(f"[worker {os.getpid()}] {line}", flush=True)
            )
            while any(p is not None for p in procs):
                time.sleep(0.2)
                watch()
    except KeyboardInterrupt:
        print(
            f"\nelbokit: study interrupted; finished trials are kept, and a trial that was "
            f"running resumes from its checkpoint: continue with {how}",
            file=sys.stderr,
        )
        return 130
    from elbokit.study.report import write_report

    c = study.counts()
    print(f"study {name}: {c['done']} trials done; {how} adds workers, elbokit sweep report "
          f"{study.folder} draws it")  # fmt: skip
    write_report(study)
    return 0


def report_command(argv: list[str]) -> int:
    from elbokit.study.report import write_report
    from elbokit.study.run import Study

    parser = Parser(prog="elbokit sweep report", description="a study's table and figures")
    parser.add_argument("folder", nargs="?", default="", metavar="FOLDER")
    parser.add_argument("--storage", default="", metavar="URL")
    parser.add_argument("--study", default="", metavar="NAME")
    ns = parse(parser, argv)
    if not ns.storage:
        if not ns.folder:
            raise UsageError(
                "elbokit sweep report: which study? FOLDER or --storage URL --study NAME"
            )
        db = Path(ns.folder) / "study.db"
        if not db.exists():
            raise UsageError(f"{ns.folder} holds no study.db: give --storage URL --study NAME")
        ns.storage = f"sqlite:///{db}"
    if not ns.study:
        import optuna

        names = [s.study_name for s in optuna.get_all_study_summaries(ns.storage)]
        if len(names) != 1:
            raise UsageError(
                f"{ns.storage} holds {len(names)} studies ({', '.join(names)}): give --study NAME"
            )
        ns.study = names[0]
    write_report(Study.join(ns.storage, ns.study))
    return 0
