"""Models trained or judged through an ELBO, one module each: the VAE, the linear-Gaussian model
(exact ground truth), the DreamerV2-style world model and the Dreamer actor-critic, diffusion,
the conjugate models and mixtures, Bayesian layers and networks, SAC and the skill models, and
the environments the agents act in. The VAE and the linear-Gaussian model offer the
``LatentVariableModel`` interface (encode, decode, the prior) that the generic ELBO and the
importance-sampled log-likelihood take; the others have interfaces of their own.
"""

from elbokit.models.base import LatentVariableModel
from elbokit.models.linear_gaussian import LinearGaussian

__all__ = ["LatentVariableModel", "LinearGaussian"]
