"""Components chosen by name: one lookup that every registry (likelihoods, latents, objectives)
shares, so an unknown name or option fails the same way everywhere."""

from __future__ import annotations


def build(registry: dict[str, type], kind: str, name: str, options: dict):
    """``registry[name](**options)``; ValueError naming the kind, the name and the choices."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(registry)}")
    try:
        return registry[name](**options)
    except TypeError as e:
        raise ValueError(f"{kind} {name!r}: {e}") from None
