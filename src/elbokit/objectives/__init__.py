"""ELBO-family objectives. Each takes (model, x, step) and returns the loss and named terms.

    ELBO(beta=1.0, schedule=KLSchedule("linear", warmup=1000), free_bits=0.5)
    IWAE(k=5)
    WorldModelObjective(WorldModelLoss(kl=KLBalance(alpha=0.8, free_nats=1.0)))

Chosen by name from config with ``make_objective("elbo", ...)`` or ``ObjectiveConfig(...).build``.
"""

from elbokit.objectives.balance import KLBalance
from elbokit.objectives.base import Objective, ObjectiveOutput
from elbokit.objectives.config import OBJECTIVES, ObjectiveConfig, make_objective
from elbokit.objectives.elbo import ELBO
from elbokit.objectives.iwae import IWAE, log_weights
from elbokit.objectives.schedules import KLSchedule
from elbokit.objectives.world_model import (
    WorldModelLoss,
    WorldModelObjective,
    WorldModelObjectiveConfig,
)

__all__ = [
    "ELBO",
    "IWAE",
    "OBJECTIVES",
    "KLBalance",
    "KLSchedule",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveOutput",
    "WorldModelLoss",
    "WorldModelObjective",
    "WorldModelObjectiveConfig",
    "log_weights",
    "make_objective",
]
