"""The picture of VI over one parameter: prior, likelihood, exact posterior and the fitted q."""

from __future__ import annotations

from pathlib import Path

import torch

from elbokit.report._draw import save
from elbokit.report._mpl import pyplot


@torch.no_grad()
def densities(grid: torch.Tensor, model, q, path, parameter: str = "theta") -> Path:
    """Over ``grid``: the prior density, the likelihood scaled to unit area, the exact posterior
    and q (BetaQ, NormalQ: their distribution; LogitNormalQ: its density of the bias)."""
    plt = pyplot()
    prior = model.prior().log_prob(grid).exp()
    like = model.log_likelihood(grid)
    like = (like - like.max()).exp()
    like = like / torch.trapezoid(like, grid)
    post = model.posterior().log_prob(grid).exp()
    log_q = q.log_density(grid) if hasattr(q, "log_density") else q.distribution().log_prob(grid)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = grid.numpy()
    ax.plot(x, prior.numpy(), ":", color="gray", label="prior")
    ax.plot(x, like.numpy(), "--", color="tab:green", label="likelihood (unit area)")
    ax.plot(x, post.numpy(), "-", lw=3, alpha=0.5, color="tab:blue", label="exact posterior")
    ax.plot(x, log_q.exp().numpy(), "-", color="tab:red", label=f"q ({q.name}), fitted by VI")
    ax.set(xlabel=parameter, ylabel="density", title=f"the posterior of {parameter} and its VI fit")
    ax.legend()
    return save(fig, path)
