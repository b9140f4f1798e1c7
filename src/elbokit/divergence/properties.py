"""The textbook properties of KL, checkable on any pair.

``check_kl_properties(p, q)`` measures what must hold (non-negativity; KL = 0 exactly when the
distributions are equal) and what need not (symmetry; with a third distribution r, the triangle
inequality), and reports each with the values behind it. ``asymmetry_example()`` and
``triangle_counterexample()`` return concrete pairs that show KL is not a metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Normal

from elbokit.divergence.estimate import _device_of, _log_prob_or_neg_inf, _seeded, estimate_kl
from elbokit.divergence.result import KLEstimate, broadcast_pair

__all__ = [
    "KLProperties",
    "TriangleCheck",
    "asymmetry_example",
    "check_kl_properties",
    "triangle_counterexample",
]


@dataclass(frozen=True)
class TriangleCheck:
    """KL(p || r) against KL(p || q) + KL(q || r); ``holds`` is False for a counterexample."""

    kl_pr: KLEstimate
    kl_pq: KLEstimate
    kl_qr: KLEstimate
    holds: bool


@dataclass(frozen=True)
class KLProperties:
    """What ``check_kl_properties`` found. Booleans are over every batch element.

    Attributes:
        non_negative: KL(p || q) >= 0 and KL(q || p) >= 0 (within tolerance).
        zero_on_equal: KL(p || p) = 0 and KL(q || q) = 0 (within tolerance).
        distinct: p and q differ as densities (log p - log q differs from 0 at sample points).
        positive_on_distinct: where distinct, KL(p || q) > 0 and KL(q || p) > 0; None when p and
            q are the same distribution.
        symmetric: KL(p || q) = KL(q || p) within tolerance (KL need not be: usually False).
        triangle: the triangle-inequality check, when a third distribution was given.
    """

    kl_pq: KLEstimate
    kl_qp: KLEstimate
    kl_pp: KLEstimate
    kl_qq: KLEstimate
    non_negative: bool
    zero_on_equal: bool
    distinct: bool
    positive_on_distinct: bool | None
    symmetric: bool
    triangle: TriangleCheck | None = None

    @property
    def holds(self) -> bool:
        """The properties every KL must have: non-negative, zero iff equal."""
        return self.non_negative and self.zero_on_equal and self.positive_on_distinct is not False

    def __str__(self) -> str:
        def mark(b):
            return "n/a" if b is None else ("yes" if b else "NO")

        lines = [
            f"KL(p || q) = {self.kl_pq}",
            f"KL(q || p) = {self.kl_qp}",
            f"non-negative ............. {mark(self.non_negative)}",
            f"zero for equal arguments . {mark(self.zero_on_equal)}",
            f"positive for p != q ...... {mark(self.positive_on_distinct)}",
            f"symmetric ................ {mark(self.symmetric)}  (KL need not be)",
        ]
        if self.triangle is not None:
            t = self.triangle
            lines.append(
                f"triangle inequality ...... {mark(t.holds)}  (KL need not obey it): "
                f"KL(p||r) = {t.kl_pr.value.tolist()} vs KL(p||q) + KL(q||r) = "
                f"{(t.kl_pq.value + t.kl_qr.value).tolist()}"
            )
        return "\n".join(lines)


def _slack(e: KLEstimate, atol: float) -> torch.Tensor:
    """How far an estimate may stray from the truth: 4 standard errors, or atol."""
    return 4.0 * e.uncertainty + atol * (1.0 + e.value.abs().nan_to_num(0.0))


def _distinct(p: Distribution, q: Distribution, n: int, seed: int, atol: float) -> torch.Tensor:
    """Whether log p and log q differ at points drawn from both (an independent test of p != q)."""
    with torch.no_grad(), _seeded(seed, _device_of(p)):
        diffs = []
        for d in (p, q):
            x = d.sample((n,))
            diffs.append((_log_prob_or_neg_inf(p, x) - _log_prob_or_neg_inf(q, x)).abs())
    d = torch.cat(diffs).nan_to_num(nan=float("inf"))
    return (d > atol).any(0)


def check_kl_properties(
    p: Distribution,
    q: Distribution,
    r: Distribution | None = None,
    *,
    method: str = "auto",
    num_samples: int = 20_000,
    seed: int = 0,
    atol: float = 1e-5,
) -> KLProperties:
    """Check non-negativity, zero-iff-equal, symmetry and (given r) the triangle inequality.

    Every KL is computed by ``estimate_kl(..., method=method)``; comparisons allow 4 standard
    errors for Monte Carlo estimates and ``atol`` (relative to 1 + |KL|) for float rounding.
    Whether p and q differ is decided independently of KL, by comparing log-densities at points
    sampled from both.
    """

    p, q = broadcast_pair(p, q)

    def est(a, b):
        return estimate_kl(a, b, method=method, num_samples=num_samples, seed=seed)

    kl_pq, kl_qp, kl_pp, kl_qq = est(p, q), est(q, p), est(p, p), est(q, q)
    non_negative = all(bool((e.value >= -_slack(e, atol)).all()) for e in (kl_pq, kl_qp))
    zero_on_equal = all(bool((e.value.abs() <= _slack(e, atol)).all()) for e in (kl_pp, kl_qq))
    distinct_mask = _distinct(p, q, 256, seed, atol)
    distinct = bool(distinct_mask.any())
    if distinct:
        positive = all(
            bool((e.value > 0)[distinct_mask.expand_as(e.value)].all()) for e in (kl_pq, kl_qp)
        )
    else:
        positive = None
    gap = (kl_pq.value - kl_qp.value).abs()
    symmetric = bool((gap <= _slack(kl_pq, atol) + _slack(kl_qp, atol)).all())
    triangle = None
    if r is not None:
        kl_pr, kl_qr = est(p, r), est(q, r)
        bound = kl_pq.value + kl_qr.value + _slack(kl_pq, atol) + _slack(kl_qr, atol)
        triangle = TriangleCheck(kl_pr, kl_pq, kl_qr, holds=bool((kl_pr.value <= bound).all()))
    return KLProperties(
        kl_pq,
        kl_qp,
        kl_pp,
        kl_qq,
        non_negative,
        zero_on_equal,
        distinct,
        positive,
        symmetric,
        triangle,
    )


def asymmetry_example() -> tuple[Distribution, Distribution]:
    """p = N(0, 1), q = N(0, 2^2): KL(p || q) = 0.3181 but KL(q || p) = 0.8069 nats.

    A narrow p inside a wide q costs little; a wide q inside a narrow p costs much more
    (the mass q puts in p's tails is penalized quadratically).
    """
    return Normal(0.0, 1.0), Normal(0.0, 2.0)


def triangle_counterexample() -> tuple[Distribution, Distribution, Distribution]:
    """p = N(0, 1), q = N(1, 1), r = N(2, 1): KL(p || r) = 2 > KL(p || q) + KL(q || r) = 1.

    For equal unit variances KL is half the squared distance of the means, and squared
    distance does not obey the triangle inequality.
    """
    return Normal(0.0, 1.0), Normal(1.0, 1.0), Normal(2.0, 1.0)
