"""Variational inference over a model's parameters where everything is known: conjugate models.

    log p(D) = ELBO(q) + KL(q(theta) || p(theta | D)),   ELBO(q) = E_q[log p(D | theta)] - KL(q || p)

Two models whose posterior, evidence and predictive are closed forms, and variational families
fitted to them, so that every term of the identity is checked:

- ``BetaBernoulli``: a coin's bias theta with a Beta(a, b) prior and h heads in n tosses.
  Posterior Beta(a + h, b + n - h); evidence of the sequence log B(a + h, b + n - h) - log B(a, b)
  (of the count: plus log C(n, h)); predictive P(next = heads) = (a + h) / (a + b + n).
- ``NormalMean``: the mean mu of Normal(mu, sigma^2) data with sigma known and a Normal(m0, s0^2)
  prior. Posterior Normal(m_n, s_n^2) with 1/s_n^2 = 1/s0^2 + n/sigma^2, m_n = s_n^2 (m0/s0^2 +
  sum x / sigma^2); evidence log N(x; m0 1, sigma^2 I + s0^2 1 1^T); predictive
  Normal(m_n, s_n^2 + sigma^2).

Families q(theta; phi): ``BetaQ`` (contains the coin's posterior), ``LogitNormalQ`` (a Gaussian
on logit theta: it does not, so its best ELBO stays below the evidence by KL(q || posterior)) and
``NormalQ`` (contains the Normal mean's posterior). Their ELBOs are deterministic: in closed form,
or for the logit-normal by Gauss-Hermite quadrature with enough nodes to be exact to float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Beta, Normal

from elbokit.config import ConfigError, Section, opt
from elbokit.divergence import kl

__all__ = [
    "FAMILIES",
    "BetaBernoulli",
    "BetaQ",
    "CoinConfig",
    "LogitNormalQ",
    "NormalMean",
    "NormalMeanConfig",
    "NormalQ",
]


def _log_beta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


@dataclass(frozen=True)
class BetaBernoulli:
    """h heads in n tosses of a coin with bias theta ~ Beta(a, b)."""

    heads: int
    tosses: int
    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        if not 0 <= self.heads <= self.tosses:
            raise ValueError(f"heads = {self.heads}: expected 0 <= heads <= tosses = {self.tosses}")
        if not (self.a > 0 and self.b > 0 and math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"prior Beta({self.a}, {self.b}): expected finite a, b > 0")

    def _t(self, v):
        return torch.tensor(float(v), dtype=torch.float64)

    def prior(self) -> Beta:
        return Beta(self._t(self.a), self._t(self.b))

    def posterior(self) -> Beta:
        return Beta(self._t(self.a + self.heads), self._t(self.b + self.tosses - self.heads))

    def log_evidence(self, of: str = "sequence") -> float:
        """log p(D): of the ordered ``sequence`` of tosses, or of the ``count`` of heads (the
        sequence's plus log C(n, h))."""
        h, n = self.heads, self.tosses
        seq = _log_beta(self._t(self.a + h), self._t(self.b + n - h)) - _log_beta(
            self._t(self.a), self._t(self.b)
        )
        if of == "sequence":
            return seq.item()
        if of == "count":
            return (seq + math.lgamma(n + 1) - math.lgamma(h + 1) - math.lgamma(n - h + 1)).item()
        raise ValueError(f"of = {of!r}: expected 'sequence' or 'count'")

    def predictive(self) -> float:
        """P(the next toss is heads | D) = (a + h) / (a + b + n)."""
        return (self.a + self.heads) / (self.a + self.b + self.tosses)

    def log_likelihood(self, theta: torch.Tensor) -> torch.Tensor:
        """log p(D | theta) of the sequence: h log theta + (n - h) log(1 - theta)."""
        h, n = self.heads, self.tosses
        return h * torch.log(theta) + (n - h) * torch.log1p(-theta)


@dataclass(frozen=True)
class NormalMean:
    """Data x_i ~ Normal(mu, sigma^2), sigma known, mu ~ Normal(m0, s0^2)."""

    x: tuple[float, ...]
    sigma: float = 1.0
    m0: float = 0.0
    s0: float = 1.0

    def __post_init__(self):
        if not self.x:
            raise ValueError("NormalMean needs at least one observation")
        if not all(math.isfinite(v) for v in self.x):
            i = next(i for i, v in enumerate(self.x) if not math.isfinite(v))
            raise ValueError(f"x[{i}] = {self.x[i]}: expected finite observations")
        if not (self.sigma > 0 and self.s0 > 0):
            raise ValueError(f"sigma = {self.sigma}, s0 = {self.s0}: expected both > 0")

    @property
    def data(self) -> torch.Tensor:
        return torch.tensor(self.x, dtype=torch.float64)

    def prior(self) -> Normal:
        return Normal(
            torch.tensor(self.m0, dtype=torch.float64), torch.tensor(self.s0, dtype=torch.float64)
        )

    def posterior(self) -> Normal:
        n, total = len(self.x), float(sum(self.x))
        var = 1.0 / (1.0 / self.s0**2 + n / self.sigma**2)
        mean = var * (self.m0 / self.s0**2 + total / self.sigma**2)
        return Normal(
            torch.tensor(mean, dtype=torch.float64),
            torch.tensor(math.sqrt(var), dtype=torch.float64),
        )

    def log_evidence(self) -> float:
        """log N(x; m0 1, sigma^2 I + s0^2 1 1^T), by the matrix determinant lemma and
        Sherman-Morrison (no n x n matrix)."""
        x = self.data - self.m0
        n, s2, t2 = len(x), self.sigma**2, self.s0**2
        logdet = n * math.log(s2) + math.log1p(n * t2 / s2)
        quad = (x @ x).item() / s2 - (t2 / s2**2) * x.sum().item() ** 2 / (1 + n * t2 / s2)
        return -0.5 * (n * math.log(2 * math.pi) + logdet + quad)

    def predictive(self) -> Normal:
        post = self.posterior()
        return Normal(post.loc, torch.sqrt(post.scale**2 + self.sigma**2))

    def log_likelihood(self, mu: torch.Tensor) -> torch.Tensor:
        x = self.data
        return Normal(mu.unsqueeze(-1), self.sigma).log_prob(x).sum(-1)


class BetaQ(nn.Module):
    """q(theta) = Beta(exp(u), exp(v)); its ELBO for a BetaBernoulli is in closed form:
    E_q log p(D | theta) = h (psi(a) - psi(a + b)) + (n - h) (psi(b) - psi(a + b))."""

    name = "beta"

    def __init__(self, a: float = 1.0, b: float = 1.0):
        super().__init__()
        self.log_a = nn.Parameter(torch.tensor(math.log(a), dtype=torch.float64))
        self.log_b = nn.Parameter(torch.tensor(math.log(b), dtype=torch.float64))

    def distribution(self) -> Beta:
        return Beta(self.log_a.exp(), self.log_b.exp())

    def elbo(self, model: BetaBernoulli) -> torch.Tensor:
        a, b = self.log_a.exp(), self.log_b.exp()
        h, n = model.heads, model.tosses
        expected_ll = h * (torch.digamma(a) - torch.digamma(a + b)) + (n - h) * (
            torch.digamma(b) - torch.digamma(a + b)
        )
        return expected_ll - kl(self.distribution(), model.prior())

    def kl_to(self, posterior: Beta) -> float:
        return kl(self.distribution(), posterior).item()


_GH_NODES, _GH_WEIGHTS = (torch.from_numpy(v) for v in np.polynomial.hermite_e.hermegauss(120))


class _Gaussian(nn.Module):
    """The parameters of a Normal(m, exp(log_s)^2), float64."""

    def __init__(self, m: float = 0.0, s: float = 1.0):
        super().__init__()
        self.m = nn.Parameter(torch.tensor(m, dtype=torch.float64))
        self.log_s = nn.Parameter(torch.tensor(math.log(s), dtype=torch.float64))

    def gaussian(self) -> Normal:
        return Normal(self.m, self.log_s.exp())


class LogitNormalQ(_Gaussian):
    """q: logit(theta) = z ~ Normal(m, exp(log_s)^2). The posterior of a coin is a Beta, which no
    logit-normal equals, so the best ELBO stays below the evidence by KL(q || posterior) > 0.

    ELBO = E_z[log p(D | s(z)) + log p(s(z)) + log s'(z)] + H(Normal(m, s^2)), the expectation by
    Gauss-Hermite quadrature (120 nodes: exact to float64 for these smooth integrands)."""

    name = "logit-normal"

    def log_density(self, theta: torch.Tensor) -> torch.Tensor:
        """log q(theta) of the bias itself (the change of variables from z = logit theta)."""
        z = torch.log(theta) - torch.log1p(-theta)
        return self.gaussian().log_prob(z) - torch.log(theta) - torch.log1p(-theta)

    def elbo(self, model: BetaBernoulli) -> torch.Tensor:
        z = self.m + self.log_s.exp() * _GH_NODES
        w = _GH_WEIGHTS / math.sqrt(2 * math.pi)
        # log theta and log(1 - theta) from z directly: theta itself rounds to 0 or 1 in the tails
        log_theta, log_1m = -torch.nn.functional.softplus(-z), -torch.nn.functional.softplus(z)
        h, n, a, b = model.heads, model.tosses, model.a, model.b
        log_prior = (
            (a - 1) * log_theta
            + (b - 1) * log_1m
            - math.lgamma(a)
            - math.lgamma(b)
            + math.lgamma(a + b)
        )
        integrand = (
            h * log_theta + (n - h) * log_1m  # log p(D | theta)
            + log_prior
            + log_theta + log_1m  # log |d theta / d z| = log s(z) + log s(-z)
        )  # fmt: skip
        return (w * integrand).sum() + self.gaussian().entropy()

    def kl_to(self, posterior: Beta) -> float:
        """KL(q || posterior) by adaptive quadrature in z = logit theta (scipy), independent of
        the ELBO's Gauss-Hermite rule."""
        from scipy import integrate, special, stats

        m, s = self.m.item(), self.log_s.exp().item()
        a, b = posterior.concentration1.item(), posterior.concentration0.item()

        def f(z):
            lq = stats.norm.logpdf(z, m, s)
            lth, l1m = -np.logaddexp(0, -z), -np.logaddexp(0, z)
            lp = (a - 1) * lth + (b - 1) * l1m - special.betaln(a, b) + lth + l1m
            return math.exp(lq) * (lq - lp)

        value, _ = integrate.quad(f, m - 40 * s, m + 40 * s, epsabs=1e-13, epsrel=1e-12, limit=400)
        return value


class NormalQ(_Gaussian):
    """q(mu) = Normal(m, exp(log_s)^2); its ELBO for a NormalMean is in closed form:
    E_q log N(x_i; mu, sigma^2) = -log(sigma sqrt(2 pi)) - ((x_i - m)^2 + s^2) / (2 sigma^2)."""

    name = "normal"

    def distribution(self) -> Normal:
        return self.gaussian()

    def elbo(self, model: NormalMean) -> torch.Tensor:
        x, s2 = model.data, self.log_s.exp() ** 2
        expected_ll = -len(x) * math.log(model.sigma * math.sqrt(2 * math.pi)) - (
            ((x - self.m) ** 2).sum() + len(x) * s2
        ) / (2 * model.sigma**2)
        return expected_ll - kl(self.distribution(), model.prior())

    def kl_to(self, posterior: Normal) -> float:
        return kl(self.distribution(), posterior).item()


# --- config sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CoinConfig(Section):
    """The coin's data and prior."""

    heads: int = opt(7, "heads observed", ge=0)
    tosses: int = opt(10, "tosses made", ge=0)
    prior: tuple[float, float] = opt((1.0, 1.0), "Beta prior a b of the bias (1 1: uniform)", gt=0)

    def validate(self):
        if self.heads > self.tosses:
            raise ConfigError(
                f"heads = {self.heads}: expected at most tosses = {self.tosses}",
                field="heads", value=self.heads, detail=f"expected at most --tosses {self.tosses}",
            )  # fmt: skip

    def build(self) -> BetaBernoulli:
        return BetaBernoulli(self.heads, self.tosses, *self.prior)


@dataclass(frozen=True)
class NormalMeanConfig(Section):
    """The observations and the prior of a Normal mean with known noise."""

    values: tuple[float, ...] = opt(
        (), "observations x_i (none: draw --n of them from Normal(--true-mean, --sigma^2))",
        nonempty=False,
    )  # fmt: skip
    n: int = opt(20, "observations to draw when --values is 0", ge=1)
    true_mean: float = opt(1.5, "the mean the drawn observations have")
    sigma: float = opt(1.0, "the known noise standard deviation", gt=0)
    m0: float = opt(0.0, "prior mean of mu")
    s0: float = opt(1.0, "prior standard deviation of mu", gt=0)

    def build(self, seed: int) -> NormalMean:
        values = self.values
        if not values:
            g = torch.Generator().manual_seed(seed)
            drawn = self.true_mean + self.sigma * torch.randn(
                self.n, generator=g, dtype=torch.float64
            )
            values = tuple(drawn.tolist())
        return NormalMean(values, self.sigma, self.m0, self.s0)


FAMILIES = {"beta": BetaQ, "logit-normal": LogitNormalQ, "normal": NormalQ}
