"""KL balancing and free nats, the KL part of DreamerV2's world-model loss (Hafner et al. 2021).

    KL_bal = alpha * KL(stopgrad(posterior) || prior) + (1 - alpha) * KL(posterior || stopgrad(prior))

Both terms have the value of the plain KL; they differ in where the gradient goes: the first
(``dyn``) trains the prior towards the posterior, the second (``rep``) the posterior towards the
prior. With alpha = 0.8 the prior learns four times faster than the posterior is regularized.

Free nats, two variants used in the literature:
  - ``"mean"`` (DreamerV2): max(free, mean over the batch of KL): the KL is free as a whole while
    its batch mean is below ``free``; above, every element gets gradient.
  - ``"elementwise"`` (DreamerV3): mean over the batch of max(free, KL_i): an element below
    ``free`` gets no gradient whatever the others do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from elbokit.divergence import categorical_kl
from elbokit.objectives.base import ObjectiveOutput


@dataclass(frozen=True)
class KLBalance:
    alpha: float = 0.8
    free_nats: float = 0.0
    free_mode: str = "mean"

    def __post_init__(self):
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha}; expected 0 <= alpha <= 1")
        if self.free_nats < 0:
            raise ValueError(f"free_nats={self.free_nats}; expected >= 0")
        if self.free_mode not in ("mean", "elementwise"):
            raise ValueError(f"free_mode={self.free_mode!r}; expected 'mean' or 'elementwise'")

    def free(self, kl: torch.Tensor) -> torch.Tensor:
        """The clipped batch mean of per-element KLs (any shape), a scalar."""
        if self.free_mode == "elementwise":
            return kl.clamp_min(self.free_nats).mean()
        return kl.mean().clamp_min(self.free_nats)

    def from_logits(
        self, posterior_logits: torch.Tensor, prior_logits: torch.Tensor, event_dims: int = 2
    ) -> ObjectiveOutput:
        """The balanced, clipped KL between factorized categoricals given by logits (..., G, K).

        ``loss`` is a scalar; ``terms``: ``kl`` (the plain KL's batch mean), ``kl/dyn`` and
        ``kl/rep`` (their clipped means, which the loss weights by alpha and 1 - alpha).
        """
        dyn = categorical_kl(posterior_logits.detach(), prior_logits, event_dims=event_dims)
        rep = categorical_kl(posterior_logits, prior_logits.detach(), event_dims=event_dims)
        dyn_loss, rep_loss = self.free(dyn), self.free(rep)
        loss = self.alpha * dyn_loss + (1 - self.alpha) * rep_loss
        terms = {
            "kl": dyn.detach().mean(),
            "kl/dyn": dyn_loss.detach(),
            "kl/rep": rep_loss.detach(),
        }
        return ObjectiveOutput(loss, terms, "analytic", {"kl": dyn.detach()})
