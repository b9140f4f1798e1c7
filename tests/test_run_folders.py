"""Runs never share a folder (an exclusive create, a lock with the writer's pid), and the same
command gives the same numbers however busy the machine is (the thread count is the machine's,
saved with the run)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from elbokit import recipes
from elbokit.config import ConfigError
from elbokit.recipes._runs import LOCK, claim_run_dir, lock_run, unlock_run
from references import assert_same_checkpoints

QUIET = lambda *a: None  # noqa: E731
CLI = [sys.executable, "-m", "elbokit"]
DEBUG = ["train", "vae", "--preset", "debug", "--eval-k", "0", "--no-progress"]


def test_a_default_name_taken_gets_a_suffix(tmp_path):
    base = tmp_path / "runs" / "vae-digits-20261206-080431"
    first, made = claim_run_dir(base, unique=True)
    second, _ = claim_run_dir(base, unique=True)
    assert (first, made) == (base, True) and second == base.with_name(base.name + "-2")
    for d in (first, second):
        assert json.loads((d / LOCK).read_text())["pid"] == os.getpid()
        unlock_run(d)
        assert not (d / LOCK).exists()


def test_two_runs_started_together_write_two_folders(tmp_path):
    """Two `elbokit train vae --preset debug` in one folder at the same moment (the same default
    name, to the second): each writes its own run, whole."""
    procs = [subprocess.Popen([*CLI, *DEBUG, "--threads", "1"], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = [next(line.split(": ", 1)[1] for line in o.splitlines()
                 if line.startswith("run directory: ")) for o in outs]  # fmt: skip
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and said[0] != said[1], (said, folders)
    for d in folders:
        assert (d / "state.json").exists() and not (d / LOCK).exists()
        lines = (d / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines if "train/elbo" in x]
        assert steps == sorted(set(steps))  # one writer: no step twice


def test_a_folder_another_live_run_writes_is_refused(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "run"
        run.mkdir()
        (run / LOCK).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename}))
        with pytest.raises(ValueError, match=f"pid {live.pid}"):
            recipes.train("vae", recipes.get_recipe("vae").preset("debug"), out=run, say=QUIET)
        assert sorted(p.name for p in run.iterdir()) == [LOCK]  # nothing written
        with pytest.raises(ValueError, match="being written"):
            lock_run(run)
    finally:
        live.kill()
        live.wait()
    lock_run(run)  # its writer died: the lock is stale and taken over
    assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    unlock_run(run)


def test_the_thread_count_is_saved_and_a_busy_machine_gives_the_same_weights(tmp_path):
    """The main job's debug preset with the default thread count, once on an idle machine and
    once beside a process that keeps a core busy: the same count, bit-identical weights. The
    count is saved with the run, so a resume uses it."""
    quiet = subprocess.run([*CLI, *DEBUG, "--out", str(tmp_path / "idle")], capture_output=True,
                           text=True, timeout=240)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        loaded = subprocess.run([*CLI, *DEBUG, "--out", str(tmp_path / "busy")],
                                capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        busy.kill()
        busy.wait()
    assert loaded.returncode == 0, loaded.stderr
    saved = [json.loads((tmp_path / d / "config.json").read_text())["config"]["train"]["threads"]
             for d in ("idle", "busy")]  # fmt: skip
    assert saved[0] == saved[1] >= 1
    assert_same_checkpoints(tmp_path / "idle", tmp_path / "busy", ["model"])


def test_threads_auto_on_the_command_line(tmp_path):
    from elbokit.cli import main

    assert main([*DEBUG, "--threads", "auto", "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]["train"]
    assert saved["threads"] >= 1  # auto resolved to a count, saved
    assert main([*DEBUG, "--threads", "many", "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


def test_a_resume_keeps_the_saved_thread_count(tmp_path):
    from elbokit.cli import main

    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False, "threads": 1, "checkpoint_every": 5},
                               "evaluate": {"eval_k": 0}})  # fmt: skip
    run = recipes.train(vae, cfg, out=tmp_path / "run", stop_at=12, say=QUIET)
    assert main(["train", "--resume", str(run), "--threads", "2"]) == 2  # refused: not exact
    said = []
    recipes.train(vae, resume=run, say=said.append)
    assert any("threads 1 (--threads)" in line for line in said), said
    assert Path(run / "state.json").exists()


def test_a_finished_run_continues_to_more_epochs_as_if_it_had_been_that_long(tmp_path):
    """--resume RUN --epochs 3 after a 2-epoch run ends with the weights of a 3-epoch run (the
    debug VAE has no schedule over the run's length)."""
    from elbokit.cli import main

    assert main([*DEBUG, "--threads", "1", "--epochs", "2", "--out", str(tmp_path / "short")]) == 0
    assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "3",
                 "--no-progress"]) == 0  # fmt: skip
    assert main([*DEBUG, "--threads", "1", "--epochs", "3", "--out", str(tmp_path / "long")]) == 0
    assert_same_checkpoints(tmp_path / "short", tmp_path / "long", ["model"])
    saved = json.loads((tmp_path / "short" / "config.json").read_text())["config"]["train"]
    assert saved["epochs"] == 3  # a later resume or eval sees the new length
    assert main(["train", "--resume", str(tmp_path / "short"), "--epochs", "1"]) == 2


