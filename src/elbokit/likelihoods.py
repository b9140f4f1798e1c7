"""Likelihoods p(x | z): how a decoder's output becomes log p(x | z) in nats.

Each family is chosen by name (``make_likelihood("bernoulli")``). Shapes: data x is (B, *E);
a family with one parameter per element takes params of shape (*S, B, *E), one with P
parameters per element (*S, B, P, *E), and categorical (*S, B, *E, K) logits; S are optional
leading sample dims (IWAE's k). ``log_prob`` sums over E and returns (*S, B) in nats: nothing is
averaged here.

| name | data | parameters per element | log p(x|z) |
|---|---|---|---|
| bernoulli | [0, 1] (binary or soft) | 1 logit | -BCE-with-logits |
| gaussian | real | 1 mean, sigma fixed | N(x; mean, sigma^2) |
| gaussian-learned | real | mean, log sigma | N(x; mean, sigma^2) |
| categorical | integers 0..K-1 | K logits | -cross-entropy |
| discretized-logistic | 8-bit, x = v / 255 | mean, log scale | mass of x's bin |
| discretized-gaussian | 8-bit, x = v / 255 | mean, log scale | mass of x's bin |

The unit-variance Gaussian NLL is 0.5 * squared error + 0.5 * D * log(2 pi): MSE is a Gaussian
likelihood up to that constant and a factor. Cross-entropy is the categorical NLL. The
discretized family gives 8-bit data a true probability, so -log p / (D log 2) is bits per dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from elbokit.registry import build

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "DiscretizedGaussianLikelihood",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "LearnedGaussianLikelihood",
    "Likelihood",
    "discretized_gaussian_log_prob",
    "make_likelihood",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _sum_data_dims(ll: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum the data's event dims E (the trailing x.dim() - 1 dims of ll)."""
    n = x.dim() - 1
    return ll.sum(tuple(range(-n, 0))) if n else ll


class Likelihood:
    """A family p(x | z) parameterized by the decoder's output (see the module docstring)."""

    name: str = ""
    params_per_element: int = 1
    discrete: bool = False  # True where log p is a probability mass (bits/dim are meaningful)

    def param_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape a decoder must output per example, for examples of ``data_shape``."""
        p = self.params_per_element
        return tuple(data_shape) if p == 1 else (p, *data_shape)

    def parts(self, params: torch.Tensor, x_dim: int) -> tuple[torch.Tensor, ...]:
        """The P parameter tensors, each (*S, B, *E), for data with x_dim dims (B, *E)."""
        if self.params_per_element == 1:
            return (params,)
        return params.unbind(dim=params.dim() - x_dim)

    def check_shapes(self, params: torch.Tensor, x: torch.Tensor) -> None:
        want = self.param_shape(tuple(x.shape[1:]))
        got = tuple(params.shape[params.dim() - len(want) :]) if len(want) else ()
        if (
            got != want
            or params.dim() < x.dim()
            or params.shape[params.dim() - len(want) - 1] != x.shape[0]
        ):
            raise ValueError(
                f"{self.name} likelihood: decoder output has shape {tuple(params.shape)} but data "
                f"of shape {tuple(x.shape)} needs (..., {x.shape[0]}, {', '.join(map(str, want))})"
            )

    def check_data(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise ValueError naming the first bad value if x is outside this family's support."""
        if torch.isnan(x).any():
            raise ValueError(f"{what} contains NaN at index {_first(torch.isnan(x))}")
        if torch.isinf(x).any():
            raise ValueError(f"{what} contains inf at index {_first(torch.isinf(x))}")

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats, summed over x's event dims: shape (*S, B)."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor, x_dim: int) -> torch.Tensor:
        """E[x | z] in the data's units (reconstructions, samples), shape (*S, B, *E)."""
        raise NotImplementedError


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def _check_range(x: torch.Tensor, lo: float, hi: float, what: str, name: str) -> None:
    bad = (x < lo) | (x > hi)
    if bad.any():
        i = _first(bad)
        raise ValueError(
            f"{what} has value {x[i].item():g} at index {i}; the {name} likelihood needs values "
            f"in [{lo:g}, {hi:g}]"
        )


