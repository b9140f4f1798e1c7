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

__all__ = ["LN2", "KLEstimate", "broadcast_pair"]

LN2 = math.log(2.0)  # nats per bit: KL in bits = KL in nats / ln 2
_NAMES = {"closed": "closed form", "mc": "Monte Carlo", "quadrature": "quadrature"}


@dataclass(frozen=True)
class KLEstimate:
    """A KL value in nats and how it was obtained.

    Attributes:
        value: KL(p || q), shape = broadcast batch shape of p and q.
        method: "closed", "mc" or "quadrature".
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
        if self.method == "closed":
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
