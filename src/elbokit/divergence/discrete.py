"""KL between discrete distributions given as arrays, like ``scipy.stats.entropy(p, q)``.

Unlike scipy, which normalizes whatever it is given, the input is validated: a probability
vector with a negative entry, a NaN, or a sum other than one is an error that names the value,
unless ``normalize=True`` is asked for.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["kl_discrete"]

_UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}


def _as_float64(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} is not an array of numbers: {e}") from None
    if t.dim() == 0:
        raise ValueError(f"{name} is a scalar; expected a probability vector (..., K)")
    return t.to(torch.float64)


def _where(mask: torch.Tensor) -> str:
    idx = tuple(int(i) for i in torch.nonzero(mask)[0])
    return str(idx[0]) if len(idx) == 1 else str(idx)


def _validate(t: torch.Tensor, name: str, axis: int, normalize: bool, tol: float) -> torch.Tensor:
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN at index {_where(torch.isnan(t))}")
    if torch.isinf(t).any():
        raise ValueError(f"{name} contains inf at index {_where(torch.isinf(t))}")
    if (t < 0).any():
        i = torch.nonzero(t < 0)[0]
        raise ValueError(
            f"{name} has a negative entry {t[tuple(i)].item():g} at index {_where(t < 0)}; "
            "probabilities must be >= 0"
        )
    sums = t.sum(axis, keepdim=True)
    if normalize:
        if (sums == 0).any():
            raise ValueError(
                f"{name} has a slice that sums to 0 along axis {axis}; cannot normalize"
            )
        return t / sums
    bad = (sums - 1.0).abs() > tol
    if bad.any():
        s = sums[tuple(torch.nonzero(bad)[0])].item()
        where = "" if sums.numel() == 1 else f" (slice {_where(bad.squeeze(axis))})"
        raise ValueError(
            f"{name} sums to {s:.9g}{where} along axis {axis}, expected 1 within {tol:g}; "
            "pass normalize=True to rescale it"
        )
    return t


def kl_discrete(p, q, *, axis: int = -1, normalize: bool = False, unit: str = "nats", tol=None):
    """KL(p || q) = sum_k p_k log(p_k / q_k) for probability vectors along ``axis``.

    0 log(0 / q) = 0, and p_k > 0 = q_k gives ``inf``. Computed in float64.

    Args:
        p, q: array-likes (numpy, lists, torch) of the same size along ``axis``; other dims
            broadcast as in numpy.
        axis: the dim that holds the K probabilities.
        normalize: rescale each slice to sum to one (as scipy does) instead of rejecting it.
        unit: "nats" or "bits".
        tol: how far a sum may be from 1 (default 1e-6, or more for long float32 vectors).

    Returns:
        The broadcast shape without ``axis``: a numpy float / array for numpy or list input, a
        float64 tensor if either input is a tensor.

    Raises:
        ValueError: NaN, inf or negative entries, a slice not summing to 1 (without
            ``normalize``), sizes that differ along ``axis`` or do not broadcast, unknown unit.
    """
    if unit not in _UNITS:
        raise ValueError(f"unit={unit!r}; expected 'nats' or 'bits'")
    as_torch = isinstance(p, torch.Tensor) or isinstance(q, torch.Tensor)
    tp, tq = _as_float64(p, "p"), _as_float64(q, "q")
    try:
        kp, kq = tp.shape[axis], tq.shape[axis]
    except IndexError:
        raise ValueError(
            f"axis={axis} is out of range for p of shape {tuple(tp.shape)} and q of shape "
            f"{tuple(tq.shape)}"
        ) from None
    if kp != kq:
        raise ValueError(
            f"p has {kp} entries along axis {axis} (shape {tuple(tp.shape)}) but q has {kq} "
            f"(shape {tuple(tq.shape)})"
        )
    try:
        torch.broadcast_shapes(tp.shape, tq.shape)
    except RuntimeError:
        raise ValueError(
            f"p of shape {tuple(tp.shape)} and q of shape {tuple(tq.shape)} do not broadcast"
        ) from None
    if tol is None:
        eps = max(_eps(p), _eps(q))
        tol = max(1e-6, 4 * kp * eps)
    tp = _validate(tp, "p", axis, normalize, tol)
    tq = _validate(tq, "q", axis, normalize, tol)
    # rel_entr: p log(p/q), 0 where p = 0, inf where p > 0 = q.
    terms = torch.where(tp > 0, tp * (torch.log(tp) - torch.log(tq)), 0.0)
    out = terms.sum(axis) * _UNITS[unit]
    if as_torch:
        return out
    out = out.numpy()
    return out[()] if out.ndim == 0 else out


def _eps(x) -> float:
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)
