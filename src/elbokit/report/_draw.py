"""Drawing helpers shared by every kind's figures: atomic PNG writes, panel grids, image grids."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from elbokit.files import atomic_path
from elbokit.report._mpl import pyplot


def panels(n: int, *, width: float = 4.7, height: float = 3.8, per_row: int = 3):
    """A figure of ``n`` panels, at most ``per_row`` a row (so a figure shown at page width keeps
    legible fonts), the grid's unused cells hidden: (fig, the n axes in order)."""
    cols = min(per_row, n)
    rows = -(-n // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def save(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as a PNG (atomically) and close it."""
    out = Path(path)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return out


def grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (H', W', C) image of `rows` rows with 1-pixel gaps."""
    n, c, h, w = images.shape
    cols = math.ceil(n / rows)
    canvas = torch.ones(c, rows * (h + 1) + 1, cols * (w + 1) + 1)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = (
            images[i]
        )
    return canvas.permute(1, 2, 0).clamp(0, 1)


def show(ax, images: torch.Tensor, rows: int, title: str) -> None:
    g = grid(images, rows).numpy()
    ax.imshow(
        g[..., 0] if g.shape[-1] == 1 else g,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_title(title)
    ax.axis("off")
