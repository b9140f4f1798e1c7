"""The UCI regression benchmark's folder layout (Hernández-Lobato & Adams 2015), as its users
keep it on disk: any folder holding

    data.txt                       whitespace-separated rows: features and target
    index_features.txt             0-based column indices of the features, one per line
    index_target.txt               the target's column index
    index_train_K.txt, index_test_K.txt    row indices of split K, one per line
    n_splits.txt                   how many splits there are
    (n_hidden.txt, n_epochs.txt, dropout_rates.txt, tau_values.txt: the reference code's settings)

``read_uci(folder, split)`` returns split K's raw rows; every fault (a missing file or split, a
cell that is not a number, NaN, an index out of range, a row in both halves) is named by file and
line before anything trains. Nothing here knows the data sets by name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from elbokit.data.readers import DataError

__all__ = ["is_uci_folder", "read_uci", "uci_settings"]

_REQUIRED = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt")


def is_uci_folder(path) -> bool:
    """Whether ``path`` is a folder of this layout (it has data.txt and index_target.txt)."""
    p = Path(path)
    return p.is_dir() and (p / "data.txt").exists() and (p / "index_target.txt").exists()


def _numbers(path: Path, integer: bool = False) -> list:
    """The numbers of a file, one per line (blank lines skipped), each fault named by line."""
    if not path.exists():
        raise DataError(f"{path}: missing; a UCI-layout folder needs {', '.join(_REQUIRED)} and "
                        "index_train_K.txt / index_test_K.txt per split")  # fmt: skip
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path}, line {n}: {text!r} is not a number") from None
        if integer and (not math.isfinite(value) or value != int(value) or value < 0):
            raise DataError(f"{path}, line {n}: {text!r}; expected a row or column index >= 0")
        out.append(int(value) if integer else value)
    return out


def _table(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: missing")
    rows, width = [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        cells = line.split()
        if not cells:
            continue
        try:
            row = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise DataError(f"{path}, line {n}: {bad!r} is not a number") from None
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise DataError(f"{path}, line {n}: {len(row)} columns; the first row has {width}")
        if not all(math.isfinite(v) for v in row):
            col = next(i for i, v in enumerate(row) if not math.isfinite(v))
            raise DataError(
                f"{path}, line {n}, column {col}: {cells[col]}; expected finite numbers"
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return np.asarray(rows, np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def uci_settings(folder) -> dict:
    """The reference settings a folder carries (n_splits, and n_hidden, n_epochs, dropout_rates,
    tau_values where present)."""
    p = Path(folder)
    out = {"n_splits": _numbers(p / "n_splits.txt", integer=True)[0]}
    for name, integer in (("n_hidden", True), ("n_epochs", True), ("dropout_rates", False),
                          ("tau_values", False)):  # fmt: skip
        if (p / f"{name}.txt").exists():
            values = _numbers(p / f"{name}.txt", integer=integer)
            out[name] = values[0] if name in ("n_hidden", "n_epochs") else values
    return out


def read_uci(folder, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``split``'s raw (unstandardized) x_train, y_train, x_test, y_test, float64.

    Raises:
        DataError: a missing file or split, a bad cell or index (file and line named), NaN or inf,
            a row in both the training and the test half.
    """
    p = Path(folder)
    splits = uci_settings(p)["n_splits"]
    if not 0 <= split < splits:
        raise DataError(f"--split {split}: {p} has splits 0..{splits - 1} (n_splits.txt)")
    data = _table(p / "data.txt")
    rows, cols = data.shape
    features = _numbers(p / "index_features.txt", integer=True)
    target = _numbers(p / "index_target.txt", integer=True)
    for name, idx in (("index_features.txt", features), ("index_target.txt", target)):
        if not idx:
            raise DataError(f"{p / name}: no column indices")
        bad = [i for i in idx if i >= cols]
        if bad:
            raise DataError(
                f"{p / name}: column {bad[0]} is out of range; data.txt has {cols} columns"
            )
    if len(target) != 1 or target[0] in features:
        raise DataError(
            f"{p / 'index_target.txt'}: expected one column that is not a feature, got {target}"
        )
    halves = []
    for half in ("train", "test"):
        path = p / f"index_{half}_{split}.txt"
        idx = _numbers(path, integer=True)
        if not idx:
            raise DataError(f"{path}: no rows")
        bad = next((n for n, i in enumerate(idx, 1) if i >= rows), None)
        if bad is not None:
            raise DataError(
                f"{path}, line {bad}: row {idx[bad - 1]} is out of range; data.txt has {rows} rows"
            )
        halves.append(np.asarray(idx))
    both = np.intersect1d(*halves)
    if len(both):
        raise DataError(
            f"{p}: row {both[0]} is in both index_train_{split}.txt and index_test_{split}.txt"
        )
    train, test = halves
    x, y = data[:, features], data[:, target[0]]
    return x[train], y[train], x[test], y[test]
