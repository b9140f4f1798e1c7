"""A stream counted in steps, for learners that make their own data (an environment they step).

The trainer loops over data in epochs of batches; a stream's "batches" are step numbers, in
blocks of ``steps_per_epoch`` (an "epoch" of a stream is a block of steps between evaluations),
so the same loop, logging, checkpoints and exact resume serve both. The learner owns the
environment and its random state (saved with its checkpoint), the stream only counts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepStream"]


@dataclass(frozen=True)
class StepStream:
    steps_per_epoch: int
    name: str = "stream"

    def __post_init__(self):
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch = {self.steps_per_epoch}: expected >= 1")

    def num_batches(self, split: str, batch_size: int) -> int:
        return self.steps_per_epoch

    def batches(self, split, batch_size, *, seed, epoch=0, start=0, shuffle=True):
        """Step numbers epoch * steps_per_epoch + b for b = start, ... (the batch size is the
        learner's business: it draws its own minibatches)."""
        for b in range(start, self.steps_per_epoch):
            yield epoch * self.steps_per_epoch + b
