"""A 16-trial VAE study (debug-sized trials) with 1 and with 2 worker processes on this machine:
wall time of each, their ratio, and the study machinery's overhead per trial (the wall time not
spent inside the trials' runs: process start, the report at the end, storage and sampling), and
the study machinery alone (SQLite, sampling, reports and records of trials that train nothing).

    python benchmarks/sweep_bench.py [--trials 16] [--epochs 2]

Each study is ``elbokit sweep vae --preset debug --param lr=log:1e-4:1e-2 --sampler random
--pruner none``, run as a user would (a subprocess); the trials' own time is what Optuna records
per trial (start to finish). Run it on an idle machine: it prints the CPU and thread counts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from elbokit.train.settings import cpu_info, describe_machine


def study(folder: Path, trials: int, workers: int, epochs: int) -> dict:
    import optuna

    cmd = [sys.executable, "-m", "elbokit", "sweep", "vae", "--preset", "debug", "--eval-k", "0",
           "--no-progress", "--epochs", str(epochs), "--param", "lr=log:1e-4:1e-2",
           "--sampler", "random", "--pruner", "none", "--trials", str(trials),
           "--workers", str(workers), "--out", str(folder), "--study", "bench"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    s = optuna.load_study(study_name="bench", storage=f"sqlite:///{folder / 'study.db'}")
    runs = [(t.datetime_complete - t.datetime_start).total_seconds() for t in s.get_trials()]
    return {"wall": wall, "trials": len(runs), "in_trials": sum(runs)}


def machinery(folder: Path, trials: int) -> float:
    """Seconds per trial of the study machinery alone (SQLite): ``Study.work`` over trials that
    draw their setting, report two evaluations and record their runs as a real trial does, and
    train nothing."""
    from elbokit.recipes import get_recipe
    from elbokit.study import Study

    base = get_recipe("vae").preset("debug")
    study = Study.create("vae", ["lr=log:1e-4:1e-2"], base, folder=folder, name="noop",
                         storage=f"sqlite:///{folder / 'noop.db'}", trials=trials,
                         sampler="random", pruner="median")  # fmt: skip

    def noop(trial, say=print):
        lr = study.params[0].suggest(trial)
        for step in (33, 66):
            trial.report(-30.0 - lr, step)
            trial.should_prune()
        for key, value in (
            ("runs", [str(folder)]),
            ("values", [-30.0]),
            ("stderr", 0.0),
            ("seconds", 0.0),
        ):
            trial.set_user_attr(key, value)
        return -30.0 - lr

    study.trial = noop
    t0 = time.perf_counter()
    study.work(say=lambda *a: None)
    return (time.perf_counter() - t0) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cores = cpu_info().cores
    print(describe_machine())
    print(f"a {args.trials}-trial VAE study, debug preset, {args.epochs} epochs per trial; "
          f"1 worker: {cores} thread(s); 2 workers: {max(1, cores // 2)} thread(s) each")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        per_trial = machinery(Path(tmp), args.trials)
        one = study(Path(tmp) / "one", args.trials, 1, args.epochs)
        two = study(Path(tmp) / "two", args.trials, 2, args.epochs)
    print(
        f"the study machinery alone (SQLite, sampling, 2 reports, 4 records): {per_trial * 1000:.0f} ms per trial"
    )
    for name, r in (("1 worker", one), ("2 workers", two)):
        workers = 1 if name == "1 worker" else 2
        overhead = (r["wall"] * workers - r["in_trials"]) / r["trials"]
        print(
            f"{name:>9}: {r['wall']:6.1f} s wall, {r['in_trials']:6.1f} s inside trials, "
            f"{overhead:.2f} s per trial outside them (process start, the report, storage)"
        )
    print(f"2 workers / 1 worker wall time: {two['wall'] / one['wall']:.2f}x")


if __name__ == "__main__":
    main()
