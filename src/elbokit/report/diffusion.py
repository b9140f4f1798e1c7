"""The pictures of a diffusion model (the diffusion kind), each a PNG.

samples        a grid of samples x_0 (images in [0, 1])
chain          the denoising chain, x_T on the left to x_0 on the right, one sample per row
decomposition  the bound by timestep: the mean L_(t-1) over t on a log scale, L_T and L_0 named
points         2-D samples beside the test points (the 2-D toys)
point_chain    2-D samples at a few steps of the chain, x_T on the left to x_0 on the right
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from elbokit.report._draw import save, show
from elbokit.report._mpl import pyplot

CURVES = (
    ("mse", "epsilon MSE (per element)"),
    ("bound", "bound, one-sample estimate (bits/dim; 2-D points: nats/point)"),
)


def samples(x: torch.Tensor, path) -> Path:
    fig, ax = pyplot().subplots(figsize=(6, 6))
    show(ax, x.clamp(0, 1), math.ceil(math.sqrt(len(x))), "samples x_0 (ancestral, all T steps)")
    return save(fig, path)


def chain(frames: torch.Tensor, path) -> Path:
    """frames (K, N, C, H, W) from x_T to x_0: N rows of K images."""
    k, n = frames.shape[:2]
    grid = frames.transpose(0, 1).reshape(k * n, *frames.shape[2:]).clamp(0, 1)
    fig, ax = pyplot().subplots(figsize=(1.0 * k, 1.0 * n))
    show(ax, grid, n, "x_T (left) to x_0 (right)")
    return save(fig, path)


def decomposition(result: dict, path) -> Path:
    curve = result["L_t_curve"]  # index 0: L_0 (t = 1); index t - 1: L_(t-1)
    steps = len(curve)
    fig, ax = pyplot().subplots(figsize=(7, 4))
    ax.plot(range(2, steps + 1), curve[1:], lw=1, label="L_(t-1), t = 2..T")
    label = f"L_0 = {curve[0]:.4g} nats"
    if curve[0] > 0:
        ax.scatter([1], [curve[0]], color="C3", zorder=3, label=label)
    else:  # a density's L_0 (continuous data) can be negative: named, not drawn on a log axis
        ax.plot([], [], " ", label=label + " (not drawn: <= 0)")
    if result["L_T"] > 0:
        ax.axhline(result["L_T"], color="C2", ls=":", label=f"L_T = {result['L_T']:.2g} nats")
    key, unit = result.get("headline", "bits_per_dim"), result.get("unit", "bits/dim")
    what = "point" if unit == "nats/point" else "image"
    ax.set(xscale="log", yscale="log", xlabel="timestep t", ylabel=f"nats per {what}",
           title=f"the bound by t: {result[key]:.3f} {unit} in all")  # fmt: skip
    ax.legend()
    return save(fig, path)


def points(data: torch.Tensor, x: torch.Tensor, path) -> Path:
    """2-D test points (left) and samples (right) on the same axes."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    lim = float(data.abs().max()) * 1.15
    for ax, pts, title in ((axes[0], data, f"{len(data)} test points"),
                           (axes[1], x, f"{len(x)} samples x_0")):  # fmt: skip
        pts = pts.float().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    return save(fig, path)


def point_chain(frames: torch.Tensor, times, path) -> Path:
    """frames (K, N, 2) from x_T to x_0 as ``Diffusion.sample(times=times)`` gives them (x_t at
    each t of ``times``, largest first, then x_0): K panels of the N samples."""
    k = len(frames)
    fig, axes = pyplot().subplots(1, k, figsize=(2.6 * k, 2.8), sharex=True, sharey=True)
    ts = [*sorted(times, reverse=True), 0]
    for i, ax in enumerate(axes):
        pts = frames[i].float().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", xticks=[], yticks=[])
        ax.set_title(f"x_{ts[i]}")
    return save(fig, path)
