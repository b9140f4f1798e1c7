"""One episode per file: the compressed ``.npz`` that ``elbokit collect`` writes and the episode
data reads, checked on the way in and out (``image`` uint8 (T, C, H, W), ``action`` (T, A),
``reward`` and ``discount`` (T,), finite, discount in [0, 1])."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from elbokit.data.readers import DataError
from elbokit.files import atomic_path

__all__ = ["KEYS", "check_episode", "read_episode", "save_episode"]

KEYS = ("image", "action", "reward", "discount")


def save_episode(path: str | os.PathLike, episode: dict[str, np.ndarray]) -> Path:
    """Write one episode atomically (compressed npz, renamed into place)."""
    check_episode(episode, str(path))
    out = Path(path)
    with atomic_path(out, suffix=".npz") as tmp:  # np.savez adds .npz to any other name
        np.savez_compressed(tmp, **{k: episode[k] for k in KEYS})
    return out


def check_episode(ep: dict[str, np.ndarray], where: str) -> None:
    """Raise DataError naming ``where`` and the problem unless ``ep`` is a valid episode."""
    missing = [k for k in KEYS if k not in ep]
    if missing:
        raise DataError(
            f"{where}: missing {', '.join(missing)}; an episode needs {', '.join(KEYS)}"
        )
    image, action, reward, discount = (ep[k] for k in KEYS)
    if image.dtype != np.uint8 or image.ndim != 4:
        raise DataError(
            f"{where}: image is {image.dtype} of shape {image.shape}; expected uint8 (T, C, H, W)"
        )
    t = len(image)
    if t < 2:
        raise DataError(f"{where}: {t} step(s); an episode needs at least 2")
    for name, arr, ndim in (
        ("action", action, 2),
        ("reward", reward, 1),
        ("discount", discount, 1),
    ):
        if arr.ndim != ndim or len(arr) != t:
            want = "(T, A)" if ndim == 2 else "(T,)"
            raise DataError(
                f"{where}: {name} has shape {arr.shape}; expected {want} with T = {t} like image"
            )
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{where}: {name} has dtype {arr.dtype}; expected numbers")
        bad = ~np.isfinite(arr.astype(np.float64))
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            at = ", ".join(map(str, i))
            raise DataError(f"{where}: {name}[{at}] is {arr[i]}; expected a finite number")
    if ((discount < 0) | (discount > 1)).any():
        i = int(np.argmax((discount < 0) | (discount > 1)))
        raise DataError(f"{where}: discount[{i}] is {discount[i]}; expected a value in [0, 1]")


def read_episode(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            ep = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable episode file ({e})") from None
    check_episode(ep, str(path))
    return ep
