"""The first picture of the ELBO's KL term: KL(N(mu, sigma^2) || N(0, 1)) and its asymmetry."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from elbokit.divergence import normal_kl
from elbokit.files import atomic_path
from elbokit.report._mpl import pyplot

FORMATS = (".png", ".svg", ".pdf")


def plot_gaussian_kl(
    path: str | os.PathLike,
    *,
    mus: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0),
    sigma_min: float = 0.05,
    sigma_max: float = 5.0,
    points: int = 400,
) -> Path:
    """Write a two-panel figure (PNG, SVG or PDF by the suffix of ``path``); return its path.

    Left: KL(N(mu, sigma^2) || N(0, 1)) against sigma (log axis) for each mu, the minimum
    KL = 0 marked at mu = 0, sigma = 1. Right: both directions for mu = 0, KL(N(0, sigma^2) ||
    N(0, 1)) and KL(N(0, 1) || N(0, sigma^2)): equal only at sigma = 1.

    Raises:
        ValueError: sigma_min <= 0, sigma_min >= sigma_max, or points < 2.
        ImportError: matplotlib is missing (with the install command).
    """
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if points < 2:
        raise ValueError(f"points={points}; need at least 2")
    if not all(math.isfinite(m) for m in mus):
        raise ValueError(f"mus = {list(mus)}: expected finite means")
    if Path(path).suffix.lower() not in FORMATS:
        raise ValueError(f"--out {path}: expected a file ending in {', '.join(FORMATS)}")
    plt = pyplot()
    sigma = torch.logspace(
        math.log10(sigma_min), math.log10(sigma_max), points, dtype=torch.float64
    )
    zero, one = torch.zeros(()), torch.ones(())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for mu in mus:
        kl = normal_kl(torch.full_like(sigma, mu), sigma, zero, one)
        left.plot(sigma.numpy(), kl.numpy(), label=f"$\\mu$ = {mu:g}")
    left.plot(
        [1.0],
        [0.0],
        marker="*",
        markersize=14,
        color="black",
        linestyle="none",
        zorder=5,
        label="minimum: KL = 0 at $\\mu$ = 0, $\\sigma$ = 1",
    )
    axes = {"xscale": "log", "ylabel": "KL (nats)", "ylim": (-0.2, 5.5)}
    # every curve's minimum, mu^2 / 2 at sigma = 1, inside the axis with room for its shape
    top = max(5.5, 1.5 * max((m * m / 2 for m in mus), default=0.0) + 2.0)
    left.set(
        xlabel="$\\sigma$ (the posterior's standard deviation)",
        title="KL( N($\\mu$, $\\sigma^2$) || N(0, 1) ): the VAE's KL term per dimension",
        **{**axes, "ylim": (-0.2, top)},
    )
    left.legend(loc="upper center")
    forward = normal_kl(torch.zeros_like(sigma), sigma, zero, one).numpy()
    reverse = normal_kl(torch.zeros_like(sigma), torch.ones_like(sigma), zero, sigma).numpy()
    sigma = sigma.numpy()
    right.plot(sigma, forward, label="KL( N(0, $\\sigma^2$) || N(0, 1) )")
    right.plot(sigma, reverse, label="KL( N(0, 1) || N(0, $\\sigma^2$) )", linestyle="--")
    right.fill_between(sigma, forward, reverse, alpha=0.15, color="grey", label="asymmetry")
    right.set(
        xlabel="$\\sigma$",
        title="KL is not symmetric: the two directions differ unless $\\sigma$ = 1",
        **axes,
    )
    right.legend(loc="upper center")
    out = Path(path)
    try:
        with atomic_path(out) as tmp:  # the format follows the suffix: .png, .svg or .pdf
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return out
