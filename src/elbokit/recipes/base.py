"""What a kind of run is: a ``Recipe``.

A recipe says everything about one kind of run (``vae``, ``world-model``, ``linear-gaussian``):

    name, help      its registry name and a line for ``elbokit train --help``
    config          its run config: a Section of sections (data, model, objective, optim, train,
                    evaluate), each defined next to what it configures
    presets         named overrides of the default config ("default", "debug", ...)
    eval_options    the options of ``elbokit eval RUN`` / ``elbokit report RUN`` for this kind
    build           data and learner from a config (filling in what comes from the data)
    learner         the learner of a resolved config (to rebuild a saved run, without its data)
    loaded          the class of a trained run used from Python (``elbokit.load``): its verbs
    measure         what its evaluation computes (``evaluate`` writes it to RUN/eval.json)
    draw            what its report shows (``report`` writes RUN/report/report.html)

The trainer, the CLI and the run directory are shared: adding a kind is its recipe module, one
line in ``elbokit.recipes.registry.KINDS`` and its tests.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from elbokit.config import ConfigError, Section, closest, leaves, merge
from elbokit.data.readers import DataError
from elbokit.files import atomic_write_text, read_json
from elbokit.recipes._runs import read_saved
from elbokit.recipes.loaded import Loaded
from elbokit.train.checkpoint import CheckpointError, load_checkpoint, read_state
from elbokit.train.learner import Learner, StepContext
from elbokit.train.settings import available_memory

__all__ = ["Built", "Recipe", "Run", "derive"]


def derive(cfg: Section, **sections: dict) -> Section:
    """``cfg`` with fields that come from the data filled in: derive(cfg, model={"data_shape": s})."""
    return merge(cfg, sections, where="derived from the data")


@dataclass
class Built:
    """What ``Recipe.build`` returns: the resolved config (with what came from the data), the
    data, the learner, and lines describing them for the console."""

    config: Section
    data: Any
    learner: Learner
    lines: list[str] = field(default_factory=list)


@dataclass
class Run:
    """A run directory opened by its recipe: ``config`` is its resolved config."""

    dir: Path
    recipe: Recipe
    config: Section
    _other_data: str = ""

    def saved(self) -> dict:
        """config.json as written (for the report's configuration table)."""
        return read_saved(self.dir)

    def data(self):
        """The run's data, split exactly as it was for training (or the other data of ``on``,
        checked to have the shape the model takes)."""
        try:
            data = self.recipe.data(self.config, self.dir)
        except DataError as err:
            if self.other_data or not hasattr(getattr(self.config, "data", None), "source"):
                raise
            raise DataError(f"{err} (the run's data moved? evaluate it on the data where it is "
                            f"now: elbokit eval {self.dir} --data PATH)") from None  # fmt: skip
        if self.other_data:
            self._check_other(data)
        return data

    def _check_other(self, data) -> None:
        """Other data must have the shape (and classes) the model takes: said before scoring."""
        model, saved = getattr(self.config, "model", None), self.config.data
        shapes = [(getattr(model, "data_shape", None), getattr(data, "shape", None)),
                  (getattr(saved, "input_shape", None) or None, getattr(data, "input_shape", None))]  # fmt: skip
        if getattr(model, "data_dim", None) and hasattr(data, "dim"):
            shapes.append(((model.data_dim,), (data.dim,)))
        for want, got in shapes:
            if want is not None and got is not None and tuple(want) != tuple(got):
                raise ValueError(f"data {self.other_data} has examples of shape {tuple(got)}; this "
                                 f"run's model takes {tuple(want)}")  # fmt: skip
        classes = getattr(saved, "classes", None) if getattr(saved, "train_size", 0) else None
        if classes is not None and getattr(data, "classes", classes) != classes:
            raise ValueError(f"data {self.other_data} has {data.classes or 'no'} classes (0: a "
                             f"regression); this run's model predicts {classes or 'a regression'}")  # fmt: skip

    @property
    def other_data(self) -> str:
        """The data source this run is evaluated on when it is not its own ('': its own)."""
        return self._other_data

    def on(self, source: str) -> Run:
        """The same run evaluated on other data: ``source`` in place of its data source (any
        source the kind reads), with the rest of its data settings kept.

        Raises:
            ConfigError: the kind's evaluation takes no data (an agent acts in environments).
        """
        data = getattr(self.config, "data", None)
        if data is None or not hasattr(data, "source"):
            article = "an" if self.recipe.name[0] in "aeiou" else "a"
            raise ConfigError(
                f"{article} {self.recipe.name} run is not evaluated on a data set, so other data "
                "does not apply to it"
            )
        config = merge(self.config, {"data": {"source": str(source)}}, where="--data")
        run = Run(self.dir, self.recipe, config)
        run._other_data = source
        return run

    def other_images(self, source: str, n: int, shape, generator) -> torch.Tensor:
        """Up to ``n`` images of another data set, as floats in [0, 1] prepared as this run
        prepares its own (binarized alike): its test split first, then its training split (a
        model trained here saw neither), for out-of-distribution scores.

        Raises:
            ValueError: the other data's images are not of ``shape``.
        """
        other = self.on(source).data()
        if tuple(other.shape) != tuple(shape):
            raise ValueError(f"data {source} has images of shape {tuple(other.shape)}; this "
                             f"run's model takes {tuple(shape)}")  # fmt: skip
        raw = torch.cat([other.test[:n], other.train[: max(0, n - len(other.test))]])
        return other.as_float(raw, generator)

    def learner(self, data=None, device: str = "cpu") -> tuple[Learner, dict]:
        """The learner with the weights of the latest checkpoint (modules and the learner's
        extra state, such as closed-form variational parameters; no optimizer state) on
        ``device``, and the state.json it came from. Without ``data`` it is rebuilt from the
        saved config alone (the training data may have moved)."""
        kept = sorted(p.name for p in (self.dir / "checkpoints").glob("step-*") if p.is_dir()) \
            if (self.dir / "checkpoints").is_dir() else []  # fmt: skip
        if not (self.dir / "state.json").exists() and kept:
            raise CheckpointError(
                f"{self.dir}/state.json is missing, so which checkpoint is the run's last is not "
                f"known (checkpoints/ holds {', '.join(kept)}); the run's folder was damaged"
            )
        if not (self.dir / "state.json").exists():
            raise CheckpointError(
                f"{self.dir} has no checkpoint: its training stopped before the first one "
                f"({_last_step(self.dir)}), so there are no weights to use; train it again "
                "(elbokit train --resume RUN starts it from step 0 with its saved config)"
            )
        learner = self.recipe.learner(self.config, data)
        learner.setup(StepContext(device, batch_size=self.config.train.batch_size, training=False))
        snap, state = load_checkpoint(
            self.dir, learner.tensor_groups(with_optimizers=False), optional=("extra",)
        )
        learner.restore(snap, str(self.dir / state["checkpoint"]), optimizers=False)
        for module in learner.modules.values():
            module.eval()
        return learner, state


class Recipe:
    name: str = ""
    help: str = ""
    config: type[Section]
    eval_options: type[Section]
    presets: ClassVar[dict[str, dict]] = {"default": {}}
    preset_notes: ClassVar[dict[str, str]] = {}  # a few words per preset, for --help
    # "fit" for the kinds that are fitted rather than trained (exact models, a mixture by CAVI):
    # ``elbokit fit KIND`` is then the same command as ``elbokit train KIND``
    verb: ClassVar[str] = "train"
    # the metric a study of this kind optimizes by default, METRIC:max or METRIC:min
    headline: ClassVar[str] = ""
    # named sweeps of this kind (``elbokit sweep NAME``): {name: the option it varies}
    sweeps: ClassVar[dict[str, str]] = {}
    # the class of a loaded run (``elbokit.load``): its kind's verbs
    loaded: ClassVar[type[Loaded]] = Loaded
    # what its report's table calls the keys of eval.json it shows as they are
    labels: ClassVar[dict[str, str]] = {}
    # fields renamed since runs were saved: {"old.dotted.key": "new.dotted.key" or None}
    renamed: ClassVar[dict[str, str | None]] = {}

    # ------------------------------------------------------------------ configs and presets
    def default(self) -> Section:
        return self.config()

    def preset(self, name: str = "default", overrides: dict | None = None) -> Section:
        """The config of a named preset, with nested ``overrides`` laid over it.

        Raises:
            ConfigError: an unknown preset (naming the closest) or a bad override.
        """
        if name not in self.presets:
            hint = closest(name, self.presets)
            raise ConfigError(
                f"{self.name} has no preset {name!r}; presets: {', '.join(self.presets)}"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        cfg = merge(self.default(), self.presets[name], where=f"preset {name}")
        return merge(cfg, overrides or {}) if overrides else cfg

    def redo_command(self, cfg: Section | None = None) -> str:
        """The command that trains ``cfg`` again: the options where it differs from the kind's
        default (derived fields come from the data); without a config, the kind's usage."""
        if cfg is None:
            return f"elbokit train {self.name} [options]"
        words = ["elbokit", "train", self.name]
        for leaf, base in zip(leaves(cfg), leaves(self.default()), strict=True):
            if leaf.field.metadata.get("derived") or leaf.value == base.value:
                continue
            if isinstance(leaf.value, bool):
                words.append(f"--{'' if leaf.value else 'no-'}{leaf.flag}")
            else:
                values = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
                words += [f"--{leaf.flag}", *(shlex.quote(str(v)) for v in values)]
        return " ".join(words)

    # ----------------------------------------------------------------- what a kind implements
    def units(self, cfg: Section) -> dict[str, str]:
        """The unit of each logged metric that has one (``{"test/elbo": "nats"}``), printed
        beside its value when a run ends."""
        return {}

    def default_out(self, cfg: Section) -> str:
        """The run directory's name without the time stamp (runs/vae-mnist5k)."""
        return f"runs/{self.name}"

    def data(self, cfg: Section, run_dir: Path):
        raise NotImplementedError

    def build(self, cfg: Section, run_dir: Path, *, world, say) -> Built:
        raise NotImplementedError

    def learner(self, cfg: Section, data) -> Learner:
        """The learner of ``cfg``; ``data`` is None when a saved run is rebuilt from its config
        alone (everything the model needs of the data is in the config's derived fields)."""
        raise NotImplementedError

    def load(self, run: Run, device: str = "cpu"):
        """The trained run as a Python object with its kind's verbs (``loaded``), its weights
        read from the latest checkpoint, without its training data."""
        learner, state = run.learner(device=device)
        return self.loaded(run, learner, state, device)

    def check_size(self, cfg: Section) -> None:
        """Refuse, before anything is allocated or written, a model whose parameters with their
        gradients and Adam's two moments (16 bytes each) would not fit in the memory this
        machine has available (the learner is built on torch's meta device: shapes only).

        Raises:
            ConfigError: the sizes asked for, with the memory they need and the memory there is.
        """
        if hasattr(cfg, "env"):  # the acting kinds build environments with their learner
            return
        try:
            with torch.device("meta"):
                learner = self.learner(cfg, None)
            n = sum(p.numel() for m in learner.modules.values() for p in m.parameters())
        except Exception:  # a learner that needs more than shapes: no estimate, no refusal
            return
        need, there = 16 * n, available_memory()
        if there is not None and need > there:
            raise ConfigError(
                f"these sizes make a model of {n:,} parameters, {need / 2**30:,.1f} GiB with "
                f"their gradients and Adam's moments; this machine has {there / 2**30:,.1f} GiB "
                "available: lower the sizes (--latent-dim, --hidden, --channels, ...)"
            )

    def after_training(self, cfg: Section) -> Section | None:
        """The eval options to evaluate and report with once training ends, or None."""
        return None

    def sweep_figure(self, name: str, points: list[dict], folder: Path) -> Path:
        """The figure of a named sweep's results (``sweeps``), written into ``folder``."""
        raise NotImplementedError(f"{self.name} has no {name!r} sweep")

    def measure(self, run: Run, options: Section) -> tuple[dict, list[str]]:
        """What the kind's evaluation computes: (the result for eval.json, lines to print)."""
        raise NotImplementedError

    def draw(self, run: Run, result: dict, data, learner, state: dict, out: Path, options):
        """What the kind's report shows: (title, {label: value}, [(png, caption), ...]), the
        figures written into ``out``."""
        raise NotImplementedError

    # ------------------------------------------------------- evaluate and report, every kind
    def evaluate(self, run: Run, options: Section, say=print) -> dict:
        """``measure``, then RUN/eval.json (strict JSON) and the lines on the console.

        Raises:
            ValueError: a result that is NaN or inf (weights that are not finite); nothing is
                written.
        """
        if not os.access(run.dir, os.W_OK):  # before the work, not after it
            raise ValueError(f"cannot write {run.dir / 'eval.json'}: the folder is read-only")
        result, lines = self.measure(run, options)
        bad = _non_finite(result)
        if bad:
            raise ValueError(
                f"{run.dir}: the evaluation gave {', '.join(bad)}: the checkpoint's weights are "
                "not finite or the model is broken; eval.json was not written"
            )
        target = run.dir / "eval.json"
        if run.other_data:  # another data set's evaluation goes beside the run's own
            result = {"data": run.other_data, **result}
            target = run.dir / f"eval-data-{_slug(run.other_data)}.json"
        if target.exists():
            try:
                saved = read_json(target, "")
                before = self.thoroughness(saved)
            except (ValueError, KeyError, TypeError):  # a damaged or older file: replace it
                saved, before = {}, {}
            now = self.thoroughness(result)
            # a quicker look at the same weights must not replace a more thorough evaluation
            # the report uses; an evaluation of later weights (a resumed run) always does
            if (
                before
                and saved.get("step") == result.get("step")
                and any(now[k] < before[k] for k in now)
            ):
                kept = target.name
                # OOD images or LLR draws left out of the name where there are none
                named = [f"{k}{v}" for k, v in now.items() if v or k not in ("ood", "llr")]
                target = target.with_name(f"{target.stem}-{'-'.join(named)}.json")
                lines.append(f"  (kept {kept}, a more thorough evaluation of the same step: "
                             f"{before}; this one goes beside it)")  # fmt: skip
        atomic_write_text(target, json.dumps(result, indent=2, allow_nan=False))
        stopped = interrupted(read_state(run.dir))
        if stopped:
            lines.append(f"  (training {stopped}: elbokit train --resume {run.dir} continues it)")
        for line in lines:
            say(line)
        say(f"wrote {target}")
        return result

    def thoroughness(self, result: dict) -> dict[str, int]:
        """How thorough an evaluation was ({"n": examples, "k": samples}): a new result smaller
        in any of them is written beside eval.json (eval-n100-k50.json), not over it."""
        return {}

    def report(self, run: Run, options: Section, say=print) -> Path:
        """The figures and RUN/report/report.html (evaluating first when eval.json is missing)."""
        from elbokit.report import write_html

        if not (run.dir / "eval.json").exists():
            self.evaluate(run, options, say)
        result = read_json(run.dir / "eval.json", "evaluate the run first: elbokit eval RUN")
        if "ood" not in result:
            for side in _ood_beside(run.dir, result.get("step")):
                say(f"(the out-of-distribution scores in {side} are not in this report: it shows "
                    "eval.json, a more thorough evaluation without --ood; `elbokit eval RUN --ood "
                    "DATA` as thorough as eval.json puts them in)")  # fmt: skip
        data = run.data()
        learner, state = run.learner(data)
        out = run.dir / "report"
        title, numbers, pngs = self.draw(run, result, data, learner, state, out, options)
        numbers = {readable(k, {"step": "trained (steps)", **self.labels}): v
                   for k, v in numbers.items()}  # fmt: skip
        if interrupted(state):
            numbers = {"training": f"{interrupted(state)} (elbokit train --resume RUN continues it)",
                       **numbers}  # fmt: skip
        page = write_html(out / "report.html", title, numbers, pngs, run.saved())
        say(f"wrote {page} and {len(pngs)} figures in {out}")
        return page


def _ood_beside(run_dir: Path, step) -> list[str]:
    """The evaluations written beside eval.json (a quicker look) that hold OOD scores of the same
    step."""
    found = []
    for path in sorted(run_dir.glob("eval-*.json")):
        if path.name.startswith("eval-data-"):
            continue
        try:
            side = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(side, dict) and "ood" in side and side.get("step") == step:
            found.append(path.name)
    return found


def readable(key: str, labels: dict[str, str]) -> str:
    """A report table's label for a key of eval.json passed on as it is: ``labels`` (the kind's
    ``Recipe.labels``), for "NET: key" the part after the colon too, else the key with spaces
    for underscores."""
    head, sep, tail = key.rpartition(": ")
    if sep and tail in labels:
        return f"{head}: {labels[tail]}"
    return labels.get(key, key.replace("_", " ") if " " not in key else key)


def _last_step(run_dir: Path) -> str:
    """What metrics.jsonl says of how far a run got."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return f"its last metrics are of step {json.loads(lines[-1])['step']}"
    except (OSError, IndexError, ValueError, KeyError):
        return "it logged no metrics"


def interrupted(state: dict) -> str:
    """'interrupted at step 1000 of 1350' for a checkpoint of a run that did not end, else ''."""
    total = state.get("total")
    if state.get("complete", True) or not total or state.get("step", 0) >= total:
        return ""
    return f"interrupted at step {state['step']:,} of {total:,}"


def _slug(source: str) -> str:
    """A file-name part for a data source: its last path part without its suffix, safe
    characters only."""
    name = Path(source.rstrip("/")).stem or "data"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def _non_finite(value, key: str = "") -> list[str]:
    """'key = nan' for every float in a nested result that is not finite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{key or 'a value'} = {value}"]
    if isinstance(value, dict):
        return [b for k, v in value.items() for b in _non_finite(v, f"{key}.{k}" if key else k)]
    if isinstance(value, (list, tuple)):
        return [b for i, v in enumerate(value) for b in _non_finite(v, f"{key}[{i}]")]
    return []
