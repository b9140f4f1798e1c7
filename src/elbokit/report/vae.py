"""The pictures of a trained latent-variable model of images (the VAE kind), each a PNG.

    samples          decoded draws from the prior
    reconstructions  test images beside their reconstructions
    traversals       one latent unit swept at a time (the most informative ones first)
    latent_map       2-D latents: the decoded grid over the prior's bulk; otherwise the posterior
                     means of test images projected on their two principal axes, coloured by label
    kl_bars          KL per latent unit, active units marked
    rate_distortion  a beta sweep's distortion against rate

Every function takes the model (any LatentVariableModel on images) or numbers and writes one file.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from elbokit.report._draw import save, show
from elbokit.report._mpl import pyplot

VAE_CURVES = (("elbo", "ELBO (nats)"), ("recon", "reconstruction NLL (nats)"), ("kl", "KL (nats)"))


@torch.no_grad()
def _decode_mean(model, z: torch.Tensor) -> torch.Tensor:
    params = model.decode(z)
    return (
        model.likelihood.mean(params, 1 + len(model.data_shape))
        .reshape(len(z), *model.data_shape)
        .float()
    )


@torch.no_grad()
def samples(model, path, n: int = 64, seed: int = 0) -> Path:
    model.eval()
    z = model.latent.sample_prior(n, generator=torch.Generator().manual_seed(seed))
    fig, ax = pyplot().subplots(figsize=(6, 6))
    show(ax, _decode_mean(model, z), int(math.sqrt(n)), "samples from the prior (decoder means)")
    return save(fig, path)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, path, n: int = 32) -> Path:
    model.eval()
    x = x[:n]
    recon = _decode_mean(model, model.latent.posterior_mean(model.encode(x)))
    pairs = torch.stack([x, recon], 1).reshape(-1, *x.shape[1:])  # input, reconstruction, ...
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    show(ax, pairs, 4, "test images (left of each pair) and their reconstructions (right)")
    return save(fig, path)


@torch.no_grad()
def traversals(model, x: torch.Tensor, path, dims: int = 8, steps: int = 9) -> Path:
    """Vary one unit at a time around a test image's posterior mean, the `dims` units with the
    largest mean KL: a Gaussian unit from -3 to +3 prior deviations, a categorical group
    through its classes."""
    model.eval()
    params = model.encode(x)
    order = model.latent.kl_units(params).mean(0).argsort(descending=True)[:dims].tolist()
    base = model.latent.posterior_mean(params[:1])[0]
    z = torch.cat([model.latent.traversal(base, unit, steps) for unit in order])
    how = (
        "classes of each group"
        if model.latent.name == "categorical"
        else "-3 to +3 along each unit"
    )
    fig, ax = pyplot().subplots(figsize=(7, 0.8 * len(order) + 0.6))
    show(
        ax,
        _decode_mean(model, z),
        len(order),
        f"latent traversals, {how}; rows: units by KL, {order}",
    )
    return save(fig, path)


@torch.no_grad()
def latent_map(model, x: torch.Tensor, labels: torch.Tensor | None, path, steps: int = 15) -> Path:
    model.eval()
    plt = pyplot()
    if model.latent.z_size == 2:
        grid = torch.linspace(-2.5, 2.5, steps)
        z = torch.stack(torch.meshgrid(grid.flip(0), grid, indexing="ij")[::-1], -1).reshape(-1, 2)
        fig, ax = plt.subplots(figsize=(7, 7))
        show(ax, _decode_mean(model, z), steps, "the 2-D latent space, decoded over [-2.5, 2.5]^2")
        return save(fig, path)
    means = model.latent.posterior_mean(model.encode(x)).double()
    centred = means - means.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    proj = (centred @ v[:2].T).numpy()
    explained = (s[:2] ** 2 / (s**2).sum()).tolist()
    fig, ax = plt.subplots(figsize=(7, 6))
    sc = ax.scatter(
        proj[:, 0],
        proj[:, 1],
        c=None if labels is None else labels[: len(proj)].numpy(),
        cmap="tab10",
        s=8,
    )
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set(
        title="posterior means of test images, first two principal axes",
        xlabel=f"PC 1 ({explained[0]:.0%} of the variance)",
        ylabel=f"PC 2 ({explained[1]:.0%})",
    )
    return save(fig, path)


@torch.no_grad()
def kl_bars(
    kl_per_unit: torch.Tensor,
    activity: torch.Tensor,
    path,
    threshold: float = 0.01,
    criterion: str = "Cov_x E[z|x]",
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(kl_per_unit)), 3.5))
    active = (activity > threshold).tolist()
    colors = ["tab:blue" if a else "tab:gray" for a in active]
    ax.bar(range(len(kl_per_unit)), kl_per_unit.tolist(), color=colors)
    ax.set(
        title=f"KL per latent unit; {sum(active)} of {len(active)} active (blue: {criterion} > {threshold:g})",
        xlabel="latent unit",
        ylabel="E_x KL (nats)",
    )
    return save(fig, path)


def rate_distortion(points: list[dict], path) -> Path:
    """Distortion (reconstruction NLL) against rate (KL), one point per beta, with the lines
    of constant ELBO (rate + distortion = const) for reference."""
    plt = pyplot()
    pts = sorted(points, key=lambda p: p["rate"])
    rates = [p["rate"] for p in pts]
    dists = [p["distortion"] for p in pts]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(rates, dists, "o-", color="tab:blue")
    for p in pts:
        ax.annotate(
            f"beta = {p['beta']:g}",
            (p["rate"], p["distortion"]),
            textcoords="offset points",
            xytext=(6, 6),
        )
    lo, hi = min(rates), max(rates)
    span = max(hi - lo, 1.0)
    best = min(r + d for r, d in zip(rates, dists, strict=True))
    xs = [lo - 0.1 * span, hi + 0.1 * span]
    ax.plot(
        xs,
        [best - x for x in xs],
        "--",
        color="gray",
        label=f"rate + distortion = {best:.1f} (best -ELBO)",
    )
    ax.set(xlabel="rate: test KL(q(z|x) || p(z)) (nats)", ylabel="distortion: test -E_q log p(x|z) (nats)",
           title="rate-distortion curve of the beta sweep")  # fmt: skip
    ax.legend()
    return save(fig, path)
