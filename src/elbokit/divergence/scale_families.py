"""Closed forms of scale families that stay finite where torch's overflow, underflow or cancel.

torch's closed forms for these pairs form ratios and squares of the parameters, or subtract two
numbers of order a log a, so at extreme (but representable) float32 parameters they return inf,
NaN or a negative "KL" where the true value is finite:

    Exponential(1e38) || Exponential(1e-38)   torch: inf    true: 173.996 nats
    Exponential(1e-45) || Exponential(1)      torch: nan    true: 7.1e44 (beyond float32: inf)
    Cauchy(1e30, 1) || Cauchy(0, 1)           torch: inf    true: 136.769 nats
    Gamma(1e30, 1e30) || Gamma(1, 1)          torch: -7.6e23  true: 34.120 nats

The forms below are the same mathematics arranged to keep every intermediate in range: ratios
through logarithms, log1p/expm1 near zero, and for the Gamma pair the large-shape cancellation
done analytically; they compute in float64 and return the inputs' dtype (a float32 value beyond
3.4e38 is then inf, as it must be). Each is checked against mpmath at 50 digits (tests/test_scale_families.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Cauchy, Exponential, Gamma

from elbokit.divergence._registry import register_kl

__all__: list[str] = []

_LOG4 = math.log(4.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# above this shape, (a - c) psi(a) - lgamma(a) - a is taken from its asymptotic series: the
# direct float64 form loses digits to cancellation (terms of order a log a), the series' first
# omitted term is O(1/a^2) < 1e-16 here
_GAMMA_SERIES_FROM = 1e8


@register_kl(Exponential, Exponential)
def _kl_exponential(p: Exponential, q: Exponential) -> torch.Tensor:
    """KL = r - 1 - log r with r = rate_q / rate_p, as expm1(log r) - log r: no ratio is formed
    (it under- or overflows for rates 1e38 and 1e-38), and it is accurate for r near 1."""
    dtype = torch.promote_types(p.rate.dtype, q.rate.dtype)
    # in float64: exp amplifies the rounding of log r (r = 1e20: 4e-6 relative in float32)
    log_r = torch.log(q.rate.double()) - torch.log(p.rate.double())
    return (torch.expm1(log_r) - log_r).to(dtype)


@register_kl(Cauchy, Cauchy)
def _kl_cauchy(p: Cauchy, q: Cauchy) -> torch.Tensor:
    """KL = log(((s_p + s_q)^2 + (l_p - l_q)^2) / (4 s_p s_q)) (Chyzak & Nielsen 2019)
         = log1p(u),  u = ((s_p - s_q)^2 + (l_p - l_q)^2) / (4 s_p s_q).

    log1p(u) where u is finite (accurate near p = q); where u overflows (locations 1e30 apart,
    scales 1e30 and 1e-30) the same value from logarithms: 2 log hypot(s_p - s_q, l_p - l_q) -
    log 4 - log s_p - log s_q, through softplus."""
    dtype = torch.promote_types(p.loc.dtype, q.loc.dtype)
    lp, sp, lq, sq = (t.double() for t in (p.loc, p.scale, q.loc, q.scale))
    d = lp - lq
    u = ((sp - sq) ** 2 + d**2) / (4 * sp * sq)
    finite = torch.isfinite(u)
    # the branch not taken gets harmless inputs, so its gradient is 0, not 0 * inf
    h = torch.hypot(torch.where(finite, 1.0, sp - sq), torch.where(finite, 0.0, d))
    log_u = 2 * torch.log(h) - _LOG4 - torch.log(sp) - torch.log(sq)
    out = torch.where(finite, torch.log1p(torch.where(finite, u, 0.0)), F.softplus(log_u))
    return out.to(dtype)


def _gamma_head(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(a - c) psi(a) - lgamma(a) - a in float64, directly or, for large a, by its series

        (1/2 - c) log a - 1/2 - log(2 pi)/2 + (c/2 - 1/6) / a + O(1/a^2)

    (from psi(a) = log a - 1/(2a) - 1/(12 a^2) + ... and Stirling's lgamma(a) = (a - 1/2) log a
    - a + log(2 pi)/2 + 1/(12 a) - ...): the a log a terms cancel exactly, not in floating point."""
    big = a > _GAMMA_SERIES_FROM
    small_a = torch.where(big, torch.ones_like(a), a)
    large_a = torch.where(big, a, torch.full_like(a, _GAMMA_SERIES_FROM))
    direct = (small_a - c) * torch.digamma(small_a) - torch.lgamma(small_a) - small_a
    series = (0.5 - c) * torch.log(large_a) - 0.5 - _HALF_LOG_2PI + (c / 2 - 1 / 6) / large_a
    return torch.where(big, series, direct)


@register_kl(Gamma, Gamma)
def _kl_gamma(p: Gamma, q: Gamma) -> torch.Tensor:
    """KL(Gamma(a1, b1) || Gamma(a2, b2)), shapes a and rates b:

        (a1 - a2) psi(a1) - lgamma(a1) + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1
      = [(a1 - a2) psi(a1) - lgamma(a1) - a1] + lgamma(a2) + a2 log(b1 / b2) + a1 b2 / b1

    in float64 (cast back at the end), the bracket by ``_gamma_head``. torch's float32 form
    cancels terms of order a1 log a1: Gamma(1e30, 1e30) || Gamma(1, 1) came out -7.6e23."""
    dtype = torch.promote_types(p.concentration.dtype, q.concentration.dtype)
    a1, b1, a2, b2 = (t.double() for t in (p.concentration, p.rate, q.concentration, q.rate))
    log_ratio = torch.log(b1) - torch.log(b2)
    out = _gamma_head(a1, a2) + torch.lgamma(a2) + a2 * log_ratio + a1 * torch.exp(-log_ratio)
    return out.to(dtype)
