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

from elbokit.config import SYNONYMS, ConfigError, Section, closest, from_dict, leaves, merge, nest
from elbokit.recipes._runs import (
    claim_run_dir,
    config_of,
    lock_run,
    new_run_dir,
    read_saved,
    unlock_run,
    write_config,
)
from elbokit.recipes.base import Recipe, Run
from elbokit.recipes.registry import get_recipe
from elbokit.train.checkpoint import read_state
from elbokit.train.distributed import setup, teardown
from elbokit.train.loop import Trainer
from elbokit.train.settings import (
    check_device,
    resolve_compile,
    resolve_kind_precision,
    resolve_settings,
)

__all__ = ["default_run_dir", "evaluate", "load", "open_run", "report", "train", "train_python"]


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


def load(run_dir: str | Path, device: str = "cpu"):
    """The trained run in ``run_dir`` as a Python object with its kind's verbs (``sample``,
    ``log_prob``, ``predict``, ``act``, ...; ``elbokit.recipes.loaded``), the weights of its
    latest checkpoint on ``device``. Its training data is not read.

    Raises:
        CheckpointError: not a run, or a run with no checkpoint yet.
        ConfigError: a device this machine does not have.
    """
    check_device(device)
    run = open_run(run_dir)
    return run.recipe.load(run, device)


def python_options(recipe: Recipe, options: dict, where: str = "elbokit.train") -> dict:
    """Keyword options named as on the command line, with underscores (``latent_dim=4``,
    ``data="digits"``), or by their dotted config path (``model.latent_dim``), as nested
    overrides of the kind's config.

    Raises:
        ConfigError: an option the kind does not have (naming the closest).
    """
    by_name = {}
    for leaf in leaves(recipe.default()):
        if not leaf.field.metadata.get("derived"):
            by_name[leaf.flag.replace("-", "_")] = leaf
            by_name[leaf.dotted] = leaf
    flat = {}
    for name, value in options.items():
        leaf = by_name.get(name)
        if leaf is None:
            synonym = SYNONYMS.get("--" + name.replace("_", "-"), "")[2:].replace("-", "_")
            hint = (
                synonym
                if synonym in by_name
                else closest(name, [n for n in by_name if "." not in n])
            )
            raise ConfigError(
                f"{where}: a {recipe.name} run has no option {name!r}"
                + (f"; did you mean {hint}?" if hint else "")
            )
        words = leaf.field.metadata.get("words") or {}
        if isinstance(value, str) and value in words:  # threads="auto", as --threads auto
            value = words[value]
        flat[leaf.path] = tuple(value) if isinstance(value, list) else value
    return nest(flat)


def train_python(kind: str, *, out: str | Path = "", preset: str = "default",
                 resume: str | Path = "", say=print, **options):  # fmt: skip
    """``elbokit.train(KIND, out=..., preset=..., **options)``: train a run of ``kind`` as
    ``elbokit train KIND`` does (the same checks, evaluation and report), then return it loaded
    (``load``). ``options`` are the kind's options as on the command line, with underscores
    (``epochs=2``, ``latent_dim=4``); ``resume=RUN`` continues a run (only the options that
    ``--resume`` takes may be given).

    Raises:
        ConfigError: an unknown option or a bad value, before anything is written.
    """
    recipe = _recipe(kind)
    overrides = python_options(recipe, options)
    if resume:
        fixed = [leaf.dotted for leaf in leaves(recipe.default())
                 if not (leaf.field.metadata.get("on_resume") or leaf.field.metadata.get("extends"))
                 and _given(overrides, leaf.path)]  # fmt: skip
        if fixed or out or preset != "default":
            raise ConfigError(f"resume={str(resume)!r} continues the run with its saved config; "
                              f"drop {', '.join(fixed + (['out'] if out else []) + (['preset'] if preset != 'default' else []))}")  # fmt: skip
        run_dir = train(recipe, resume=resume, resume_changes=overrides, say=say)
    else:
        config = recipe.preset(preset, overrides)
        run_dir = train(recipe, config, out=out, say=say)
    return load(run_dir, config_device(open_run(run_dir).config))


