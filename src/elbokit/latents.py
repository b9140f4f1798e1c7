"""Latent families q(z | x) and their priors p(z): how z is sampled and how gradients pass.

A latent works on the encoder's raw output ``params`` of shape (B, param_size) and gives:

- ``rsample(params, k)``: z of shape (B, z_size), or (k, B, z_size), with gradients to params;
- ``kl_units(params)``: the analytic KL(q(z|x) || p(z)) per unit, (B, units): per dimension for
  a Gaussian, per group for a factorized categorical. Free bits and collapse diagnostics use it;
- ``kl(params)``: its sum, (B,), by the fastest exact route;
- ``log_q(params, z)`` and ``log_prior(z)``: densities for sampled KL and importance weights;
- ``sample_prior(n)`` and ``posterior_mean(params)``.

Families are chosen by name from config (``make_latent("gaussian", dim=32)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from elbokit.divergence import categorical_kl, vae_kl
from elbokit.divergence.categorical import log_softmax
from elbokit.registry import build

__all__ = ["LATENTS", "CategoricalLatent", "GaussianLatent", "Latent", "make_latent"]

_LOG_2PI = math.log(2.0 * math.pi)


class Latent:
    name: str = ""
    param_size: int
    z_size: int
    units: int

    def rsample(self, params: torch.Tensor, k: int | None = None, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def kl_units(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, params: torch.Tensor) -> torch.Tensor:
        return self.kl_units(params).sum(-1)

    def log_q(self, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_prior(self, n: int, generator=None, dtype=torch.float32) -> torch.Tensor:
        raise NotImplementedError

    def posterior_mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distribution(self, params: torch.Tensor) -> torch.distributions.Distribution:
        """q(z | x) as a torch Distribution over z (batch shape (B,), event shape (z_size,) or
        (groups, classes)), for users of the encoder: ``sample``, ``log_prob``, ``entropy``."""
        raise NotImplementedError

    def unit_activity(self, params: torch.Tensor) -> torch.Tensor:
        """How much each unit's posterior moves with x: the variance over the N examples of
        E_q[z_u | x], summed over a unit's coordinates (N, param_size) -> (units,). A unit above
        0.01 is active (Burda et al. 2016)."""
        means = self.posterior_mean(params).double()
        return means.var(0, correction=1).reshape(self.units, -1).sum(-1)

    def traversal(self, base: torch.Tensor, unit: int, steps: int) -> torch.Tensor:
        """`steps` latent codes equal to `base` (z_size,) except along one unit: (steps, z_size)."""
        raise NotImplementedError

    def check_params(self, params: torch.Tensor) -> None:
        if params.shape[-1] != self.param_size:
            raise ValueError(
                f"{self.name} latent: encoder output has {params.shape[-1]} features "
                f"(shape {tuple(params.shape)}), expected {self.param_size}"
            )


@dataclass(frozen=True)
class GaussianLatent(Latent):
    """q(z | x) = N(mu, diag(exp(logvar))), p(z) = N(0, I); params = [mu, logvar] (B, 2 dim).

    Reparameterized: z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014).
    The analytic KL is ``elbokit.divergence.vae_kl``.
    """

    dim: int = 32
    name = "gaussian"

    def __post_init__(self):
        if self.dim < 1:
            raise ValueError(f"gaussian latent needs dim >= 1, got {self.dim}")

    @property
    def param_size(self) -> int:
        return 2 * self.dim

    @property
    def z_size(self) -> int:
        return self.dim

    @property
    def units(self) -> int:
        return self.dim

    def split(self, params):
        self.check_params(params)
        return params[..., : self.dim], params[..., self.dim :]

    def rsample(self, params, k=None, generator=None):
        mu, logvar = self.split(params)
        shape = mu.shape if k is None else (k, *mu.shape)
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def kl_units(self, params):
        return vae_kl(*self.split(params), per_dim=True)

    def kl(self, params):
        return vae_kl(*self.split(params))

    def log_q(self, params, z):
        mu, logvar = self.split(params)
        e = (z - mu) * torch.exp(-0.5 * logvar)
        return -0.5 * (e * e + logvar + _LOG_2PI).sum(-1)

    def log_prior(self, z):
        return -0.5 * (z * z + _LOG_2PI).sum(-1)

    def sample_prior(self, n, generator=None, dtype=torch.float32):
        return torch.randn(n, self.dim, generator=generator, dtype=dtype)

    def posterior_mean(self, params):
        return self.split(params)[0]

    def distribution(self, params):
        mu, logvar = self.split(params)
        return torch.distributions.Independent(
            torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1
        )

    def traversal(self, base, unit, steps, span: float = 3.0):
        z = base.repeat(steps, 1)
        z[:, unit] = torch.linspace(-span, span, steps, dtype=base.dtype)
        return z


@dataclass(frozen=True)
class CategoricalLatent(Latent):
    """G groups of K classes: q(z | x) = prod_g Cat(z_g; p_g(x)), p(z) uniform (DreamerV2).

    params are G * K logits; p_g mixes the softmax with ``unimix`` of the uniform distribution,
    p = (1 - u) softmax(l) + u / K, so no class is ever impossible (DreamerV3's 1%). Samples are
    one-hot with the straight-through gradient z = onehot + p - stopgrad(p) (Bengio et al. 2013;
    DreamerV2): the forward value is exactly one-hot, the backward pass is that of p. z is the
    flattened (G * K,) one-hot vector. The KL per group is ``categorical_kl`` against the uniform
    prior; a unit is a group.
    """

    groups: int = 32
    classes: int = 32
    unimix: float = 0.01
    name = "categorical"

    def __post_init__(self):
        if self.groups < 1 or self.classes < 2:
            raise ValueError(
                f"categorical latent needs groups >= 1 and classes >= 2, got {self.groups} x {self.classes}"
            )
        if not 0 <= self.unimix < 1:
            raise ValueError(f"unimix must be in [0, 1), got {self.unimix}")

    @property
    def param_size(self) -> int:
        return self.groups * self.classes

    @property
    def z_size(self) -> int:
        return self.groups * self.classes

    @property
    def units(self) -> int:
        return self.groups

    def log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """(..., G, K) normalized log-probabilities, after the uniform mix."""
        self.check_params(params)
        logits = params.unflatten(-1, (self.groups, self.classes))
        log_p = log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)))
        if self.unimix:
            log_p = torch.logaddexp(
                log_p + math.log1p(-self.unimix),
                torch.full_like(log_p, math.log(self.unimix / self.classes)),
            )
        return log_p

    def rsample(self, params, k=None, generator=None):
        log_p = self.log_probs(params)
        probs = log_p.exp()
        shape = probs.shape if k is None else (k, *probs.shape)
        # Gumbel-max: argmax(log p + G) is a draw from p; the generator makes it reproducible.
        u = torch.rand(shape, generator=generator, dtype=probs.dtype, device=probs.device)
        exponential = -torch.log(u.clamp_min(1e-20))  # Exp(1) draws, > 0
        gumbel = -torch.log(exponential.clamp_min(1e-20))
        onehot = torch.nn.functional.one_hot((log_p + gumbel).argmax(-1), self.classes).to(
            probs.dtype
        )
        # straight-through: exactly one-hot forward (the bracket is an exact 0), grad of p backward
        z = onehot + (probs - probs.detach())
        return z.flatten(-2)

    def kl_units(self, params):
        log_p = self.log_probs(params)
        return categorical_kl(log_p, torch.zeros_like(log_p))  # (B, G), against the uniform prior

    def log_q(self, params, z):
        return (z.unflatten(-1, (self.groups, self.classes)).detach() * self.log_probs(params)).sum(
            (-1, -2)
        )

    def log_prior(self, z):
        return torch.full(
            z.shape[:-1], -self.groups * math.log(self.classes), dtype=z.dtype, device=z.device
        )

    def sample_prior(self, n, generator=None, dtype=torch.float32):
        idx = torch.randint(self.classes, (n, self.groups), generator=generator)
        return torch.nn.functional.one_hot(idx, self.classes).to(dtype).flatten(-2)

    def posterior_mean(self, params):
        return self.log_probs(params).exp().flatten(-2)

    def distribution(self, params):
        """One one-hot categorical per group (event shape (groups, classes)); flatten a sample
        (``.flatten(-2)``) for the decoder."""
        d = torch.distributions.OneHotCategorical(logits=self.log_probs(params))
        return torch.distributions.Independent(d, 1)

    def traversal(self, base, unit, steps):
        z = base.repeat(steps, 1).unflatten(-1, (self.groups, self.classes))
        z[:, unit] = torch.nn.functional.one_hot(
            torch.arange(steps) % self.classes, self.classes
        ).to(base.dtype)
        return z.flatten(-2)


LATENTS: dict[str, type[Latent]] = {cls.name: cls for cls in (GaussianLatent, CategoricalLatent)}


def make_latent(name: str, **options) -> Latent:
    """The latent family registered under ``name`` with its options (dim=..., groups=...).

    Raises:
        ValueError: an unknown name or option.
    """
    return build(LATENTS, "latent", name, options)
