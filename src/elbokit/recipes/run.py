"""Training, evaluating and reporting a run of any kind, through its recipe.

    run_dir = train("vae", recipe.preset("debug"), out="runs/x")   # or resume="runs/x"
    evaluate("runs/x")                                            # RUN/eval.json
    report("runs/x")                                              # RUN/report/report.html

Nothing here knows a kind: what differs between kinds is in their recipes. The CLI is a thin
layer over these three functions, and tests use them directly.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from elbokit.config import Section, from_dict, merge
from elbokit.recipes._runs import config_of, new_run_dir, read_saved, write_config
from elbokit.recipes.base import Recipe, Run
from elbokit.recipes.registry import get_recipe
from elbokit.train.checkpoint import read_state
from elbokit.train.distributed import setup, teardown
from elbokit.train.loop import Trainer
from elbokit.train.settings import resolve_settings

__all__ = ["default_run_dir", "evaluate", "open_run", "report", "train"]


def _quiet(*args, **kwargs):
    pass


def _recipe(kind: str | Recipe) -> Recipe:
    return kind if isinstance(kind, Recipe) else get_recipe(kind)


def default_run_dir(kind: str | Recipe, config: Section) -> Path:
    """Where a run goes when no --out is given: runs/KIND-DATA-TIME."""
    return Path(f"{_recipe(kind).default_out(config)}-{time.strftime('%Y%m%d-%H%M%S')}")


def open_run(run_dir: str | Path) -> Run:
    """A run directory with its recipe and resolved config.

    Raises:
        CheckpointError: no config.json, or one that is not JSON or names no kind.
        ConfigError: an unknown kind or a config that does not fit the kind (naming the key).
    """
    saved = read_saved(run_dir)
    recipe = get_recipe(saved["kind"])
    where = str(Path(run_dir) / "config.json")
    config = config_of(saved, recipe, where)
    return Run(Path(run_dir), recipe, config)


def train(
    kind: str | Recipe,
    config: Section | None = None,
    *,
    out: str | Path = "",
    resume: str | Path = "",
    resume_changes: dict | None = None,
    stop_at: int | None = None,
    say=print,
) -> Path:
    """Train a run of ``kind`` with ``config`` into ``out`` (default runs/KIND-...-TIME), or
    continue the run in ``resume`` with its saved config (``resume_changes``: settings that do
    not change the result, like the progress bar). Ends with the kind's evaluation and report
    when its config asks for them. Returns the run directory.

    Raises:
        ConfigError, ValueError, DataError: a bad option or data, before anything is written.
        TrainingDiverged: NaN or inf; the last good checkpoint is kept.
        CheckpointError: resume of a run whose checkpoint is missing or corrupt.
    """
    recipe = _recipe(kind)
    if resume:
        run = open_run(resume)
        if run.recipe.name != recipe.name:
            raise ValueError(f"{resume} is a {run.recipe.name!r} run, not a {recipe.name!r} run")
        if not (run.dir / "state.json").exists():
            say(f"{run.dir} has no checkpoint yet (interrupted before its first): starting it "
                "again from step 0 with its saved config")  # fmt: skip
            resume = ""
        else:
            read_state(run.dir)  # a corrupt state fails here, before any work
        config = run.config
        if resume_changes:
            config = merge(config, resume_changes)
        run_dir = run.dir
    else:
        config = recipe.default() if config is None else config
        run_dir = new_run_dir(out or default_run_dir(recipe, config))
    if not resume:
        _clear_partial(run_dir)
    tcfg = config.train
    settings = resolve_settings(tcfg.device, tcfg.precision, tcfg.threads)
    world = setup(tcfg.device)  # under torchrun: rank 0 alone writes and prints
    say = say if world.main else _quiet
    created = not run_dir.exists()
    try:
        try:
            built = recipe.build(config, run_dir, world=world, say=say)
        except Exception:
            if created and world.main:  # rejected before training: leave no orphan folder
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        resolved = dataclasses.replace(
            built.config,
            train=dataclasses.replace(built.config.train, precision=settings.precision),
        )
        if world.main and not (resume and (run_dir / "config.json").exists()):
            write_config(run_dir, recipe.name, resolved)
        say(f"run directory: {run_dir}")
        for line in built.lines:
            say(line)
        say(settings.why + (f"; {world.size} processes" if world.size > 1 else ""))
        trainer = Trainer(resolved.train, run_dir)
        t0 = time.perf_counter()
        metrics = trainer.fit(
            built.learner, built.data, resume=bool(resume), stop_at=stop_at, settings=settings
        )
    finally:
        teardown(world)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.count("/") == 1)
    say(f"done in {time.perf_counter() - t0:.1f} s: {shown or 'no new epochs'}")
    options = recipe.after_training(resolved)
    if options is not None and world.main and stop_at is None:
        run = Run(run_dir, recipe, resolved)
        recipe.evaluate(run, options, say)
        recipe.report(run, options, say)
    return run_dir


def _clear_partial(run_dir: Path) -> None:
    """What a run that never reached its first checkpoint left (its folder has no state.json):
    its metrics would otherwise be appended to by the new start."""
    if (run_dir / "state.json").exists():
        return
    for name in ("metrics.jsonl", "eval.json"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tensorboard", "checkpoints", "report"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def evaluate(run_dir: str | Path, options: Section | dict | None = None, say=print) -> dict:
    """Evaluate a run as its kind does (RUN/eval.json); ``options``: the kind's eval options."""
    run = open_run(run_dir)
    return run.recipe.evaluate(run, _options(run.recipe, options), say)


def report(run_dir: str | Path, options: Section | dict | None = None, say=print) -> Path:
    """Write a run's figures and report.html (evaluating first if eval.json is missing)."""
    run = open_run(run_dir)
    return run.recipe.report(run, _options(run.recipe, options), say)


def _options(recipe: Recipe, options) -> Section:
    if isinstance(options, Section):
        return options
    return from_dict(recipe.eval_options, options or {}, where="eval options")
