"""The importance-weighted bound (Burda et al. 2016).

    L_k(x) = E[log (1/k) sum_i w_i],  w_i = p(x | z_i) p(z_i) / q(z_i | x),  z_i ~ q(z | x)

L_1 is the ELBO (with a sampled KL), L_k <= L_{k+1} <= log p(x), and L_k -> log p(x) as k grows.
The loss is -E_x[L_k]; beta, schedules and free bits do not apply (they are ELBO surgery).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from elbokit.objectives.base import Objective, ObjectiveOutput


def log_weights(
    model,
    x: torch.Tensor,
    k: int,
    params: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x) for k samples per example: (k, B)."""
    if hasattr(model, "elbo_terms"):  # a hierarchy draws all its layers itself
        return model.log_weights(x, k, generator)
    params = model.encode(x) if params is None else params
    z = model.latent.rsample(params, k, generator=generator)  # (k, B, z)
    return model.log_likelihood(z, x) + model.latent.log_prior(z) - model.latent.log_q(params, z)


@dataclass(frozen=True)
class IWAE(Objective):
    k: int = 5

    def __post_init__(self):
        super().__post_init__()
        if self.k < 1:
            raise ValueError(f"IWAE needs k >= 1 samples, got {self.k}")

    def from_log_weights(self, log_w: torch.Tensor) -> ObjectiveOutput:
        """The loss and terms from log importance weights of shape (k, B)."""
        if log_w.dim() != 2:
            raise ValueError(f"log_w must be (k, B), got shape {tuple(log_w.shape)}")
        bound = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])  # (B,)
        terms = {"iwae": bound.detach().mean()}
        return ObjectiveOutput(-bound.mean(), terms, "sampled", {"iwae": bound.detach()})

    def __call__(self, model, x, step=0) -> ObjectiveOutput:
        return self.from_log_weights(log_weights(model, x, self.k))
