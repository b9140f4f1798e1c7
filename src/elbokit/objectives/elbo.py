"""The evidence lower bound, with beta, KL schedules and free bits.

    ELBO(x) = E_q(z|x)[log p(x | z)] - KL(q(z|x) || p(z))  <=  log p(x)
    loss    = E_x[-log p(x | z)] + beta * schedule(step) * freebits(E_x[KL])

with one reparameterized sample of z per example. The terms are documented in
``elbokit.objectives.base``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from elbokit.objectives.base import Objective, ObjectiveOutput


@dataclass(frozen=True)
class ELBO(Objective):
    def from_terms(
        self,
        recon_ll: torch.Tensor,
        kl_units: torch.Tensor,
        step: int = 0,
        kl_method: str = "analytic",
    ) -> ObjectiveOutput:
        """The loss and terms from log p(x|z) (B,) and the KL per latent unit (B, units).

        Raises:
            ValueError: the shapes do not fit together.
        """
        if recon_ll.dim() != 1 or kl_units.dim() != 2 or kl_units.shape[0] != recon_ll.shape[0]:
            raise ValueError(
                f"recon_ll must be (B,) and kl_units (B, units); got {tuple(recon_ll.shape)} and "
                f"{tuple(kl_units.shape)}"
            )
        kl = kl_units.sum(-1)
        weight = self.kl_weight(step)
        loss = -recon_ll.mean() + weight * self.penalized_kl(kl_units)
        elbo = recon_ll - kl
        terms = {
            "elbo": elbo.detach().mean(),
            "recon": -recon_ll.detach().mean(),
            "kl": kl.detach().mean(),
            "kl_weight": loss.new_tensor(weight),
            **self._unit_terms(kl_units, kl_method),
        }
        return ObjectiveOutput(loss, terms, kl_method, {"elbo": elbo.detach(), "kl": kl.detach()})

    def __call__(self, model, x, step=0) -> ObjectiveOutput:
        params = model.encode(x)
        z = model.latent.rsample(params)
        kl_units, method = self.kl_units(model, params, z)
        return self.from_terms(model.log_likelihood(z, x), kl_units, step, method)
