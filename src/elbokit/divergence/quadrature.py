"""A numerical reference: univariate KL(p || q) by adaptive quadrature (scipy.integrate.quad).

    KL(p || q) = integral of p(x) (log p(x) - log q(x)) dx over the support of p

Any pair of univariate continuous ``torch.distributions`` with ``log_prob`` works, so a user can
check a closed form the way elbokit's tests do. Each batch element is rebuilt in float64 from its
parameters (so a float32 scale of 1e-30 does not underflow when squared) and integrated on its
own, over pieces placed around p's bulk (mean and standard deviation, or median and quartiles
where the moments are infinite) plus the two tails.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
from scipy import integrate
from torch.distributions import Distribution, MixtureSameFamily

from elbokit.divergence.result import KLEstimate, broadcast_pair, infinite, mismatched_supports

__all__ = ["kl_quadrature"]

_BULK = (-30.0, -10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0, 30.0)  # breakpoints, in widths


def _rebuild(d: Distribution, idx: tuple[int, ...]) -> Distribution:
    """Batch element ``idx`` of d as a float64 distribution with an empty batch shape."""
    if isinstance(d, MixtureSameFamily):
        return MixtureSameFamily(
            _rebuild(d.mixture_distribution, idx),
            _rebuild(d.component_distribution, idx),
            validate_args=False,
        )
    keys = list(d.arg_constraints)
    if "probs" in keys and "logits" in keys:  # torch takes one; a given probs is the exact one
        keys.remove("logits" if "probs" in d.__dict__ else "probs")
    try:
        params = {k: getattr(d, k) for k in keys}
    except AttributeError as e:
        raise ValueError(
            f"kl_quadrature cannot read the parameters of {type(d).__name__}: {e}"
        ) from None
    # After expand() torch keeps every parameter broadcast to the batch shape (plus any event
    # dims, such as a mixture's K weights), so idx picks the element's own parameters.
    parts = {}
    for k, v in params.items():
        v = torch.as_tensor(v)[idx]
        parts[k] = v.double() if v.is_floating_point() else v
    try:
        return type(d)(**parts, validate_args=False)
    except TypeError as e:
        raise ValueError(
            f"kl_quadrature cannot rebuild {type(d).__name__} from its parameters "
            f"{sorted(parts)}: {e}"
        ) from None


def _bulk(d: Distribution) -> tuple[float, float]:
    """A centre and width of d's mass: mean and stddev, else median and interquartile range."""
    with torch.no_grad():
        try:
            c, w = float(d.mean), float(d.stddev)
            if math.isfinite(c) and math.isfinite(w) and w > 0:
                return c, w
        except NotImplementedError:
            pass
        try:
            q = d.icdf(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
            return float(q[1]), float(q[2] - q[0])
        except NotImplementedError:
            return 0.0, 1.0


def _bounds(d: Distribution) -> tuple[float, float]:
    lo = getattr(d.support, "lower_bound", -math.inf)
    hi = getattr(d.support, "upper_bound", math.inf)
    return float(lo), float(hi)


def _integrate_one(p: Distribution, q: Distribution, **quad_kw) -> tuple[float, float]:
    lo, hi = _bounds(p)
    c, w = _bulk(p)
    cq, wq = _bulk(q)  # q's mode is often a kink of log q (Laplace): a breakpoint too
    points = [c + k * w for k in _BULK] + [cq - wq, cq, cq + wq]
    knots = sorted({min(max(x, lo), hi) for x in points} | {lo, hi})
    infinite = False

    def f(x: float) -> float:
        nonlocal infinite
        t = torch.tensor(x, dtype=torch.float64)
        with torch.no_grad():
            lp = float(p.log_prob(t))
            if lp == -math.inf:
                return 0.0
            lq = float(q.log_prob(t)) if bool(q.support.check(t)) else -math.inf
        if lq == -math.inf:
            infinite = True
            return 0.0
        return math.exp(lp) * (lp - lq)

    total = err = 0.0
    unconverged = []
    for a, b in itertools.pairwise(knots):
        if a < b:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", integrate.IntegrationWarning)
                v, e = integrate.quad(f, a, b, **quad_kw)
            if caught and not infinite:
                unconverged.append(f"[{a:.4g}, {b:.4g}]")
            total, err = total + v, err + e
    if infinite:
        return math.inf, 0.0
    if unconverged:
        warnings.warn(
            f"kl_quadrature: scipy.integrate.quad did not converge on {', '.join(unconverged)}; "
            f"the value {total:.6g} (error estimate {err:.2g}) may be wrong, or the KL infinite "
            "(a heavy-tailed p against a light-tailed q)",
            RuntimeWarning,
            stacklevel=3,
        )
    return total, err


def kl_quadrature(
    p: Distribution,
    q: Distribution,
    *,
    epsabs: float = 1e-11,
    epsrel: float = 1e-10,
    limit: int = 200,
) -> KLEstimate:
    """KL(p || q) of univariate continuous distributions by numerical integration, in float64.

    Returns a ``KLEstimate`` with method "quadrature", ``value`` of the broadcast batch shape
    (float64) and ``abserr``, scipy's estimate of the absolute error. Where p has mass outside
    q's support the value is ``inf``.

    Raises:
        ValueError: p or q is not univariate (event shape ()), is discrete, or cannot be rebuilt
            per batch element from its parameters (pass scalar distributions then).
    """
    if mismatched_supports(p, q):  # a density against a probability: inf, whatever the values
        value = infinite(p, q).double()
        return KLEstimate(value, "support", torch.zeros_like(value))
    for name, d in (("p", p), ("q", q)):
        if d.event_shape != torch.Size():
            raise ValueError(
                f"kl_quadrature integrates univariate distributions; {name} = "
                f"{type(d).__name__} has event shape {tuple(d.event_shape)}"
            )
        if d.support.is_discrete:
            raise ValueError(
                f"kl_quadrature integrates densities; {name} = {type(d).__name__} is discrete "
                "(use kl_discrete on its probability vector)"
            )
    p, q = broadcast_pair(p, q)
    shape = p.batch_shape
    values = np.empty(shape)
    errors = np.empty(shape)
    for idx in np.ndindex(*shape):
        values[idx], errors[idx] = _integrate_one(
            _rebuild(p, idx), _rebuild(q, idx), epsabs=epsabs, epsrel=epsrel, limit=limit
        )
    return KLEstimate(torch.from_numpy(values), "quadrature", abserr=torch.from_numpy(errors))
