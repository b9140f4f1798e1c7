"""Judging a trained model honestly: a likelihood, not just a loss, and collapse diagnostics.

    importance_log_likelihood(model, x, k=1000)   log p(x) with its Monte Carlo standard error
    diagnose(model, x)                            KL per unit, active units, I_q(x; z)

Both work for any model with an encoder q(z|x), a prior p(z) and a likelihood p(x|z), and are
tested against the linear-Gaussian model, whose answers are exact.
"""

from elbokit.evaluate.diagnostics import Diagnostics, diagnose
from elbokit.evaluate.likelihood import LogLikelihood, importance_log_likelihood

__all__ = ["Diagnostics", "LogLikelihood", "diagnose", "importance_log_likelihood"]
