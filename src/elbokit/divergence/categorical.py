"""Categorical and Bernoulli KL from logits, finite where torch's is not.

- ``categorical_kl(p_logits, q_logits, event_dims=1)``: KL between categoricals over the last
  dim; ``event_dims=2`` sums over groups too (factorized categoricals, G groups x K classes, as
  the 32 x 32 latents of DreamerV2).
- ``bernoulli_kl(p_logits, q_logits)``: elementwise KL between Bernoullis.

Registered closed forms: Categorical || Categorical, OneHotCategorical || OneHotCategorical
(which covers the straight-through subclass), Bernoulli || Bernoulli. Factorized categoricals as
``Independent(OneHotCategorical(logits of shape (..., G, K)), 1)`` reach them through the
Independent pair.

What torch gets wrong and these do not: logits of +-1e4 give inf in torch (it tests
``q.probs == 0`` after the probabilities underflow) where the true KL is finite (2e4 nats for
logits [1e4, -1e4] against [-1e4, 1e4]); masked (-inf) logits in p give NaN gradients in torch,
finite ones here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, OneHotCategorical

from elbokit.divergence._registry import register_kl

__all__ = ["bernoulli_kl", "categorical_kl", "log_softmax", "softmax"]

# Rows are processed in chunks of about this many elements, so that the intermediates of a chunk
# stay in cache: 3x faster than whole 4096 x 1024 tensors on a 2-core CPU; 2^17 to 2^20 measured
# within 5% of each other, 2^19 the fastest (benchmarks/kl_bench.py, docs/benchmarks.md).
_CHUNK_ELEMENTS = 1 << 19


# With fewer classes than one vector register holds floats (16 with AVX-512), log_softmax and
# softmax over the last dim are computed on the CPU as y - log(sum(exp(y))), y = x - max(x):
# torch's CPU kernels vectorize along the class dim, and with 2-15 classes ran 1.7-4.8x
# (log_softmax) and 1.7-4.0x (softmax) slower, forward and backward, on a Zen 5 EPYC; from 16
# classes theirs are 2-3x faster (benchmarks/kl_bench.py --only small-classes,
# docs/benchmarks.md). The AVX2 cut (8 floats) follows from the register width, not measured.
_LANES = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def _small(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() > 0
            and x.shape[-1] < _LANES)  # fmt: skip


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.log_softmax(x, -1)``, faster on the CPU for a few classes (above)."""
    if not _small(x):
        return F.log_softmax(x, -1)
    y = x - x.detach().amax(-1, keepdim=True)  # the shift changes no value and no gradient
    return y - y.exp().sum(-1, keepdim=True).log()


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, -1)``, faster on the CPU for a few classes (above)."""
    if not _small(x):
        return F.softmax(x, -1)
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """sum_k p_k (log p_k - log q_k) over the last dim of one chunk of rows."""
    # p from softmax, not exp(log p): torch's softmax kernel is 1.5x faster than its exp (measured).
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    if torch.compiler.is_compiling():  # a graph has no data-dependent branch: the careful form
        return _excluding(lp, lq)
    p = softmax(p_logits)
    if torch.is_grad_enabled() and (p_logits.requires_grad or q_logits.requires_grad):
        out = torch.linalg.vecdot(p, lp - lq)
    else:  # no graph recorded: reuse the buffers
        out = p.mul_(torch.sub(lp, lq, out=lq)).sum(-1)
        if out.isnan().any():  # the buffers are spent: recompute for the careful path below
            lq = log_softmax(q_logits)
    if not out.isnan().any():
        return out
    # NaN can only come from 0 * inf: a class p excludes (log p = -inf), or one q excludes
    # where p's probability underflowed to 0. Redo with the convention 0 log 0 = 0 and
    # p > 0 = q -> inf, routing no gradient through the excluded classes.
    return _excluding(lp, lq)


def _excluding(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """sum_k p_k (log p_k - log q_k) from log-probabilities, 0 log 0 = 0 and p_k > 0 = q_k
    giving inf, no gradient through an excluded class."""
    in_p = lp > -math.inf
    diff = torch.where(in_p, lp - lq, 0.0)
    terms = torch.where(in_p & (lq == -math.inf), math.inf, lp.exp() * diff)
    return terms.sum(-1)


def categorical_kl(
    p_logits: torch.Tensor, q_logits: torch.Tensor, *, event_dims: int = 1
) -> torch.Tensor:
    """KL(Cat(softmax(p_logits)) || Cat(softmax(q_logits))) in nats.

    KL = sum_k p_k (log p_k - log q_k), with log p = log_softmax(p_logits): logits need not be
    normalized, and -inf marks an excluded class. 0 log 0 = 0; a class with p_k > 0 = q_k gives
    ``inf``.

    Args:
        p_logits, q_logits: (..., K), broadcastable against each other, same K.
        event_dims: how many trailing dims are summed: 1 sums the K classes, 2 also sums the G
            groups of a factorized categorical (..., G, K).

    Returns:
        The broadcast batch shape, i.e. the broadcast shape without its last ``event_dims`` dims.

    Raises:
        ValueError: the class counts differ, the shapes do not broadcast, or ``event_dims`` is
            not between 1 and the number of dims.
    """
    if p_logits.dim() == 0 or q_logits.dim() == 0:
        raise ValueError("categorical_kl needs logits of shape (..., K), got a 0-dim tensor")
    if p_logits.shape[-1] != q_logits.shape[-1]:
        raise ValueError(
            f"p_logits has {p_logits.shape[-1]} classes (shape {tuple(p_logits.shape)}) but "
            f"q_logits has {q_logits.shape[-1]} (shape {tuple(q_logits.shape)})"
        )
    try:
        p_logits, q_logits = torch.broadcast_tensors(p_logits, q_logits)
    except RuntimeError:
        raise ValueError(
            f"p_logits of shape {tuple(p_logits.shape)} and q_logits of shape "
            f"{tuple(q_logits.shape)} do not broadcast"
        ) from None
    if not 1 <= event_dims <= p_logits.dim():
        raise ValueError(
            f"event_dims={event_dims} but the logits have {p_logits.dim()} dims "
            f"(shape {tuple(p_logits.shape)}); expected 1 <= event_dims <= {p_logits.dim()}"
        )
    k = p_logits.shape[-1]
    rows_p, rows_q = p_logits.reshape(-1, k), q_logits.reshape(-1, k)
    rows = max(1, _CHUNK_ELEMENTS // max(k, 1))
    parts = [_kl_rows(a, b) for a, b in zip(rows_p.split(rows), rows_q.split(rows), strict=True)]
    out = (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(p_logits.shape[:-1])
    extra = event_dims - 1
    return out.sum(tuple(range(-extra, 0))) if extra else out


def bernoulli_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bern(sigmoid(a)) || Bern(sigmoid(b))) in nats, from logits a and b.

    KL = s(a) (softplus(-b) - softplus(-a)) + s(-a) (softplus(b) - softplus(a)),

    using log s(x) = -softplus(-x) and log(1 - s(x)) = -softplus(x), so no probability is
    formed and then logged: finite for logits of +-1e4 (torch gives inf for KL(Bern(0.5) ||
    Bern(s(1e4))), whose true value is about 5000 nats). Infinite logits mean probabilities of
    exactly 0 or 1: a term whose weight s(+-a) is 0 counts 0, and mass where q has none is inf.
    """
    w1, w0 = torch.sigmoid(p_logits), torch.sigmoid(-p_logits)
    t1 = torch.where(w1 > 0, w1 * (F.softplus(-q_logits) - F.softplus(-p_logits)), 0.0)
    t0 = torch.where(w0 > 0, w0 * (F.softplus(q_logits) - F.softplus(p_logits)), 0.0)
    return t1 + t0


