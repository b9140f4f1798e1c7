"""The objective base: what every ELBO-family objective shares.

Objectives work on tensors, so they serve any training loop: ``ELBO.from_terms(recon_ll,
kl_units, step)``, ``IWAE.from_log_weights(log_w)``. Calling ``objective(model, x, step)`` is a
convenience for any model with ``encode``, ``latent`` and ``log_likelihood`` (the interface of
``elbokit.models``, used here by duck typing: objectives import no model). Both return an
``ObjectiveOutput``: the scalar ``loss`` to minimize (a batch mean), a dict of named ``terms``
that the trainer logs as they are, each a scalar batch mean in nats, and the ``settings`` that
shaped the loss at this step (logged in training, not measured on test data):

    elbo      E_q[log p(x|z)] - KL(q(z|x) || p(z)), unweighted: the bound itself
    recon     -E_q[log p(x|z)], the reconstruction NLL
    kl        KL(q(z|x) || p(z)), unweighted: always the true KL, never a clipped or scaled one
    kl/dim_i  per latent unit (dims of a Gaussian, groups of a categorical), with per_unit=True
    settings: kl_weight, the factor on the KL in the loss (beta times the schedule)

A KL with no batch dimension -- a KL over a model's weights, KL(q(w) || p(w)) -- enters a
minibatch's loss scaled by 1/N, N the dataset size, so that the minibatch losses of an epoch
average to -ELBO(D)/N (``ELBO.from_global_kl``); the terms then carry ``kl`` (the whole KL,
unscaled) and the setting ``kl_scale`` = 1/N.

``kl_method`` says how the KL was obtained: "analytic" where the latent has a closed form, else
"sampled" (one-sample log q(z|x) - log p(z)); never switched silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from elbokit.objectives.schedules import KLSchedule


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    kl_method: str = "analytic"
    per_example: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    """Shared settings: KL weighting (beta, schedule), free bits, the KL estimator.

    Free bits, two different things under one name:
      - ``free_bits_mode="per_dim"`` (Kingma et al. 2016): each latent unit's batch-mean KL is
        clamped from below, sum_i max(lambda, E_x[KL_i]): no unit is pushed below lambda nats,
        so units are kept from collapsing one by one.
      - ``free_bits_mode="mean"`` (DreamerV2's free nats): the total is clamped,
        max(lambda, E_x[sum_i KL_i]): the KL is free as a whole while under lambda, and units
        may still collapse individually.
      - ``free_bits_mode="per_layer"`` (a hierarchy's free nats, as Havtorn et al. 2021 train
        their hierarchical VAEs): each stochastic layer's total is clamped,
        sum_l max(lambda, E_x[KL_l]), so no layer collapses as a whole; a model of one latent
        layer has one group, the same as "mean".
    The clamp only changes the gradient (and the loss); the logged ``kl`` is always the true KL.
    """

    beta: float = 1.0
    schedule: KLSchedule = field(default_factory=KLSchedule)
    free_bits: float = 0.0
    free_bits_mode: str = "per_dim"
    kl_estimator: str = "auto"  # "analytic", "sampled", or "auto" (analytic where available)
    per_unit: bool = False

    def __post_init__(self):
        if not (self.beta >= 0 and math.isfinite(self.beta)):  # NaN fails every comparison
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")
        if not (self.free_bits >= 0 and math.isfinite(self.free_bits)):
            raise ValueError(f"free_bits must be finite and >= 0 nats, got {self.free_bits}")
        if self.free_bits_mode not in ("per_dim", "mean", "per_layer"):
            raise ValueError(f"free_bits_mode={self.free_bits_mode!r}; expected 'per_dim', "
                             "'mean' or 'per_layer'")  # fmt: skip
        if self.kl_estimator not in ("auto", "analytic", "sampled"):
            raise ValueError(
                f"kl_estimator={self.kl_estimator!r}; expected auto, analytic or sampled"
            )

    def kl_weight(self, step: int) -> float:
        return self.beta * self.schedule(step)

    @property
    def needs_units(self) -> bool:
        """Whether the loss or the logs need the KL of each latent unit, not just its sum."""
        return self.per_unit or (self.free_bits > 0 and self.free_bits_mode == "per_dim")

    def kl_units(self, model, params, z) -> tuple[torch.Tensor, str]:
        """KL(q(z|x) || p(z)) per unit, (B, units); (B, 1) holding the sum where units are not
        needed (the latent's fused path) or when sampled; and how it was obtained."""
        if self.kl_estimator != "sampled":
            try:
                if not self.needs_units:
                    return model.latent.kl(params).unsqueeze(-1), "analytic"
                return model.latent.kl_units(params), "analytic"
            except NotImplementedError:
                if self.kl_estimator == "analytic":
                    raise ValueError(
                        f"kl_estimator='analytic' but the {model.latent.name} latent has no "
                        "closed-form KL to its prior; use 'sampled' or 'auto'"
                    ) from None
        sampled = model.latent.log_q(params, z) - model.latent.log_prior(z)
        return sampled.unsqueeze(-1), "sampled"

    def penalized_kl(self, kl_units: torch.Tensor, layers=None) -> torch.Tensor:
        """The batch-mean KL as it enters the loss, after free bits (a scalar); ``layers``:
        the units of each stochastic layer, in order (for ``per_layer``; None: one layer)."""
        per_unit = kl_units.mean(0)
        if self.free_bits == 0:
            return per_unit.sum()
        if self.free_bits_mode == "per_dim":
            return per_unit.clamp_min(self.free_bits).sum()
        if self.free_bits_mode == "per_layer" and layers is not None:
            return (
                torch.stack([g.sum() for g in per_unit.split(list(layers))])
                .clamp_min(self.free_bits)
                .sum()
            )
        return per_unit.sum().clamp_min(self.free_bits)

    def __call__(self, model, x: torch.Tensor, step: int = 0) -> ObjectiveOutput:
        raise NotImplementedError

    def _unit_terms(self, kl_units: torch.Tensor, method: str) -> dict[str, torch.Tensor]:
        if not self.per_unit or method != "analytic":
            return {}
        means = kl_units.detach().mean(0)
        return {f"kl/dim_{i}": v for i, v in enumerate(means)}
