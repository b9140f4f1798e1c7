"""Seeds derived from several integers, for independent reproducible streams.

``mix(seed, epoch, batch)`` gives the seed of one batch's stream: a run resumed in the middle of
an epoch recreates exactly the streams an uninterrupted run would use, without storing RNG state.
``seeded(seed)`` runs a block (an evaluation's rollouts) from its own seed and leaves torch's
generator as it found it, so judging a learner never changes what its training draws next.
"""

from __future__ import annotations

import contextlib

_MASK = 0xFFFFFFFFFFFFFFFF


def mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (splitmix64-style steps; negative numbers allowed)."""
    h = 0x9E3779B97F4A7C15
    for v in numbers:
        h = ((h ^ (v & _MASK)) * 0xBF58476D1CE4E5B9) & _MASK
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def seeded(seed: int):
    """The block draws from torch's generators seeded with ``seed``; the CPU generator's state
    from before is restored afterwards."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