# ----------------------------------------------------------------------------- registered pairs


def _categorical_log_probs(d: Categorical) -> torch.Tensor:
    """Normalized log-probabilities with exact -inf for zero probabilities.

    torch derives logits from probabilities by clamping them to [eps, 1 - eps], which turns an
    excluded class into a finite logit (log(eps) = -15.9 in float32): read a given ``probs``
    directly instead.
    """
    cached = d.__dict__
    if "probs" not in cached:
        return d.logits
    if "logits" not in cached:
        return torch.log(d.probs)
    # Both cached: a zero probability whose logit is too large to underflow came from clamping.
    tiny = math.log(torch.finfo(d.logits.dtype).tiny)
    return torch.where((d.probs == 0) & (d.logits > tiny), -math.inf, d.logits)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: Categorical, q: Categorical) -> torch.Tensor:
    return categorical_kl(_categorical_log_probs(p), _categorical_log_probs(q))


@register_kl(OneHotCategorical, OneHotCategorical)
def _kl_onehot_onehot(p: OneHotCategorical, q: OneHotCategorical) -> torch.Tensor:
    return _kl_categorical_categorical(p._categorical, q._categorical)


def _bernoulli_logits(d: Bernoulli) -> torch.Tensor:
    """Logits with exact +-inf for probabilities of 1 and 0 (torch clamps them to +-15.9)."""
    cached = d.__dict__
    if "probs" not in cached:
        return d.logits
    exact = torch.log(d.probs) - torch.log1p(-d.probs)
    if "logits" not in cached:
        return exact
    # Both cached (log_prob caches logits): a probability of exactly 0 or 1 whose logit is
    # within the clamp, -log(eps), came from clamping; from true logits sigmoid saturates to 1
    # only beyond log(2 / eps), 0.69 further out.
    clamp = 0.3 - math.log(torch.finfo(d.logits.dtype).eps)
    from_clamp = ((d.probs == 0) | (d.probs == 1)) & (d.logits.abs() < clamp)
    return torch.where(from_clamp, exact, d.logits)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: Bernoulli, q: Bernoulli) -> torch.Tensor:
    return bernoulli_kl(_bernoulli_logits(p), _bernoulli_logits(q))