@dataclass(frozen=True)
class BernoulliLikelihood(Likelihood):
    """x in [0, 1] (binary, or soft targets such as 0.99); one logit l per element.

    log p(x | z) = x log s(l) + (1 - x) log s(-l), i.e. -BCE_with_logits(l, x). For soft x this
    is a cross-entropy rather than a normalized likelihood (it is what DreamerV2's discount head
    uses); torch's Bernoulli with validation rejects soft targets, this does not.
    """

    name = "bernoulli"

    def check_data(self, x, what="data"):
        super().check_data(x, what)
        _check_range(x, 0.0, 1.0, what, self.name)

    def log_prob(self, params, x):
        ll = -F.binary_cross_entropy_with_logits(params, x.expand_as(params), reduction="none")
        return _sum_data_dims(ll, x)

    def mean(self, params, x_dim):
        return torch.sigmoid(params)


@dataclass(frozen=True)
class GaussianLikelihood(Likelihood):
    """x real; the decoder gives the mean m; sigma is fixed (default 1).

    -log p(x | z) = sum_i (x_i - m_i)^2 / (2 sigma^2) + D (log sigma + 0.5 log 2 pi).
    """

    sigma: float = 1.0
    name = "gaussian"

    def __post_init__(self):
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"gaussian likelihood needs a finite sigma > 0, got {self.sigma}")

    def log_prob(self, params, x):
        z = (x - params) / self.sigma
        return _sum_data_dims(-0.5 * z * z - (math.log(self.sigma) + _HALF_LOG_2PI), x)

    def mean(self, params, x_dim):
        return params


@dataclass(frozen=True)
class LearnedGaussianLikelihood(Likelihood):
    """x real; the decoder gives a mean and a log sigma per element, log sigma >= the floor.

    The floor keeps log p bounded on constant pixels, where sigma -> 0 would send it to +inf.
    """

    min_log_sigma: float = -7.0
    name = "gaussian-learned"
    params_per_element = 2

    def log_prob(self, params, x):
        mean, log_sigma = self.parts(params, x.dim())
        log_sigma = log_sigma.clamp_min(self.min_log_sigma)
        z = (x - mean) * torch.exp(-log_sigma)
        return _sum_data_dims(-0.5 * z * z - log_sigma - _HALF_LOG_2PI, x)

    def mean(self, params, x_dim):
        return self.parts(params, x_dim)[0]


@dataclass(frozen=True)
class CategoricalLikelihood(Likelihood):
    """x integer in 0..K-1 per element; K logits per element in a trailing dim.

    -log p(x | z) = sum_i cross-entropy(logits_i, x_i).
    """

    num_classes: int = 256
    name = "categorical"
    discrete = True

    def param_shape(self, data_shape):
        return (*data_shape, self.num_classes)

    def check_data(self, x, what="data"):
        super().check_data(x, what)
        _check_range(x, 0, self.num_classes - 1, what, self.name)
        if (x != x.round()).any():
            i = _first(x != x.round())
            raise ValueError(
                f"{what} has value {x[i].item():g} at index {i}; the categorical likelihood needs integers"
            )

    def log_prob(self, params, x):
        target = x.long().expand(params.shape[:-1]).unsqueeze(-1)
        ll = torch.log_softmax(params, -1).gather(-1, target).squeeze(-1)
        return _sum_data_dims(ll, x)

    def mean(self, params, x_dim):
        k = torch.arange(self.num_classes, dtype=params.dtype, device=params.device)
        return torch.softmax(params, -1) @ k


