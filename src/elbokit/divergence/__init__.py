"""KL divergences: closed forms that extend torch.distributions, Monte Carlo with a standard
error, quadrature as a reference, discrete arrays, and the textbook properties.

    kl(p, q)                      closed form, or an error that names the ways out
    estimate_kl(p, q, method=)    closed form / Monte Carlo / quadrature, saying which
    vae_kl(mu, logvar)            KL(N(mu, diag(exp(logvar))) || N(0, I)), the VAE hot path
    normal_kl, categorical_kl, bernoulli_kl    the same closed forms on raw tensors
    kl_discrete(p, q)             probability arrays, like scipy.stats.entropy(p, q)
    kl_quadrature(p, q)           univariate reference by scipy.integrate.quad
    check_kl_properties(p, q, r)  non-negativity, zero iff equal, asymmetry, triangle
    reverse_mi_bound, reverse_mi_reward, forward_mi_reward    skill MI bounds (DIAYN, DADS)

No nn.Module and no training here: usable from any training loop.
"""

# Importing the closed-form modules registers their pairs.
from elbokit.divergence import categorical as _categorical
from elbokit.divergence import gaussian as _gaussian
from elbokit.divergence import scale_families as _scale_families
from elbokit.divergence._registry import NoClosedFormError, has_closed_form, kl, register_kl
from elbokit.divergence.categorical import bernoulli_kl, categorical_kl
from elbokit.divergence.discrete import kl_discrete
from elbokit.divergence.estimate import KL_METHODS, KLEstimate, estimate_kl, kl_monte_carlo
from elbokit.divergence.gaussian import normal_kl, vae_kl
from elbokit.divergence.mutual_info import forward_mi_reward, reverse_mi_bound, reverse_mi_reward
from elbokit.divergence.properties import (
    KLProperties,
    TriangleCheck,
    asymmetry_example,
    check_kl_properties,
    triangle_counterexample,
)
from elbokit.divergence.quadrature import kl_quadrature

del _categorical, _gaussian, _scale_families

__all__ = [
    "KL_METHODS",
    "KLEstimate",
    "KLProperties",
    "NoClosedFormError",
    "TriangleCheck",
    "asymmetry_example",
    "bernoulli_kl",
    "categorical_kl",
    "check_kl_properties",
    "estimate_kl",
    "forward_mi_reward",
    "has_closed_form",
    "kl",
    "kl_discrete",
    "kl_monte_carlo",
    "kl_quadrature",
    "normal_kl",
    "register_kl",
    "reverse_mi_bound",
    "reverse_mi_reward",
    "triangle_counterexample",
    "vae_kl",
]
