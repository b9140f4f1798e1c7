"""KL weight schedules: the factor in front of the KL term as a function of the training step.

- ``constant``: 1.
- ``linear``: 0 -> 1 over ``warmup`` steps, then 1 (KL annealing, Bowman et al. 2016).
- ``cyclical``: ``cycles`` repetitions over ``total`` steps, each rising linearly from 0 to 1
  over the first ``ratio`` of the cycle and then held at 1 (Fu et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KLSchedule:
    kind: str = "constant"
    warmup: int = 0
    total: int = 0
    cycles: int = 4
    ratio: float = 0.5

    def __post_init__(self):
        if self.kind not in ("constant", "linear", "cyclical"):
            raise ValueError(f"KL schedule {self.kind!r}; expected constant, linear or cyclical")
        if self.kind == "linear" and self.warmup < 1:
            raise ValueError(f"a linear KL schedule needs warmup >= 1 steps, got {self.warmup}")
        if self.kind == "cyclical":
            if self.total < self.cycles or self.cycles < 1:
                raise ValueError(
                    f"a cyclical KL schedule needs total >= cycles >= 1, got total={self.total}, "
                    f"cycles={self.cycles}"
                )
            if not 0 < self.ratio <= 1:
                raise ValueError(f"cyclical ratio must be in (0, 1], got {self.ratio}")

    def __call__(self, step: int) -> float:
        if self.kind == "linear":
            return min(1.0, step / self.warmup)
        if self.kind == "cyclical":
            period = self.total / self.cycles
            phase = (step % period) / period
            return min(1.0, phase / self.ratio)
        return 1.0
