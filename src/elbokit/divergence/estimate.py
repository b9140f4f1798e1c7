"""KL by whichever method the caller chooses, and a result that says which one it was.

``estimate_kl(p, q, method=...)`` returns a ``KLEstimate``: the value, its standard error (Monte
Carlo), the method that produced it and the sample count. ``method="auto"`` takes the closed
form where one is registered and Monte Carlo otherwise; the result's ``method`` says which, so
nothing falls back silently. ``kl(p, q)`` itself never samples.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch.distributions import Distribution, transform_to

from elbokit.divergence._registry import NoClosedFormError, has_closed_form, kl
from elbokit.divergence.quadrature import kl_quadrature

# KLEstimate, broadcast_pair and LN2 live in ``result`` (shared with ``quadrature``); they stay
# importable from here as they were before the move.
from elbokit.divergence.result import LN2 as LN2
from elbokit.divergence.result import KLEstimate, broadcast_pair, infinite, mismatched_supports

__all__ = ["KL_METHODS", "KLEstimate", "broadcast_pair", "estimate_kl", "kl_monte_carlo"]

KL_METHODS = ("auto", "closed", "mc", "quadrature")
"""The ways ``estimate_kl`` computes KL: ``auto`` (closed form where one exists, else Monte Carlo,
saying so), ``closed``, ``mc`` (with its standard error), ``quadrature`` (univariate)."""


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Draw from a seeded stream without touching the caller's global RNG state."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _log_prob_or_neg_inf(d: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log d(x), with -inf (instead of torch's validation error) where x is outside d's support."""
    support = d.support
    inside = support.check(x)
    if bool(inside.all()):
        return d.log_prob(x)
    # Evaluate at a point inside the support, then mask: no validation switch is flipped.
    try:
        anchor = transform_to(support)(torch.zeros_like(x))
    except NotImplementedError:  # discrete supports: their lower bound, or 0
        anchor = torch.full_like(x, float(getattr(support, "lower_bound", 0)))
    mask = inside.reshape(inside.shape + (1,) * support.event_dim)
    lp = d.log_prob(torch.where(mask, x, anchor))
    return torch.where(inside, lp, -math.inf)


def kl_monte_carlo(
    p: Distribution,
    q: Distribution,
    *,
    num_samples: int = 10_000,
    seed: int | None = 0,
    chunk_size: int = 4096,
) -> KLEstimate:
    """Monte Carlo KL(p || q) = E_p[log p(x) - log q(x)], with its standard error.

    Samples are reparameterized (``rsample``) where p allows it, so the estimate carries
    gradients; otherwise ``sample``. Moments accumulate in float64 over chunks of ``chunk_size``
    samples. A sample outside q's support makes the estimate ``inf`` (with standard error 0: such
    a sample proves that p puts mass where q has none).

    Args:
        num_samples: n >= 2; the standard error is std(log ratio) / sqrt(n).
        seed: seeds a private stream (the global RNG is left as it was); None uses the global one.

    Raises:
        ValueError: n < 2, mismatched event shapes, or p cannot be sampled.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples}; a standard error needs at least 2")
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"p has event shape {tuple(p.event_shape)} but q has {tuple(q.event_shape)}"
        )
    if mismatched_supports(p, q):
        value = infinite(p, q)
        return KLEstimate(value, "support", torch.zeros_like(value))
    p, q = broadcast_pair(p, q)
    device = _device_of(p)
    # Moments of r - shift, with shift the first chunk's mean: no cancellation in the variance
    # when the KL is large and its spread small.
    shift = total = sq_total = None
    with _seeded(seed, device):
        remaining = num_samples
        while remaining > 0:
            m = min(chunk_size, remaining)
            remaining -= m
            try:
                x = p.rsample((m,)) if p.has_rsample else p.sample((m,))
            except NotImplementedError:
                raise ValueError(
                    f"{type(p).__name__} cannot be sampled, so KL(p || q) has no Monte Carlo "
                    "estimate; use kl_quadrature for a univariate pair"
                ) from None
            r = (p.log_prob(x) - _log_prob_or_neg_inf(q, x)).double()
            if shift is None:
                shift = r.detach().mean(0).nan_to_num(0.0, posinf=0.0, neginf=0.0)
                total, sq_total = 0.0, 0.0
            c = r - shift
            total = total + c.sum(0)
            sq_total = sq_total + (c * c).sum(0)
    n = num_samples
    centred = total / n
    mean = shift + centred
    var = ((sq_total - n * centred * centred) / (n - 1)).clamp_min(0.0)
    stderr = (var / n).sqrt().detach()
    stderr = torch.where(torch.isinf(mean), 0.0, stderr)
    dtype = torch.promote_types(_dtype_of(p), _dtype_of(q))
    return KLEstimate(mean.to(dtype), "mc", stderr.to(dtype), num_samples=n)


def _tensors(d: Distribution):
    """The parameter tensors of d, looking inside sub-distributions (mixtures, Independent)."""
    for v in d.__dict__.values():
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, Distribution):
            yield from _tensors(v)


def _device_of(d: Distribution) -> torch.device:
    return next(_tensors(d), torch.empty(0)).device


def _dtype_of(d: Distribution) -> torch.dtype:
    floats = (t.dtype for t in _tensors(d) if t.is_floating_point())
    return next(floats, torch.get_default_dtype())


def estimate_kl(
    p: Distribution,
    q: Distribution,
    *,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = 0,
) -> KLEstimate:
    """KL(p || q) by the method asked for; the result records which method produced it.

    Args:
        method: "closed" (closed form or an error), "mc" (Monte Carlo with standard error),
            "quadrature" (univariate continuous pairs, scipy.integrate) or "auto" (the closed
            form where one exists, Monte Carlo otherwise: ``result.method`` says which).
        num_samples, seed: for Monte Carlo, see ``kl_monte_carlo``.

    Raises:
        ValueError: an unknown method.
        NoClosedFormError: method="closed" for a pair without a closed form.
    """
    if method not in KL_METHODS:
        raise ValueError(f"method={method!r}; expected one of {', '.join(map(repr, KL_METHODS))}")
    if method == "quadrature":
        return kl_quadrature(p, q)
    if mismatched_supports(p, q):  # inf whatever the method: said so, never sampled
        value = infinite(p, q)
        return KLEstimate(value, "support", torch.zeros_like(value))
    if method == "closed" or (method == "auto" and has_closed_form(p, q)):
        try:
            value = kl(p, q)
        except NoClosedFormError:
            if method == "closed":
                raise
        else:
            return KLEstimate(value, "closed", torch.zeros_like(value))
    return kl_monte_carlo(p, q, num_samples=num_samples, seed=seed)
