"""What a kind of run is: a ``Recipe``.

A recipe says everything about one kind of run (``vae``, ``world-model``, ``linear-gaussian``):

    name, help      its registry name and a line for ``elbokit train --help``
    config          its run config: a Section of sections (data, model, objective, optim, train,
                    evaluate), each defined next to what it configures
    presets         named overrides of the default config ("default", "debug", ...)
    eval_options    the options of ``elbokit eval RUN`` / ``elbokit report RUN`` for this kind
    build           data and learner from a config (filling in what comes from the data)
    learner         the learner of a resolved config (to rebuild a saved run)
    evaluate        what its evaluation computes (writes RUN/eval.json)
    report          what its report shows (RUN/report/)

The trainer, the CLI and the run directory are shared: adding a kind is its recipe module, one
line in ``elbokit.recipes.RECIPES`` and its tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from elbokit.config import ConfigError, Section, closest, merge
from elbokit.train.checkpoint import load_checkpoint, load_module
from elbokit.train.learner import Learner, StepContext

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

    def saved(self) -> dict:
        """config.json as written (for the report's configuration table)."""
        return json.loads((self.dir / "config.json").read_text())

    def data(self):
        """The run's data, split exactly as it was for training."""
        return self.recipe.data(self.config, self.dir)

    def learner(self, data=None, device: str = "cpu") -> tuple[Learner, dict]:
        """The learner with the weights of the latest checkpoint (modules only; no optimizer
        state) on ``device``, and the state.json it came from."""
        data = self.data() if data is None else data
        learner = self.recipe.learner(self.config, data)
        learner.setup(StepContext(device))
        snap, state = load_checkpoint(self.dir, learner.tensor_groups(with_optimizers=False))
        folder = self.dir / state["checkpoint"]
        for name, module in learner.modules.items():
            load_module(module, snap.tensors[name], str(folder / f"{name}.safetensors"))
            module.eval()
        return learner, state


class Recipe:
    name: str = ""
    help: str = ""
    config: type[Section]
    eval_options: type[Section]
    presets: ClassVar[dict[str, dict]] = {"default": {}}

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
        return f"elbokit train {self.name} [options]"

    # ----------------------------------------------------------------- what a kind implements
    def default_out(self, cfg: Section) -> str:
        """The run directory's name without the time stamp (runs/vae-mnist5k)."""
        return f"runs/{self.name}"

    def check(self, cfg: Section) -> None:
        """Checks across sections that need no data; raise ConfigError (before anything is
        written)."""

    def data(self, cfg: Section, run_dir: Path):
        raise NotImplementedError

    def build(self, cfg: Section, run_dir: Path, *, world, say) -> Built:
        raise NotImplementedError

    def learner(self, cfg: Section, data) -> Learner:
        raise NotImplementedError

    def after_training(self, cfg: Section) -> Section | None:
        """The eval options to evaluate and report with once training ends, or None."""
        return None

    def evaluate(self, run: Run, options: Section, say=print) -> dict:
        raise NotImplementedError

    def report(self, run: Run, options: Section, say=print) -> Path:
        raise NotImplementedError
