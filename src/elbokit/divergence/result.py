"""What every KL method returns, and the batch broadcasting they share.

    KLEstimate         a KL value in nats with how it was obtained (closed form, Monte Carlo with
                       its standard error, quadrature with its error estimate)
    broadcast_pair     p and q expanded to their broadcast batch shape

Both ``estimate`` (closed form and Monte Carlo) and ``quadrature`` build on this module, and it
imports neither, so the two do not import each other to share a result type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution

__all__ = ["LN2", "KLEstimate", "broadcast_pair", "mismatched_supports"]

LN2 = math.log(2.0)  # nats per bit: KL in bits = KL in nats / ln 2
_NAMES = {
    "closed": "closed form",
    "mc": "Monte Carlo",
    "quadrature": "quadrature",
    "support": "infinite: one is discrete and the other continuous, so p has mass where q has none",
}


@dataclass(frozen=True)
class KLEstimate:
    """A KL value in nats and how it was obtained.

    Attributes:
        value: KL(p || q), shape = broadcast batch shape of p and q.
        method: "closed", "mc", "quadrature", or "support" (inf because one distribution is
            discrete and the other continuous; see ``mismatched_supports``).
        stderr: the Monte Carlo standard error of ``value`` (same shape); zeros for a closed
            form; None for quadrature, whose error is ``abserr``.
        num_samples: Monte Carlo sample count, else None.
        abserr: scipy's estimate of the quadrature's absolute error, else None.
    """

    value: torch.Tensor
    method: str
    stderr: torch.Tensor | None = None
    num_samples: int | None = None
    abserr: torch.Tensor | None = None

    @property
    def bits(self) -> torch.Tensor:
        """The value in bits (nats / ln 2)."""
        return self.value / LN2

    @property
    def uncertainty(self) -> torch.Tensor:
        """Standard error (Monte Carlo), error estimate (quadrature) or zeros (closed form)."""
        err = self.stderr if self.stderr is not None else self.abserr
        return err if err is not None else torch.zeros_like(self.value)

    def describe(self) -> str:
        """How the value was obtained, in words: 'closed form', 'Monte Carlo, 10000 samples'."""
        if self.method == "mc":
            return f"Monte Carlo, {self.num_samples} samples, +- one standard error"
        if self.method == "quadrature":
            return "quadrature (scipy.integrate.quad), +- its error estimate"
        return _NAMES[self.method]

    def __str__(self) -> str:
        if self.value.numel() != 1:
            return f"KL = {self.value.tolist()} nats ({self.describe()})"
        v = self.value.item()
        if self.method in ("closed", "support"):
            return f"{v:.6g} nats = {v / LN2:.6g} bits ({self.describe()})"
        e = self.uncertainty.item()
        return f"{v:.6g} +- {e:.2g} nats = {v / LN2:.6g} +- {e / LN2:.2g} bits ({self.describe()})"


def broadcast_pair(p: Distribution, q: Distribution) -> tuple[Distribution, Distribution]:
    """p and q expanded to their broadcast batch shape, so that element i of one meets element i
    of the other wherever samples or densities are compared.

    Raises:
        ValueError: the batch shapes do not broadcast.
    """
    try:
        shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    except RuntimeError:
        raise ValueError(
            f"p has batch shape {tuple(p.batch_shape)} and q has {tuple(q.batch_shape)}, "
            "which do not broadcast"
        ) from None
    p = p.expand(shape) if p.batch_shape != shape else p
    q = q.expand(shape) if q.batch_shape != shape else q
    return p, q


def _is_discrete(d: Distribution) -> bool | None:
    try:
        return bool(d.support.is_discrete)
    except (NotImplementedError, AttributeError):
        return None


def mismatched_supports(p: Distribution, q: Distribution) -> str | None:
    """Why KL(p || q) is infinite whatever the parameters, or None.

    A discrete distribution and a continuous one have no common dominating measure: a discrete
    p puts mass on points where the continuous q has none (q's measure of a point is 0), and a
    continuous p puts mass on sets that a discrete q gives 0. Either way KL(p || q) = inf, for
    every method; a Monte Carlo estimate would instead compare a probability with a density and
    print a finite, meaningless number.
    """
    dp, dq = _is_discrete(p), _is_discrete(q)
    if dp is None or dq is None or dp == dq:
        return None
    kinds = {True: "discrete", False: "continuous"}
    return (
        f"p = {type(p).__name__} is {kinds[dp]} and q = {type(q).__name__} is {kinds[dq]}: no "
        "common dominating measure, so KL(p || q) = inf"
    )


def infinite(p: Distribution, q: Distribution) -> torch.Tensor:
    """inf of the broadcast batch shape of p and q, in their floating dtype."""
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    dtype = next(
        (t.dtype for d in (p, q) for t in d.__dict__.values()
         if isinstance(t, torch.Tensor) and t.is_floating_point()),
        torch.get_default_dtype(),
    )  # fmt: skip
    return torch.full(shape, math.inf, dtype=dtype)