def _given(nested: dict, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(nested, dict) or key not in nested:
            return False
        nested = nested[key]
    return True


def config_device(config: Section) -> str:
    """The device a run trained on (cpu where its config names none)."""
    return getattr(getattr(config, "train", None), "device", "cpu") or "cpu"


def train(
    kind: str | Recipe,
    config: Section | None = None,
    *,
    out: str | Path = "",
    resume: str | Path = "",
    resume_changes: dict | None = None,
    stop_at: int | None = None,
    say=print,
    claimed=None,
    on_eval=None,
) -> Path:
    """Train a run of ``kind`` with ``config`` into ``out`` (default runs/KIND-...-TIME), or
    continue the run in ``resume`` with its saved config (``resume_changes``: settings that do
    not change the result, like the progress bar). Ends with the kind's evaluation and report
    when its config asks for them. Returns the run directory. The folder is created exclusively
    (a default name another run took gets -2, -3, ...) and locked while the run writes it
    (RUN/.lock); ``claimed(run_dir)`` is called once it is; ``on_eval(step, metrics)`` hears
    every evaluation (``Trainer.fit``).

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
            _check_extension(run, config)
        wanted, unique = run.dir, False
    else:
        config = recipe.default() if config is None else config
        wanted, unique = (Path(out), False) if out else (default_run_dir(recipe, config), True)
        if not unique:
            new_run_dir(wanted)  # a folder holding a run or other files: refused before anything
        recipe.check_size(config)
    tcfg = config.train
    settings = resolve_settings(tcfg.device, tcfg.precision, tcfg.threads)
    world = setup(tcfg.device)  # under torchrun: rank 0 alone writes and prints
    say = say if world.main else _quiet
    created, run_dir = False, None
    try:
        try:
            if world.main:  # the folder is this process's alone (RUN/.lock) until it ends
                if resume:
                    lock_run(run.dir)
                    run_dir = run.dir
                else:
                    run_dir, created = claim_run_dir(wanted, unique=unique)
            run_dir = Path(world.broadcast(str(run_dir) if world.main else None))
            if claimed is not None:
                claimed(run_dir)
            if not resume and world.main:
                _clear_partial(run_dir)
            try:
                built = recipe.build(config, run_dir, world=world, say=say)
                _check_batch_size(built)
                settings = resolve_kind_precision(tcfg.precision, settings,
                                                  built.learner.bf16_speedup, recipe.name)  # fmt: skip
            except BaseException:
                if created and world.main:  # rejected before training: leave no orphan folder
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
            # the precision, thread count and compiling as resolved here: a resume uses them
            t = built.config.train
            steps = t.epochs * built.data.num_batches("train", t.batch_size)
            learner = built.learner
            compiled, compile_why = resolve_compile(t.compile, settings.device, steps,
                                                    learner.compilable, learner.compile_speedup,
                                                    learner.stops_early)  # fmt: skip
            resolved = dataclasses.replace(built.config, train=dataclasses.replace(
                t, precision=settings.precision, threads=settings.threads, compile=compiled,
            ))  # fmt: skip
            if world.main and not (resume and (run_dir / "config.json").exists()
                                   and resolved == run.config):  # fmt: skip
                write_config(run_dir, recipe.name, resolved)  # (a resume: its new length)
            say(f"run directory: {run_dir}")
            for line in built.lines:
                say(line)
            say(settings.why + f"; compile {compile_why}"
                + (f"; {world.size} processes" if world.size > 1 else ""))  # fmt: skip
            trainer = Trainer(resolved.train, run_dir)
            t0 = time.perf_counter()
            metrics = trainer.fit(built.learner, built.data, resume=bool(resume), stop_at=stop_at,
                                  settings=settings, on_eval=on_eval)  # fmt: skip
        finally:
            teardown(world)
        units = recipe.units(resolved)
        shown = ", ".join(f"{k} {v:.4g}" + (f" {units[k]}" if k in units else "")
                          for k, v in metrics.items() if k.count("/") == 1)  # fmt: skip
        say(
            f"done in {time.perf_counter() - t0:.1f} s"
            + (f"; the trainer's last evaluation: {shown}" if shown else ": no new epochs")
        )
        options = recipe.after_training(resolved)
        if options is not None and world.main and stop_at is None:
            run = Run(run_dir, recipe, resolved)
            recipe.evaluate(run, options, say)
            recipe.report(run, options, say)
    finally:
        if world.main and run_dir is not None and run_dir.exists():
            unlock_run(run_dir)
    return run_dir


def _check_batch_size(built) -> None:
    """A batch larger than the training split is refused by name (it would silently be the
    whole split, every step)."""
    size = getattr(built.config.train, "batch_size", 1)
    try:
        n = len(built.data.split("train"))
    except (AttributeError, TypeError, ValueError):  # a stream: its batches are its own
        return
    if size > n:
        raise ConfigError(
            f"--batch-size {size}: the training split of {built.config.data.source or 'the data'} "
            f"has only {n:,} examples; use at most {n}"
        )


def _check_extension(run: Run, config: Section) -> None:
    """A resume may lengthen a run (``extends`` fields), never shorten it below where it is."""
    state = read_state(run.dir) if (run.dir / "state.json").exists() else {}
    for old, new in zip(leaves(run.config), leaves(config), strict=True):
        if old.value == new.value or not old.field.metadata.get("extends"):
            continue
        if new.value < old.value:
            raise ConfigError(
                f"--resume {run.dir} --{new.flag} {new.value}: the run is {old.value} long; a "
                f"resume continues a run to a larger --{new.flag}, it does not shorten it"
            )
    if state and hasattr(config.train, "epochs") and state.get("epoch", 0) > config.train.epochs:
        raise ConfigError(f"--resume {run.dir}: it is already past epoch {config.train.epochs}")


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
