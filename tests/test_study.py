"""Studies on Optuna (``elbokit sweep KIND``): ranges checked against the kind's config, trials
that are ordinary runs, seeds averaged, failures recorded, pruning, several workers sharing a
database (SQLite, and a real PostgreSQL server where one can be started), and a worker killed
mid-trial whose trial another worker resumes from its checkpoint, run once."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from elbokit import recipes
from elbokit.cli import main
from elbokit.config import ConfigError
from elbokit.study import Study, parse_param, read_objective

optuna = pytest.importorskip("optuna", reason="studies need optuna: pip install -e '.[test]'")
CLI = [sys.executable, "-m", "elbokit"]
DEBUG_VAE = ["--preset", "debug", "--eval-k", "0", "--no-progress", "--threads", "1"]


def test_ranges_are_checked_against_the_kinds_options():
    base = recipes.get_recipe("vae").preset("debug")
    p = parse_param("lr=log:1e-4:1e-2", base)
    assert (p.path, p.kind, p.log, p.low, p.high) == (("optim", "lr"), "float", True, 1e-4, 1e-2)
    assert parse_param("latent-dim=int:2:8", base).path == ("model", "latent_dim")
    assert parse_param("hidden=int:32:64", base).apply(40) == (40,)  # every layer that width
    assert parse_param("latent=gaussian,categorical", base).choices == ("gaussian", "categorical")
    for spec, said in [("lrr=log:1e-4:1e-2", "did you mean lr"), ("beta=-1,2", "bounds"),
                       ("lr=log:0:1", "bounds"), ("latent=gauss", "choices"),
                       ("epochs=float:1:3", "integers"), ("lr=1e-3", None), ("lr", "NAME=RANGE"),
                       ("lr=log:1e-2:1e-4", "below")]:  # fmt: skip
        if said is None:
            assert parse_param(spec, base).choices == (1e-3,)
            continue
        with pytest.raises(ConfigError, match=said):
            parse_param(spec, base)


def test_a_study_of_seeded_trials_records_each_run(tmp_path):
    """Two settings on a grid, two seeds each: every trial's objective is the mean of its runs'
    last logged test ELBO, read back from each run folder, with its standard error."""
    vae = recipes.get_recipe("vae")
    base = vae.preset("debug", {"train": {"progress": False, "threads": 1, "epochs": 1},
                                "evaluate": {"eval_k": 0}})  # fmt: skip
    study = Study.create("vae", ["beta=0.5,2"], base, folder=tmp_path, name="s", sampler="grid",
                         storage=f"sqlite:///{tmp_path / 'study.db'}", trials=2, seeds=2,
                         pruner="none")  # fmt: skip
    assert study.work(say=lambda *a: None) == 2
    for t in study.study.get_trials():
        assert t.state.name == "COMPLETE" and len(t.user_attrs["runs"]) == 2
        values = [read_objective(Path(r), "test/elbo") for r in t.user_attrs["runs"]]
        assert t.value == pytest.approx(sum(values) / 2)
        assert t.user_attrs["stderr"] == pytest.approx(abs(values[0] - values[1]) / 2)
        cfg = recipes.open_run(t.user_attrs["runs"][1]).config
        assert cfg.objective.beta == t.params["beta"] and cfg.train.seed == 1
    # the kind's own figure of a beta study comes with the report, and with per-image values
    # in every run's evaluation, the other trial against the best paired per image over seeds
    for t in study.study.get_trials():
        for r in t.user_attrs["runs"]:
            recipes.evaluate(r, {"k": 5, "limit": 40}, say=lambda *a: None)
    assert main(["sweep", "report", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "rate_distortion.png").stat().st_size > 5000
    page = (tmp_path / "report" / "report.html").read_text()
    assert "trial 1" in page and "best (paired)" in page and "over 2 seeds" in page
    for t in study.study.get_trials():  # each seed's own objective, read from its run folder
        values = [read_objective(Path(r), "test/elbo") for r in t.user_attrs["runs"]]
        assert "(seeds: " + ", ".join(f"{v:.4g}" for v in values) + ")" in page


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    vae = recipes.get_recipe("vae")
    base = vae.preset("debug", {"train": {"progress": False, "threads": 1, "epochs": 1},
                                "evaluate": {"eval_k": 0}})  # fmt: skip
    study = Study.create("vae", ["lr=1e9,1e-3"], base, folder=tmp_path, name="s", sampler="grid",
                         storage=f"sqlite:///{tmp_path / 'study.db'}", trials=2, pruner="none")  # fmt: skip
    study.work(say=lambda *a: None)
    states = {t.params["lr"]: t for t in study.study.get_trials()}
    assert states[1e9].state.name == "FAIL"
    assert "nan" in states[1e9].user_attrs["error"]  # its one-line reason
    assert states[1e-3].state.name == "COMPLETE"


def test_a_misspelled_objective_stops_the_study_naming_the_metrics(tmp_path, capsys):
    code = main(["sweep", "vae", *DEBUG_VAE, "--epochs", "1", "--param", "lr=1e-3,2e-3",
                 "--sampler", "grid", "--trials", "2", "--objective", "test/elbow",
                 "--out", str(tmp_path / "s")])  # fmt: skip
    assert code == 2
    assert "test/elbo" in capsys.readouterr().err
    assert main(["sweep", "vae", "--param", "lrr=log:1e-4:1e-2", "--out", str(tmp_path / "t")]) == 2
    assert "did you mean lr" in capsys.readouterr().err and not (tmp_path / "t").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_two_workers(storage: str, folder: Path, trials: int, extra=()) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "sweep", "vae", *DEBUG_VAE, "--param", "lr=log:1e-3:1e-2", "--trials", str(trials),
         "--workers", "2", "--pruner", "none", "--storage", storage, "--study", "s",
         "--out", str(folder), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _check_each_trial_once(folder: Path, storage: str, trials: int) -> None:
    study = optuna.load_study(study_name="s", storage=storage)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == trials
    runs = sorted(p.name for p in folder.glob("trial-*"))
    originals = {t.system_attrs.get("failed_trial", t.number) for t in done}
    assert runs == [f"trial-{n:04d}" for n in sorted(originals)]  # one folder per trial
    for run in runs:
        lines = (folder / run / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines if "train/elbo" in json.loads(x)]
        assert steps == sorted(set(steps)), run  # no step trained twice into one folder
        assert json.loads((folder / run / "state.json").read_text())["complete"]


def test_a_worker_killed_mid_trial_is_resumed_by_another(tmp_path):
    """SIGKILL a worker while its trial runs: its heartbeat stops, the trial goes stale, a retry
    resumes the killed trial's folder from its checkpoint; the study ends with every trial
    complete and none run twice."""
    folder = tmp_path / "s"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = _sweep_two_workers(storage, folder, 3, ["--epochs", "10", "--checkpoint-every", "30",
                                                    "--heartbeat", "1"])  # fmt: skip
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and sweep.poll() is None:
        for run in folder.glob("trial-*"):
            state, lock = run / "state.json", run / ".lock"
            try:
                step = json.loads(state.read_text())["step"] if state.exists() else 0
                pid = json.loads(lock.read_text())["pid"] if lock.exists() else None
            except (OSError, ValueError, KeyError):
                continue
            if pid and pid != sweep.pid and step >= 30:  # a worker, not the supervising sweep
                os.kill(pid, signal.SIGKILL)
                killed = run
                break
        time.sleep(0.05)
    out, _ = sweep.communicate(timeout=300)
    assert killed is not None, out
    assert sweep.returncode == 0, out
    assert "starting another" in out and "resuming" in out
    _check_each_trial_once(folder, storage, 3)


def _postgres(tmp: Path):
    """A throwaway PostgreSQL cluster on a temporary directory and a localhost port, run as the
    package's postgres user (initdb refuses root); (url, stop) or a reason to skip."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        return None, "no PostgreSQL server here: apt install postgresql (.ci/run does as root)"
    if os.geteuid() != 0:
        return None, "starting a PostgreSQL cluster as its postgres user needs root"
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URLs)
    except ImportError:
        return None, "no psycopg: pip install -e '.[test]'"
    b = bins[-1]
    data = tmp / "pg"
    data.mkdir()
    shutil.chown(tmp, "postgres")
    shutil.chown(data, "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)],  # noqa: E731
                                      capture_output=True, text=True, timeout=120)  # fmt: skip
    done = run(b / "initdb", "-D", data, "--auth=trust", "-U", "postgres")
    if done.returncode:
        return None, f"initdb failed: {done.stderr[-300:]}"
    done = run(b / "pg_ctl", "-D", data, "-l", data / "log", "-w", "-o",
               f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
    if done.returncode:
        return None, f"pg_ctl start failed: {done.stderr[-300:]}"
    run(b / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "elbokit")
    return (
        f"postgresql://postgres@127.0.0.1:{port}/elbokit",
        lambda: run(b / "pg_ctl", "-D", data, "-m", "immediate", "stop"),
    ), ""


def test_two_workers_share_a_study_through_postgresql():
    tmp = Path(tempfile.mkdtemp(prefix="elbokit-pg-"))
    try:
        made, why = _postgres(tmp)
        if made is None:
            pytest.skip(why)
        url, stop = made
        try:
            folder = tmp / "runs"
            sweep = _sweep_two_workers(url, folder, 4)
            out, _ = sweep.communicate(timeout=300)
            assert sweep.returncode == 0, out
            assert (
                len({line.split("]")[0] for line in out.splitlines() if line.startswith("[worker")})
                == 2
            )
            _check_each_trial_once(folder, url, 4)
        finally:
            stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
