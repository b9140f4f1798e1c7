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
    """``reconstruction="sampled"`` (one reparameterized z per example) or ``"closed"``: the
    model's own ``expected_log_likelihood(x)``, E_q[log p(x|z)] without sampling, where it has
    one (a linear-Gaussian model); with the analytic KL the ELBO is then exact."""

    reconstruction: str = "sampled"

    def __post_init__(self):
        super().__post_init__()
        if self.reconstruction not in ("sampled", "closed"):
            raise ValueError(
                f"reconstruction = {self.reconstruction!r}: expected 'sampled' or 'closed'"
            )
        if self.reconstruction == "closed" and self.kl_estimator == "sampled":
            raise ValueError(
                "reconstruction='closed' needs the analytic KL, not kl_estimator='sampled'"
            )

    def from_terms(
        self,
        recon_ll: torch.Tensor,
        kl_units: torch.Tensor,
        step: int = 0,
        kl_method: str = "analytic",
        layers: tuple[int, ...] | None = None,
    ) -> ObjectiveOutput:
        """The loss and terms from log p(x|z) (B,) and the KL per latent unit (B, units);
        ``layers``: the units of each stochastic layer of a hierarchy, bottom to top (its
        per-layer free bits, and a ``kl/layer_l`` term each).

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
        if layers is not None and sum(layers) != kl_units.shape[1]:
            raise ValueError(f"layers {list(layers)} do not add up to the {kl_units.shape[1]} "
                             "KL units")  # fmt: skip
        loss = -recon_ll.mean() + weight * self.penalized_kl(kl_units, layers)
        elbo = recon_ll - kl
        terms = {
            "elbo": elbo.detach().mean(),
            "recon": -recon_ll.detach().mean(),
            "kl": kl.detach().mean(),
            **self._unit_terms(kl_units, kl_method),
        }
        if layers is not None and len(layers) > 1:
            per_layer = kl_units.detach().mean(0).split(list(layers))
            terms.update({f"kl/layer_{i + 1}": g.sum() for i, g in enumerate(per_layer)})
        per_example = {"elbo": elbo.detach(), "kl": kl.detach()}
        return ObjectiveOutput(loss, terms, kl_method, per_example, {"kl_weight": weight})

    def from_global_kl(
        self,
        recon_ll: torch.Tensor,
        kl: torch.Tensor,
        dataset_size: int,
        step: int = 0,
        kl_method: str = "analytic",
    ) -> ObjectiveOutput:
        """The loss of a minibatch when the KL has no batch dimension (a KL over weights).

        ELBO(D) = sum_i E_q[log p(x_i | w)] - KL(q(w) || p(w)) over the N examples of D, so a
        minibatch B contributes

            loss = -mean_B E_q[log p(x_i | w)] + kl_weight * freebits(KL) / N

        and the losses of the minibatches of an epoch (equal sizes) average to -ELBO(D)/N.
        ``kl`` is a scalar or per unit (U,), nats; terms: ``elbo`` (per example, the bound
        divided by N), ``recon``, ``kl`` (the whole KL), and the settings ``kl_weight`` and
        ``kl_scale`` = 1/N. ``kl_method`` says how ``kl`` was obtained ("analytic", or
        "sampled": a one-sample estimate such as log q(w) - log p(w)).

        Raises:
            ValueError: recon_ll not (B,), kl with a batch dimension, dataset_size < 1.
        """
        if recon_ll.dim() != 1 or kl.dim() > 1:
            raise ValueError(
                f"recon_ll must be (B,) and kl a scalar or (units,); got {tuple(recon_ll.shape)} "
                f"and {tuple(kl.shape)}"
            )
        if dataset_size < 1:
            raise ValueError(f"dataset_size = {dataset_size}: expected >= 1")
        units = kl.reshape(1, -1)  # one "row": free bits apply to the KL as it is
        total = units.sum()
        weight = self.kl_weight(step)
        loss = -recon_ll.mean() + weight * self.penalized_kl(units) / dataset_size
        terms = {
            "elbo": (recon_ll.detach().mean() - total.detach() / dataset_size),
            "recon": -recon_ll.detach().mean(),
            "kl": total.detach(),
        }
        settings = {"kl_weight": weight, "kl_scale": 1.0 / dataset_size}
        return ObjectiveOutput(loss, terms, kl_method, {}, settings)

    def __call__(self, model, x, step=0) -> ObjectiveOutput:
        if hasattr(model, "elbo_terms"):  # a model of several latent layers: its own terms
            if self.kl_estimator == "analytic" and not getattr(model, "top_down", True):
                raise ValueError("kl_estimator='analytic': a bottom-up hierarchy's lower layers "
                                 "have no closed-form KL; use 'auto'")  # fmt: skip
            recon, kl_units, method = model.elbo_terms(x)
            return self.from_terms(recon, kl_units, step, method, tuple(model.dims))
        params = model.encode(x)
        if self.reconstruction == "closed":
            if not hasattr(model, "expected_log_likelihood"):
                raise ValueError(
                    f"reconstruction='closed' needs a model with expected_log_likelihood(x); "
                    f"{type(model).__name__} has none"
                )
            kl_units, method = self.kl_units(model, params, None)
            return self.from_terms(model.expected_log_likelihood(x), kl_units, step, method)
        z = model.latent.rsample(params)
        kl_units, method = self.kl_units(model, params, z)
        return self.from_terms(model.log_likelihood(z, x), kl_units, step, method)
