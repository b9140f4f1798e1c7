"""The order of a split's batches, shared by image, episode and vector data, and the seeded
train/test split of a source that has none."""

from __future__ import annotations

import torch

from elbokit.seeding import mix


def batch_indices(
    n: int, batch_size: int, *, seed: int, epoch: int, start: int = 0, shuffle: bool = True
):
    """(b, indices) of batches b = start, start + 1, ... of n items, in an order fixed by
    (seed, epoch): a run resumed at batch ``start`` sees exactly the rest of the epoch."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected >= 1")
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(mix(seed, epoch)))
        if shuffle
        else torch.arange(n)
    )
    for b in range(start, -(-n // batch_size)):
        yield b, order[b * batch_size : (b + 1) * batch_size]


def split_order(
    n: int, test_fraction: float, seed: int, name: str, what: str = "examples", min_train: int = 1
):
    """(train indices, test indices) of a fixed, seeded split of n items: a randperm seeded by
    ``seed``, its first round(n * test_fraction) (at least 1) for testing.

    Raises:
        ValueError: test_fraction outside (0, 1). DataError: fewer than ``min_train`` left.
    """
    from elbokit.data.readers import DataError

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction}; expected a value in (0, 1)")
    n_test = max(1, round(n * test_fraction))
    if n - n_test < min_train:
        raise DataError(f"{name}: {n} {what} are too few to hold out {n_test} for testing")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return order[n_test:], order[:n_test]
