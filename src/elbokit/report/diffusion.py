"""The pictures of a diffusion model (the diffusion kind), each a PNG.

samples        a grid of samples x_0 (images in [0, 1])
chain          the denoising chain, x_T on the left to x_0 on the right, one sample per row
decomposition  the bound by timestep: the mean L_(t-1) over t on a log scale, L_T and L_0 named
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from elbokit.report._draw import save, show
from elbokit.report._mpl import pyplot

CURVES = (("mse", "epsilon MSE (per element)"), ("bound", "bound, one-sample estimate (bits/dim)"))


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
    ax.scatter([1], [curve[0]], color="C3", zorder=3, label=f"L_0 = {curve[0]:.1f} nats")
    ax.axhline(result["L_T"], color="C2", ls=":", label=f"L_T = {result['L_T']:.2g} nats")
    ax.set(xscale="log", yscale="log", xlabel="timestep t", ylabel="nats per image",
           title=f"the bound by t: {result['bits_per_dim']:.3f} bits/dim in all")  # fmt: skip
    ax.legend()
    return save(fig, path)
