"""The closed-form KL registry: ``register_kl`` and ``kl``.

It works like ``torch.distributions.kl`` and extends it rather than copying it: a pair of
distribution types is looked up first among the closed forms registered here (the most specific
match by method resolution order wins), and where elbokit registers nothing for a pair, torch's
own closed form is used. torch's registry is read, never written: importing elbokit does not
change what ``torch.distributions.kl_divergence`` returns.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch.distributions import Distribution
from torch.distributions import kl as _torch_kl

from elbokit.divergence.result import infinite, mismatched_supports

KLFn = Callable[[Distribution, Distribution], torch.Tensor]

_REGISTRY: dict[tuple[type, type], KLFn] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[KLFn], KLFn]:
    """Decorator registering ``fn(p, q) -> Tensor`` as the closed form of KL(p || q).

    Same contract as ``torch.distributions.kl.register_kl``: the function returns KL in nats
    with shape equal to the broadcast batch shape of p and q. It may return ``NotImplemented``
    when the types match but the instance is not one it handles (an ``Independent`` over a base
    it does not know, say); ``kl`` then reports that no closed form exists.

    A registration takes effect on the next lookup, also for type pairs already looked up (the
    lookup cache is cleared). Where two registered pairs match a lookup equally closely, the
    lookup warns; registering the exact pair resolves it.
    """
    for t in (type_p, type_q):
        if not (isinstance(t, type) and issubclass(t, Distribution)):
            raise TypeError(f"register_kl expects Distribution subclasses, got {t!r}")

    def decorator(fn: KLFn) -> KLFn:
        _REGISTRY[type_p, type_q] = fn
        _dispatch_registered.cache_clear()  # a new pair may be the nearest match for any lookup
        return fn

    return decorator


@functools.cache
def _dispatch_registered(type_p: type, type_q: type) -> KLFn | None:
    """The most specific closed form registered here for a type pair, else None.

    A registered pair (P', Q') matches when type_p is a subclass of P' and type_q of Q'; its
    distance is the number of steps up the two MROs, ``type_p.__mro__.index(P') +
    type_q.__mro__.index(Q')``, and the nearest match wins. Where two or more matches share the
    smallest distance but hold different functions (``(Base, Derived)`` against ``(Derived,
    Base)``, or multiple inheritance) the pair is ambiguous: the earliest registration among them
    is used and a ``RuntimeWarning`` says so, as torch's ``_dispatch_kl`` does for its own
    registry; registering the exact pair resolves it.

    Memoized like torch's ``kl_divergence`` (so the warning comes once per pair); ``register_kl``
    clears the cache, so the cache never changes a result.
    """
    matches = [
        (type_p.__mro__.index(super_p) + type_q.__mro__.index(super_q), (super_p, super_q), fn)
        for (super_p, super_q), fn in _REGISTRY.items()
        if issubclass(type_p, super_p) and issubclass(type_q, super_q)
    ]
    if not matches:
        return None
    nearest = min(distance for distance, _, _ in matches)
    # _REGISTRY iterates in registration order, so tied[0] is the earliest of the nearest.
    tied = [(pair, f) for distance, pair, f in matches if distance == nearest]
    chosen, fn = tied[0]
    if any(f is not fn for _, f in tied):
        names = ", ".join(f"({p.__name__}, {q.__name__})" for (p, q), _ in tied)
        warnings.warn(
            f"ambiguous closed form for KL({type_p.__name__} || {type_q.__name__}): the "
            f"registered pairs {names} are equally specific and hold different functions; "
            f"using ({chosen[0].__name__}, {chosen[1].__name__}), the earliest registered. "
            f"register_kl({type_p.__name__}, {type_q.__name__}) resolves it",
            RuntimeWarning,
            stacklevel=4,  # _dispatch_registered <- _dispatch <- kl / has_closed_form <- caller
        )
    return fn


def _dispatch(type_p: type, type_q: type) -> KLFn | None:
    """The most specific closed form for a type pair: ours first, then torch's, else None.

    Only our own lookup is cached; torch's registry is asked afresh each time, so a pair that a
    user registers with ``torch.distributions.kl.register_kl`` later is still found.
    """
    fn = _dispatch_registered(type_p, type_q)
    if fn is not None:
        return fn
    fn = _torch_kl._dispatch_kl(type_p, type_q)
    return None if fn is NotImplemented else fn


def has_closed_form(p: Distribution, q: Distribution) -> bool:
    """Whether a closed form of KL(p || q) is registered (here or in torch) for this type pair."""
    return _dispatch(type(p), type(q)) is not None


class NoClosedFormError(NotImplementedError):
    """No closed form of KL(p || q) exists for this pair; the message names the ways out."""


def _no_closed_form(p: Distribution, q: Distribution, detail: str = "") -> NoClosedFormError:
    name_p, name_q = _describe(p), _describe(q)
    return NoClosedFormError(
        f"no closed form for KL({name_p} || {name_q}){detail}. Ways out: "
        f"estimate_kl(p, q, method='mc') for a Monte Carlo estimate with its standard error, "
        f"method='auto' to use Monte Carlo only where no closed form exists, "
        f"kl_quadrature(p, q) for univariate pairs, or register one with "
        f"elbokit.divergence.register_kl({type(p).__name__}, {type(q).__name__})"
    )


def _describe(d: Distribution) -> str:
    base = getattr(d, "base_dist", None)
    if base is not None:
        return f"{type(d).__name__}({_describe(base)})"
    return type(d).__name__


def kl(p: Distribution, q: Distribution) -> torch.Tensor:
    """KL(p || q) in nats by closed form, for any pair registered here or in torch.

    p and q broadcast against each other; the result has their broadcast batch shape (event
    dimensions are summed). Where p puts mass that q does not (mismatched supports) the value is
    ``inf``, never NaN; so for every pair of a discrete and a continuous distribution.

    Raises:
        NoClosedFormError: no closed form for the pair; the message names ``estimate_kl`` (Monte
            Carlo with a standard error) and ``register_kl`` as the ways out. Nothing falls back
            to sampling silently.
        ValueError: the event shapes of p and q differ.
    """
    if not isinstance(p, Distribution) or not isinstance(q, Distribution):
        raise TypeError(
            f"kl expects torch.distributions objects, got {type(p).__name__} and {type(q).__name__}"
        )
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"p has event shape {tuple(p.event_shape)} but q has event shape "
            f"{tuple(q.event_shape)}; KL(p || q) needs the same event shape"
        )
    if mismatched_supports(p, q):  # a discrete and a continuous one: inf, not "no closed form"
        return infinite(p, q)
    fn = _dispatch(type(p), type(q))
    if fn is None:
        raise _no_closed_form(p, q)
    try:
        out = fn(p, q)
    except NoClosedFormError:
        raise
    except NotImplementedError as e:  # torch's pair functions raise this for unsupported instances
        raise _no_closed_form(
            p, q, f" for these instances ({e})" if str(e) else " for these instances"
        ) from None
    if out is NotImplemented:
        raise _no_closed_form(p, q, " for these instances")
    return out
