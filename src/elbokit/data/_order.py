"""The order of a split's batches, shared by image and episode data."""

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
