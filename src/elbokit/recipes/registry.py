"""The kinds of run by name: each a recipe class in its own module, imported when first asked for.

A kind is found by ``get_recipe(name)`` or ``RECIPES[name]``; iterating ``RECIPES`` gives the
names without importing any recipe, so opening one run imports its kind's module alone (a VAE run
does not import gymnasium). Adding a kind is one line in ``KINDS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from elbokit.config import ConfigError, closest

# name -> "module:Class", in the order `elbokit train --help` lists them
KINDS = {
    "vae": "elbokit.recipes.vae:VAERecipe",
    "world-model": "elbokit.recipes.world_model:WorldModelRecipe",
    "linear-gaussian": "elbokit.recipes.linear_gaussian:LinearGaussianRecipe",
    "coin": "elbokit.recipes.conjugate:CoinRecipe",
    "normal-mean": "elbokit.recipes.conjugate:NormalMeanRecipe",
    "gmm": "elbokit.recipes.gmm:GMMRecipe",
    "bnn": "elbokit.recipes.bnn:BNNRecipe",
    "diffusion": "elbokit.recipes.diffusion:DiffusionRecipe",
    "skills": "elbokit.recipes.skills:SkillsRecipe",
    "agent": "elbokit.recipes.agent:AgentRecipe",
}


class _Recipes(Mapping):
    """``KINDS`` as recipe instances, each built on first use (one per kind)."""

    def __init__(self, kinds: dict[str, str]):
        self._kinds = kinds
        self._built: dict = {}

    def __getitem__(self, name: str):
        if name not in self._built:
            module, cls = self._kinds[name].split(":")
            self._built[name] = getattr(importlib.import_module(module), cls)()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


RECIPES = _Recipes(KINDS)


def get_recipe(name: str):
    """The recipe registered under ``name``; ConfigError naming the kinds (and the closest)."""
    if name not in KINDS:
        hint = closest(name, KINDS)
        raise ConfigError(
            f"unknown kind of run {name!r}; kinds: {', '.join(KINDS)}"
            + (f" (did you mean {hint!r}?)" if hint else "")
        )
    return RECIPES[name]
