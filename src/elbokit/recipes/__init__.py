"""Kinds of run, one recipe each, chosen by name.

    from elbokit import recipes
    cfg = recipes.get_recipe("vae").preset("debug", {"train": {"epochs": 3}})
    run_dir = recipes.train("vae", cfg, out="runs/x")
    recipes.evaluate(run_dir); recipes.report(run_dir)

Adding a kind: its recipe module (a ``Recipe`` subclass: config, presets, build, evaluate,
report), one line in ``registry.KINDS``, and its tests. The CLI's ``elbokit train KIND``, ``eval``,
``report`` and ``--resume`` read this registry and nothing else.
"""

from elbokit.recipes.base import Built, Recipe, Run
from elbokit.recipes.registry import RECIPES, get_recipe
from elbokit.recipes.run import evaluate, open_run, report, train

__all__ = [
    "RECIPES",
    "Built",
    "Recipe",
    "Run",
    "evaluate",
    "get_recipe",
    "open_run",
    "report",
    "train",
]
