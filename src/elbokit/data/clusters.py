"""Clustered points drawn from a known Gaussian mixture, for checking mixture models.

    x, labels = four_gaussians(1000, seed=0)    four 2-D clusters at (+-4, +-4), unit variance
    load_points("iris" | "digits-pca" | "four-gaussians" | "file.csv" | "file.npz")

Everything is float64 and seeded through its own ``torch.Generator`` (no global RNG state).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elbokit.data.readers import DataError

__all__ = ["FOUR_GAUSSIANS_PROPORTIONS", "POINT_SOURCES", "Points", "four_gaussians", "load_points"]

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


# ----------------------------------------------------------------------------------------------
# points to cluster, by name or path

POINT_SOURCES = ("four-gaussians", "iris", "digits-pca")


@dataclass
class Points:
    """Points (n, D) float64 to cluster, with their true labels (n,) where known."""

    name: str
    x: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.x.shape[1]


def load_points(
    source: str | os.PathLike = "four-gaussians",
    *,
    examples: int = 1000,
    project: int = 4,
    seed: int = 0,
) -> Points:
    """Points by name or path, as they are (no scaling):

        four-gaussians   ``four_gaussians(examples, seed=seed)`` with its labels
        iris             scikit-learn's 150 flowers, 4 measurements, 3 species
        digits-pca       scikit-learn's 1,797 8x8 digits on their ``project`` leading principal
                         axes (centred), 10 classes
        FILE.csv         numeric columns, one row per point, an optional header; a column named
                         label, labels, y or class holds labels
        FILE.npz         an array x (n, D), optionally y (n,) labels

    Raises:
        DataError: an unknown source, an unreadable file, a value that is not a finite number
            (naming its row and column), a single point, fewer points than dimensions.
    """
    name = str(source)
    labels = None
    if name == "four-gaussians":
        x, labels = four_gaussians(examples, seed=seed)
    elif name in ("iris", "digits-pca"):
        try:
            from sklearn import datasets
        except ImportError:
            raise DataError(f"{name} needs scikit-learn: pip install 'elbokit[data]'") from None
        d = datasets.load_iris() if name == "iris" else datasets.load_digits()
        x, labels = np.asarray(d.data, np.float64), np.asarray(d.target, np.int64)
        if name == "digits-pca":
            if not 1 <= project <= x.shape[1]:
                raise DataError(f"project = {project}: expected 1 ... {x.shape[1]} axes")
            x = x - x.mean(0)
            x = x @ np.linalg.svd(x, full_matrices=False)[2][:project].T
    elif Path(name).suffix.lower() == ".csv" and Path(name).exists():
        x, labels = _read_csv(Path(name))
    elif Path(name).suffix.lower() == ".npz" and Path(name).exists():
        x, labels = _read_points_npz(Path(name))
    else:
        raise DataError(
            f"no points {name!r}: expected {', '.join(POINT_SOURCES)}, or an existing .csv or .npz "
            "file"
        )
    x = torch.as_tensor(np.asarray(x, np.float64))
    if x.dim() != 2:
        raise DataError(f"{name}: x has shape {tuple(x.shape)}; expected (points, dimensions)")
    bad = ~torch.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise DataError(
            f"{name}: row {i}, column {j} is {float(x[i, j])}; expected a finite number"
        )
    n, d = x.shape
    if n < 2:
        raise DataError(f"{name}: {n} point; a mixture needs at least 2")
    if n <= d:
        raise DataError(
            f"{name}: {n} points in {d} dimensions; expected more points than dimensions"
        )
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels)).long()
        if labels.shape != (n,):
            raise DataError(f"{name}: {tuple(labels.shape)} labels for {n} points; expected ({n},)")
    return Points(name, x, labels)


LABEL_COLUMNS = ("label", "labels", "y", "class")


def _read_csv(path: Path):
    import csv

    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{path}: a header ({', '.join(header)}) and no rows of points")
    label_col = None
    if header is not None:
        label_col = next((j for j, c in enumerate(header) if c.lower() in LABEL_COLUMNS), None)
    width = len(header) if header else len(rows[0]) if rows else 0
    x, labels = [], []
    for i, row in enumerate(rows):
        line = i + (2 if header else 1)
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} columns; expected {width}")
        values = []
        for j, cell in enumerate(row):
            col = header[j] if header else str(j)
            if j == label_col:
                labels.append(cell.strip())
                continue
            try:
                v = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: line {line}, column {col!r} is {cell!r}; expected a number"
                ) from None
            if not np.isfinite(v):  # named where a person finds it, not by array index
                raise DataError(
                    f"{path}: line {line}, column {col!r} is {cell.strip()!r}; expected a finite "
                    "number"
                )
            values.append(v)
        x.append(values)
    if label_col is None:
        return np.asarray(x, np.float64).reshape(len(x), -1), None
    names = sorted(set(labels))
    return np.asarray(x, np.float64).reshape(len(x), -1), np.array([names.index(v) for v in labels])


def _read_points_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz ({err})") from None
    if "x" not in arrays:
        raise DataError(
            f"{path}: holds arrays {sorted(arrays)}; expected x (n, D) and optionally y"
        )
    x, y = arrays["x"], arrays.get("y")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: x is {x.dtype}; expected numbers")
    return x, y
