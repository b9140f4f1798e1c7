"""Vectors (N, D) for models of vectors, with no download: drawn from a known model, or real.

    load_vectors("synthetic", dim=20, true_latent_dim=4, noise=0.5)   from a linear-Gaussian model
    load_vectors("digits", project=16)     scikit-learn's 8x8 digits, on 16 principal axes
    load_vectors("iris") / ("wine") / ("diabetes") / ("breast-cancer")  scikit-learn's bundled sets
    load_vectors("path/to/file.npz")       an array 'x' of shape (N, D)

Real data is centred by its training mean and scaled to unit mean variance per dimension
(statistics of the training split only); with ``project`` > 0 it is first projected onto the
training split's leading principal axes. Synthetic data is kept as drawn, so the model that drew
it -- ``VectorData.truth`` -- scores it exactly. Everything is float64 and seeded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data._order import batch_indices, split_order
from elbokit.data.readers import DataError, read_npz
from elbokit.seeding import mix

__all__ = ["VECTOR_SOURCES", "VectorData", "VectorDataConfig", "load_vectors"]


def _sklearn(name: str):
    def load():
        try:
            from sklearn import datasets
        except ImportError:
            raise DataError(f"{name} needs scikit-learn: pip install 'elbokit[data]'") from None
        fn = {"digits": datasets.load_digits, "iris": datasets.load_iris,
              "wine": datasets.load_wine, "diabetes": datasets.load_diabetes,
              "breast-cancer": datasets.load_breast_cancer}[name]  # fmt: skip
        d = fn()
        return np.asarray(d.data, np.float64), np.asarray(d.target)

    return load


VECTOR_SOURCES = {n: _sklearn(n) for n in ("digits", "iris", "wine", "diabetes", "breast-cancer")}


@dataclass
class VectorData:
    """Train and test vectors (N, D) float64; ``truth`` is the model that drew them, if known."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    truth: torch.nn.Module | None = None

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    def split(self, which: str) -> torch.Tensor:
        if which not in ("train", "test"):
            raise ValueError(f"split={which!r}; expected 'train' or 'test'")
        return self.train if which == "train" else self.test

    def num_batches(self, split: str, batch_size: int) -> int:
        return -(-len(self.split(split)) // batch_size)

    def batches(self, split, batch_size, *, seed, epoch=0, start=0, shuffle=True):
        """Batches of a split in an order fixed by (seed, epoch), from batch ``start`` on."""
        x = self.split(split)
        for _, idx in batch_indices(
            len(x), batch_size, seed=seed, epoch=epoch, start=start, shuffle=shuffle
        ):
            yield x[idx]


def _split(x: np.ndarray, test_fraction: float, seed: int, name: str):
    train, test = split_order(len(x), test_fraction, mix(seed, 0x5E7), name, min_train=2)
    return x[train], x[test]


def load_vectors(
    source: str | os.PathLike = "synthetic",
    *,
    dim: int = 20,
    true_latent_dim: int = 4,
    noise: float = 0.5,
    examples: int = 2000,
    project: int = 0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> VectorData:
    """Vectors by name or path, split and standardized (see the module docstring).

    Raises:
        DataError: an unknown name, an unreadable file, NaN or inf values, too few examples.
        ValueError: bad option values.
    """
    name = str(source)
    if name == "synthetic":
        from elbokit.models.linear_gaussian import LinearGaussian

        if not 1 <= true_latent_dim <= dim:
            raise ValueError(f"true_latent_dim = {true_latent_dim}: expected 1 ... dim = {dim}")
        g = torch.Generator().manual_seed(mix(seed, 0xDA7A))
        truth = LinearGaussian(dim, true_latent_dim, noise, generator=g)
        truth.requires_grad_(False)
        x = truth.sample(examples, generator=g).numpy()
        train, test = _split(x, test_fraction, seed, name)
        return VectorData(name, torch.from_numpy(train), torch.from_numpy(test), truth)
    if name in VECTOR_SOURCES:
        x, _ = VECTOR_SOURCES[name]()
    elif Path(name).suffix == ".npz" and Path(name).exists():
        x, _ = read_npz(Path(name), images=False)
    else:
        raise DataError(
            f"no vector source {name!r}: expected synthetic, {', '.join(VECTOR_SOURCES)}, or an "
            ".npz file with an array x of shape (N, D)"
        )
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{name}: x[{i}, {j}] is {x[i, j]}; expected finite numbers")
    train, test = _split(x, test_fraction, seed, name)
    mean = train.mean(0)
    train, test = train - mean, test - mean
    if project:
        if project > train.shape[1]:
            raise ValueError(f"project = {project}: {name} has only {train.shape[1]} dimensions")
        _, _, vt = np.linalg.svd(train, full_matrices=False)
        train, test = train @ vt[:project].T, test @ vt[:project].T
    scale = np.sqrt(train.var(0).mean())
    if not scale > 0:
        raise DataError(f"{name}: the training split has no variance")
    return VectorData(name, torch.from_numpy(train / scale), torch.from_numpy(test / scale))


@dataclass(frozen=True)
class VectorDataConfig(Section):
    source: str = opt(
        "synthetic",
        "synthetic (drawn from a known linear-Gaussian model), digits, iris, wine, diabetes, "
        "breast-cancer, or an .npz with an array x (N, D)",
        flag="data",
    )
    dim: int = opt(20, "synthetic: dimensions D of the data", ge=1)
    true_latent_dim: int = opt(4, "synthetic: latent dimensions of the model that draws it", ge=1)
    noise: float = opt(0.5, "synthetic: noise sigma of the model that draws it", gt=0)
    examples: int = opt(2000, "synthetic: examples drawn", ge=10)
    project: int = opt(0, "real data: keep this many principal axes (0: all)", ge=0)
    test_fraction: float = opt(0.2, "held out for testing", gt=0, lt=1)

    def validate(self):
        if self.source == "synthetic" and self.true_latent_dim > self.dim:
            raise ConfigError(
                f"true_latent_dim = {self.true_latent_dim}: expected at most dim = {self.dim}"
            )

    def load(self, seed: int) -> VectorData:
        return load_vectors(
            self.source, dim=self.dim, true_latent_dim=self.true_latent_dim, noise=self.noise,
            examples=self.examples, project=self.project, test_fraction=self.test_fraction,
            seed=seed,
        )  # fmt: skip
