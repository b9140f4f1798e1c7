"""Models trained or judged through an ELBO: all offer the ``LatentVariableModel`` interface."""

from elbokit.models.base import LatentVariableModel
from elbokit.models.linear_gaussian import LinearGaussian

__all__ = ["LatentVariableModel", "LinearGaussian"]
