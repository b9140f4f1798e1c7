"""ELBO-family objectives. Each takes (model, x, step) and returns the loss and named terms.

    ELBO(beta=1.0, schedule=KLSchedule("linear", warmup=1000), free_bits=0.5)
    IWAE(k=5)

Chosen by name from config with ``make_objective("elbo", ...)``.
"""

from elbokit.objectives.base import Objective, ObjectiveOutput
from elbokit.objectives.elbo import ELBO
from elbokit.objectives.iwae import IWAE, log_weights
from elbokit.objectives.schedules import KLSchedule

OBJECTIVES = {"elbo": ELBO, "iwae": IWAE}


def make_objective(name: str, **options) -> Objective:
    """The objective registered under ``name``; raises ValueError for unknown names/options."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](**options)
    except TypeError as e:
        raise ValueError(f"objective {name!r}: {e}") from None


__all__ = [
    "ELBO",
    "IWAE",
    "OBJECTIVES",
    "KLSchedule",
    "Objective",
    "ObjectiveOutput",
    "log_weights",
    "make_objective",
]
