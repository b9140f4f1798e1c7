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

from elbokit.divergence import vae_kl
from elbokit.registry import build

__all__ = ["LATENTS", "GaussianLatent", "Latent", "make_latent"]

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


LATENTS: dict[str, type[Latent]] = {GaussianLatent.name: GaussianLatent}


def make_latent(name: str, **options) -> Latent:
    """The latent family registered under ``name`` with its options (dim=..., groups=...).

    Raises:
        ValueError: an unknown name or option.
    """
    return build(LATENTS, "latent", name, options)
