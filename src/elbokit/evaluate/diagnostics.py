"""Posterior-collapse diagnostics for any model with an encoder, a latent family and a prior.

- ``kl_per_unit``: E_x[KL(q(z_u|x) || p(z_u))] for each latent unit, in nats.
- ``active_units``: units whose posterior mean moves with x, Cov_x(E_q[z_u|x]) > 0.01
  (Burda et al. 2016; for a categorical group, summed over its classes). A collapsed unit copies
  the prior whatever x is.
- ``mutual_information``: I_q(x; z) = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)), the KL's part
  that carries information about x, with the aggregate posterior q(z) = (1/N) sum_j q(z|x_j)
  estimated from the same N examples (Hoffman & Johnson 2016; the estimator of He et al. 2019).
  It is bounded by log N, so it needs N well above exp(I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Diagnostics:
    kl_per_unit: torch.Tensor  # (units,) nats
    active_units: int
    unit_activity: torch.Tensor  # (units,) Cov_x(E_q[z_u|x])
    mutual_information: float  # nats
    kl: float  # E_x[KL(q(z|x) || p(z))], nats
    n: int
    mutual_information_stderr: float = 0.0  # Monte Carlo standard error of the estimate

    def mutual_information_note(self) -> str:
        """What an estimate outside [0, log N] means, in words ('' when inside)."""
        bound = math.log(self.n)
        se = self.mutual_information_stderr
        if self.mutual_information > bound:
            return (f"above its bound log N = {bound:.2f}: the estimator needs N well above "
                    f"exp(I); read it as at least {bound:.2f}")  # fmt: skip
        if self.mutual_information < 0:
            return (f"negative: estimator noise (+- {se:.2f}) around a value near 0; I(x; z) "
                    "itself is >= 0")  # fmt: skip
        return ""

    def as_dict(self) -> dict:
        return {
            "kl": self.kl,
            "kl_per_unit": self.kl_per_unit.tolist(),
            "active_units": self.active_units,
            "unit_activity": self.unit_activity.tolist(),
            "mutual_information": self.mutual_information,
            "mutual_information_stderr": self.mutual_information_stderr,
            "examples": self.n,
        }


@torch.no_grad()
def diagnose(
    model,
    x: torch.Tensor,
    *,
    threshold: float = 0.01,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> Diagnostics:
    """KL per unit, active units and I_q(x; z) over the examples x (see the module docstring)."""
    was_training = model.training
    model.eval()
    try:
        params = torch.cat([model.encode(xb) for xb in x.split(batch_size)])
    finally:
        model.train(was_training)
    latent = model.latent
    kl_units = torch.cat([latent.kl_units(p) for p in params.split(batch_size)]).double()
    activity = latent.unit_activity(params) if len(params) > 1 else torch.zeros(latent.units)
    mi, mi_se = _mutual_information(latent, params, kl_units.sum(-1), batch_size, generator)
    return Diagnostics(
        kl_per_unit=kl_units.mean(0).float(),
        active_units=int((activity > threshold).sum()),
        unit_activity=activity.float(),
        mutual_information=mi,
        kl=kl_units.sum(-1).mean().item(),
        n=len(x),
        mutual_information_stderr=mi_se,
    )


def _mutual_information(latent, params, kl: torch.Tensor, batch_size: int, generator):
    """(estimate, standard error) of E_x KL(q(z|x)||p(z)) - KL(q(z)||p(z)), the second by one
    z_i ~ q(z|x_i) per example and log q(z_i) = logsumexp_j log q(z_i | x_j) - log N over all N
    examples. The estimate is the mean over i of KL_i - log q(z_i) + log p(z_i); its standard
    error is their standard deviation / sqrt(N) (treating the N terms as independent)."""
    n = len(params)
    z = latent.rsample(params, generator=generator)  # (N, z)
    log_agg = []
    for zb in z.split(batch_size):
        # log q(zb_i | x_j) for every pair: params broadcast over (b, N)
        lq = torch.stack([latent.log_q(params, zi.expand(n, -1)) for zi in zb])  # (b, N)
        log_agg.append(torch.logsumexp(lq.double(), 1) - math.log(n))
    log_qz = torch.cat(log_agg)
    terms = kl.double() - (log_qz - latent.log_prior(z).double())
    se = (terms.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    return terms.mean().item(), se


@torch.no_grad()
def diagnose_layers(model, x: torch.Tensor, *, threshold: float = 0.01, batch_size: int = 500,
                    generator: torch.Generator | None = None) -> tuple[Diagnostics, dict]:  # fmt: skip
    """A hierarchical model's diagnostics: the KL per unit of every layer (bottom to top, one
    draw per example) and I(x; z_L) of the top layer (``diagnose`` on q(z_L | x)); with the
    per-layer sums in the dict. A unit is active when its mean KL exceeds ``threshold`` nats: the
    spread of q's means over x is no test in a hierarchy, where a unit that copies its
    conditional prior p(z_l | z_{l+1}) carries nothing of its own yet moves with the layer above."""
    top = diagnose(model, x, threshold=threshold, batch_size=batch_size, generator=generator)
    was_training = model.training
    model.eval()
    try:
        kls = [model.layer_kl(xb) for xb in x.split(batch_size)]
    finally:
        model.train(was_training)
    layers = len(kls[0])
    kl = [torch.cat([k[i] for k in kls]).double() for i in range(layers)]
    activity = [k.mean(0) for k in kl]
    units = torch.cat(activity)
    d = Diagnostics(
        kl_per_unit=units.float(), active_units=int((units > threshold).sum()),
        unit_activity=units.float(), mutual_information=top.mutual_information,
        kl=float(sum(k.sum(-1).mean() for k in kl)), n=len(x),
        mutual_information_stderr=top.mutual_information_stderr,
    )  # fmt: skip
    extra = {
        "kl_per_layer": [float(k.sum(-1).mean()) for k in kl],
        "active_units_per_layer": [int((a > threshold).sum()) for a in activity],
        "layer_dims": [k.shape[1] for k in kl],
    }
    return d, extra
