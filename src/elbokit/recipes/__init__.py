"""Kinds of run, one recipe each, chosen by name.

    from elbokit import recipes
    cfg = recipes.get_recipe("vae").preset("debug", {"train": {"epochs": 3}})
    run_dir = recipes.train("vae", cfg, out="runs/x")
    recipes.evaluate(run_dir); recipes.report(run_dir)

Adding a kind: its recipe module (a ``Recipe`` subclass: config, presets, build, evaluate,
report), one line in ``RECIPES``, and its tests. The CLI's ``elbokit train KIND``, ``eval``,
``report`` and ``--resume`` read this registry and nothing else.
"""

from elbokit.config import ConfigError, closest
from elbokit.recipes.agent import AgentRecipe
from elbokit.recipes.base import Built, Recipe, Run
from elbokit.recipes.bnn import BNNRecipe
from elbokit.recipes.conjugate import CoinRecipe, NormalMeanRecipe
from elbokit.recipes.diffusion import DiffusionRecipe
from elbokit.recipes.gmm import GMMRecipe
from elbokit.recipes.linear_gaussian import LinearGaussianRecipe
from elbokit.recipes.run import evaluate, open_run, report, train
from elbokit.recipes.skills import SkillsRecipe
from elbokit.recipes.vae import VAERecipe
from elbokit.recipes.world_model import WorldModelRecipe

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        VAERecipe(),
        WorldModelRecipe(),
        LinearGaussianRecipe(),
        CoinRecipe(),
        NormalMeanRecipe(),
        GMMRecipe(),
        BNNRecipe(),
        DiffusionRecipe(),
        SkillsRecipe(),
        AgentRecipe(),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe registered under ``name``; ConfigError naming the kinds (and the closest)."""
    if name not in RECIPES:
        hint = closest(name, RECIPES)
        raise ConfigError(
            f"unknown kind of run {name!r}; kinds: {', '.join(RECIPES)}"
            + (f" (did you mean {hint!r}?)" if hint else "")
        )
    return RECIPES[name]


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
