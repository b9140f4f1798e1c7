"""elbokit: KL divergences and evidence lower bounds on PyTorch.

    log p(x) = ELBO(q) + KL(q(z|x) || p(z|x))

The library part (``elbokit.divergence``) is usable from any training loop; its public names are
re-exported here.
"""

from elbokit._version import __version__
from elbokit.divergence import *  # noqa: F403
from elbokit.divergence import __all__ as _divergence_all

__all__ = [*_divergence_all, "__version__"]