def test_keep_checkpoints_and_the_best_one(tmp_path):
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False, "threads": 1, "epochs": 4,
                                         "checkpoint_every": 5, "keep_checkpoints": 3,
                                         "keep_best": "test/elbo"},
                               "evaluate": {"eval_k": 0}})  # fmt: skip
    run = recipes.train(vae, cfg, out=tmp_path / "run", say=QUIET)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(x["test/elbo"], x["step"]) for x in lines if "test/elbo" in x]
    best_value, best_step = max(evals)
    state = json.loads((run / "state.json").read_text())
    assert state["best"]["step"] == best_step and state["best"]["value"] == best_value
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    last3 = [f"step-{s:07d}" for s in (125, 130, 132)]  # 33 steps per epoch, every 5
    assert set(last3) <= set(kept) and f"step-{best_step:07d}" in kept and len(kept) <= 4
    # the weights readable as the run's other files are (safetensors creates its files 0600)
    mode = (run / "state.json").stat().st_mode & 0o777
    weights = run / "checkpoints" / last3[-1] / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == mode == 0o666 & ~_umask()
    bad = vae.preset("debug", {"train": {"progress": False, "keep_best": "test/nope"},
                               "evaluate": {"eval_k": 0}})  # fmt: skip
    with pytest.raises(ConfigError, match="test/elbo"):
        recipes.train(vae, bad, out=tmp_path / "bad", say=QUIET)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_every_preset_checkpoints_before_its_end():
    """Every kind's every preset, with its data's steps per epoch: a checkpoint before the run's
    last step, so an interrupted default run can always be resumed."""
    from elbokit.train.loop import checkpoint_interval

    for name, recipe in recipes.RECIPES.items():
        for preset in recipe.presets:
            cfg = recipe.preset(preset)
            try:
                data = recipe.data(cfg, Path("/nonexistent"))
                per_epoch = data.num_batches("train", cfg.train.batch_size)
            except Exception:  # data made by collection (a world model's episodes): >= 1 each
                per_epoch = 1
            total = cfg.train.epochs * per_epoch
            every = checkpoint_interval(cfg.train.checkpoint_every, total)
            assert every < total, (name, preset, total, cfg.train.checkpoint_every)


def test_help_shows_what_each_preset_runs(capsys):
    """`elbokit train KIND --preset P --help`: every option's shown default is the value the
    command `elbokit train KIND --preset P` would run with, for every kind and preset."""
    from elbokit.cli import main
    from elbokit.cli._args import merged, parse
    from elbokit.cli.runs import _train_parser
    from elbokit.config import leaves

    for name, recipe in recipes.RECIPES.items():
        for preset in recipe.presets:
            with pytest.raises(SystemExit):
                main(["train", name, "--preset", preset, "--help"])
            raw = capsys.readouterr().out
            parser, by_dest = _train_parser(recipe, preset=preset)
            runs = merged(recipe.preset(preset), parse(parser, ["--preset", preset]), by_dest, name)
            for leaf in leaves(runs):
                if leaf.field.metadata.get("derived"):
                    continue
                value = (
                    " ".join(map(str, leaf.value)) if isinstance(leaf.value, tuple) else leaf.value
                )
                found = re.search(rf"^\s+--{re.escape(leaf.flag)}[ ,\n]", raw, re.M)
                assert found, (name, preset, leaf.flag)
                after = " ".join(raw[found.start() :].split())
                default = after[after.index("(default: ") + 10 :].split(")")[0]
                assert default == (str(value) if value != "" else "none"), (
                    name,
                    preset,
                    leaf.flag,
                    default,
                    value,
                )
