"""Clustered points drawn from a known Gaussian mixture, for checking mixture models.

    x, labels = four_gaussians(1000, seed=0)    four 2-D clusters at (+-4, +-4), unit variance

Everything is float64 and seeded through its own ``torch.Generator`` (no global RNG state).
"""

from __future__ import annotations

import math

import torch

__all__ = ["FOUR_GAUSSIANS_PROPORTIONS", "four_gaussians"]

# Unequal on purpose: a mixture model must find the small cluster as well as the large ones.
FOUR_GAUSSIANS_PROPORTIONS = (0.4, 0.3, 0.2, 0.1)


def four_gaussians(
    n: int = 1000, *, seed: int = 0, spread: float = 4.0, noise: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points from four isotropic 2-D Gaussian clusters, the textbook mixture example.

    Cluster k has centre c_k, with c_0 = (+s, +s), c_1 = (-s, +s), c_2 = (-s, -s), c_3 = (+s, -s)
    for s = ``spread``, and holds round(n p_k) points for p = (0.4, 0.3, 0.2, 0.1) (the rounding
    remainder goes to cluster 0). Each point is

        x_i = c_{label_i} + noise * eps_i,   eps_i ~ N(0, I_2),

    so ``noise`` is the standard deviation of every coordinate (variance noise^2, 1 by default).
    The points come in a seeded random order. Neighbouring centres are 2 s apart: at the defaults
    that is 8 standard deviations, so the true labels are recoverable almost without error (a
    point lands nearer another centre with probability about 3e-5).

    Returns:
        x: (n, 2) float64 points; labels: (n,) int64 cluster indices in 0..3.

    Raises:
        ValueError: n < 1, or a spread or noise that is negative or not finite.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n = {n!r}: expected an integer >= 1")
    if not (math.isfinite(spread) and spread >= 0):
        raise ValueError(f"spread = {spread!r}: expected a finite value >= 0")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise = {noise!r}: expected a finite value >= 0")
    g = torch.Generator().manual_seed(seed)
    sizes = [round(n * p) for p in FOUR_GAUSSIANS_PROPORTIONS]
    sizes[0] += n - sum(sizes)
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    labels = labels[torch.randperm(n, generator=g)]
    signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
    x = spread * signs[labels] + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, labels
