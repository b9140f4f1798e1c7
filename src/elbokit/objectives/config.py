"""The objective of a latent-variable model chosen by name from config, and its settings.

ObjectiveConfig(name="elbo", beta=4.0, kl_schedule="linear", kl_warmup=1000).build(total)
make_objective("iwae", k=50)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from elbokit.config import ConfigError, Section, opt
from elbokit.objectives.base import Objective
from elbokit.objectives.elbo import ELBO
from elbokit.objectives.iwae import IWAE
from elbokit.objectives.schedules import KLSchedule
from elbokit.registry import build

__all__ = ["OBJECTIVES", "ObjectiveConfig", "make_objective"]

OBJECTIVES = {"elbo": ELBO, "iwae": IWAE}


def make_objective(name: str, **options) -> Objective:
    """The objective registered under ``name``; raises ValueError for unknown names/options."""
    return build(OBJECTIVES, "objective", name, options)


@dataclass(frozen=True)
class ObjectiveConfig(Section):
    name: str = opt("elbo", "training objective", choices=OBJECTIVES, flag="objective")
    beta: float = opt(1.0, "weight of the KL term (beta-VAE)", ge=0)
    kl_schedule: Literal["constant", "linear", "cyclical"] = opt(
        "constant", "KL weight over training"
    )
    kl_warmup: int = opt(1000, "steps of linear KL warm-up", ge=1)
    kl_cycles: int = opt(4, "cycles of the cyclical schedule", ge=1)
    free_bits: float = opt(0.0, "free bits in nats (0: off)", ge=0)
    free_bits_mode: Literal["per_dim", "mean", "per_layer"] = opt(
        "per_dim", "clamp each unit's KL, the total, or each stochastic layer's total"
    )
    iwae_k: int = opt(5, "importance samples for --objective iwae", ge=1)

    def validate(self):
        rule = _NOT_FOR.get(self.name)
        defaults = type(self).__dataclass_fields__
        if rule and any(getattr(self, f) != defaults[f].default for f in rule[0]):
            raise ConfigError(rule[1])

    def build(self, total_steps: int) -> Objective:
        """The objective; ``total_steps`` of training sets the cyclical schedule's period."""
        return make_objective(self.name, **_OPTIONS[self.name](self, total_steps))


def _elbo_options(c: ObjectiveConfig, total_steps: int) -> dict:
    schedule = {
        "constant": lambda: KLSchedule(),
        "linear": lambda: KLSchedule("linear", warmup=c.kl_warmup),
        "cyclical": lambda: KLSchedule("cyclical", total=total_steps, cycles=c.kl_cycles),
    }[c.kl_schedule]()
    return {"beta": c.beta, "schedule": schedule, "free_bits": c.free_bits,
            "free_bits_mode": c.free_bits_mode}  # fmt: skip


# what each registered objective takes from the config (beside OBJECTIVES, by the same names)
_OPTIONS = {"elbo": _elbo_options, "iwae": lambda c, total_steps: {"k": c.iwae_k}}
# settings that must stay at their defaults for an objective, and why
_NOT_FOR = {
    "iwae": (("beta", "free_bits", "kl_schedule"),
             "objective iwae is the importance-weighted bound: beta, free bits and KL "
             "schedules do not apply to it (they are ELBO settings)"),
}  # fmt: skip