@dataclass(frozen=True)
class DiscretizedLogisticLikelihood(Likelihood):
    """8-bit data as x = v / 255; the decoder gives a mean and a log scale per element.

    p(x | z) is the mass a logistic(mean, scale) puts on x's bin [x - 1/510, x + 1/510], with the
    first and last bins extended to -inf and +inf (Salimans et al. 2017, PixelCNN++, with one
    mixture component): a probability of the 8-bit value, summing to one over the 256 values.
    """

    min_log_scale: float = -7.0
    name = "discretized-logistic"
    params_per_element = 2
    discrete = True
    _HALF_BIN = 0.5 / 255.0

    def check_data(self, x, what="data"):
        super().check_data(x, what)
        _check_range(x, 0.0, 1.0, what, self.name)
        off = ((x * 255.0) - (x * 255.0).round()).abs() > 1e-3
        if off.any():
            i = _first(off)
            raise ValueError(
                f"{what} has value {x[i].item():g} at index {i}, which is not v / 255 for an "
                "integer v: the discretized likelihood needs 8-bit data"
            )

    def log_prob(self, params, x):
        mean, log_scale = self.parts(params, x.dim())
        log_scale = log_scale.clamp_min(self.min_log_scale)
        inv = torch.exp(-log_scale)
        upper = (x - mean + self._HALF_BIN) * inv
        lower = (x - mean - self._HALF_BIN) * inv
        ll = torch.where(
            x < self._HALF_BIN,
            F.logsigmoid(upper),  # value 0: all mass below the bin's top edge
            torch.where(
                x > 1.0 - self._HALF_BIN,
                F.logsigmoid(-lower),  # value 255: all mass above the bottom edge
                _log_sigmoid_difference(upper, lower),
            ),
        )
        return _sum_data_dims(ll, x)

    def mean(self, params, x_dim):
        return self.parts(params, x_dim)[0].clamp(0.0, 1.0)


def _log_ndtr_difference(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for hi > lo, exact in both tails: by symmetry the pair is moved
    left of centre, where log Phi is accurate, as in ``_log_sigmoid_difference``."""
    right = (hi + lo) > 0
    a, b = torch.where(right, -lo, hi), torch.where(right, -hi, lo)
    log_a, log_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return log_a + torch.log(-torch.expm1(log_b - log_a))


def discretized_gaussian_log_prob(
    x: torch.Tensor,
    mean: torch.Tensor,
    log_scale: torch.Tensor,
    *,
    levels: int = 256,
    low: float = -1.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Elementwise log P(x) in nats for data on ``levels`` evenly spaced values from ``low`` to
    ``high``: the mass N(mean, e^{2 log_scale}) puts on x's bin of width (high - low) /
    (levels - 1), the lowest and highest bins open to -inf and +inf (Ho et al. 2020's decoder on
    [-1, 1] with levels = 256: bins of width 2/255). Sums to one over the levels; nothing is
    summed over elements."""
    half = 0.5 * (high - low) / (levels - 1)
    inv = torch.exp(-log_scale)
    upper, lower = (x - mean + half) * inv, (x - mean - half) * inv
    return torch.where(
        x < low + half,
        torch.special.log_ndtr(upper),
        torch.where(
            x > high - half, torch.special.log_ndtr(-lower), _log_ndtr_difference(upper, lower)
        ),
    )


@dataclass(frozen=True)
class DiscretizedGaussianLikelihood(DiscretizedLogisticLikelihood):
    """As ``discretized-logistic`` with a Gaussian in place of the logistic: the mass
    N(mean, scale^2) puts on x's bin of width 1/255, edge bins open (Ho et al. 2020's L_0)."""

    name = "discretized-gaussian"

    def log_prob(self, params, x):
        mean, log_scale = self.parts(params, x.dim())
        ll = discretized_gaussian_log_prob(
            x, mean, log_scale.clamp_min(self.min_log_scale), low=0.0, high=1.0
        )
        return _sum_data_dims(ll, x)


def _log_sigmoid_difference(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """log(s(hi) - s(lo)) for hi > lo, exact in both tails (no cancellation, no threshold).

    s(hi) - s(lo) = s(a) (1 - s(b) / s(a)) with (a, b) = (hi, lo) left of centre, and
    (a, b) = (-lo, -hi) right of it, where s(hi) - s(lo) = s(-lo) - s(-hi).
    """
    right = (hi + lo) > 0
    a, b = torch.where(right, -lo, hi), torch.where(right, -hi, lo)
    log_a, log_b = F.logsigmoid(a), F.logsigmoid(b)
    return log_a + torch.log(-torch.expm1(log_b - log_a))


LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls
    for cls in (
        BernoulliLikelihood,
        GaussianLikelihood,
        LearnedGaussianLikelihood,
        CategoricalLikelihood,
        DiscretizedLogisticLikelihood,
        DiscretizedGaussianLikelihood,
    )
}


def make_likelihood(name: str, **options) -> Likelihood:
    """The likelihood family registered under ``name``, with its options (e.g. sigma=0.1).

    Raises:
        ValueError: an unknown name or option.
    """
    return build(LIKELIHOODS, "likelihood", name, options)
