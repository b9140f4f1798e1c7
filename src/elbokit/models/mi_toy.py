"""Skills whose mutual information with the states is known: ground truth for the skill bounds.

``GaussianSkills``: K skills, uniform, skill k puts the state at N(mu_k, sigma^2 I) in 2-D (means
evenly on a circle of radius ``radius``). The Bayes posterior p(z | s) is a softmax of the
Gaussian log-densities, and

    I(S; Z) = log K - E_s[H(p(z | s))]

is computed by numerical integration over a fine 2-D grid (trapezoid rule, tails beyond 8 sigma
dropped): it is the number DIAYN's reverse bound E[log q(z | s)] + log K reaches with the
Bayes-optimal q(z | s) = p(z | s) and stays below with any other.

``UniformSkillShift``: a continuous skill z ~ U[-1, 1] moves a 1-D state by a z plus N(0, sigma^2)
noise, so I(S'; Z | S) = h(S' - S) - 0.5 log(2 pi e sigma^2), h by quadrature of the density
p(d) = [Phi((d + a) / sigma) - Phi((d - a) / sigma)] / (2 a): ground truth for DADS's forward
reward with the exact skill dynamics q(s' | s, z) = N(s + a z, sigma^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, stats

__all__ = ["GaussianSkills", "UniformSkillShift"]


@dataclass(frozen=True)
class GaussianSkills:
    skills: int = 8
    radius: float = 1.0
    sigma: float = 0.4

    def __post_init__(self):
        if self.skills < 2:
            raise ValueError(f"skills = {self.skills}; expected >= 2")
        if not (self.radius >= 0 and self.sigma > 0):
            raise ValueError(f"radius = {self.radius}, sigma = {self.sigma}; expected >= 0 and > 0")

    @property
    def means(self) -> torch.Tensor:
        angle = torch.arange(self.skills, dtype=torch.float64) * (2 * math.pi / self.skills)
        return self.radius * torch.stack([angle.cos(), angle.sin()], 1)  # (K, 2)

    def sample(self, n: int, generator: torch.Generator | None = None):
        """n pairs (s, z) from the joint: s (n, 2) float64, z (n,) long."""
        z = torch.randint(self.skills, (n,), generator=generator)
        s = self.means[z] + self.sigma * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return s, z

    def posterior_logits(self, s: torch.Tensor) -> torch.Tensor:
        """(n, K) log p(z | s) up to a constant per row: the Bayes-optimal discriminator."""
        d2 = (s.to(torch.float64)[:, None, :] - self.means[None]).square().sum(-1)
        return -d2 / (2 * self.sigma**2)

    def mutual_information(self, step: float | None = None) -> float:
        """I(S; Z) in nats by the trapezoid rule on a grid of spacing ``step`` (default sigma / 40,
        at most 1,601 points a side)."""
        half = self.radius + 8 * self.sigma
        h = step or max(self.sigma / 40, 2 * half / 1600)
        axis = torch.arange(-half, half + h / 2, h, dtype=torch.float64)
        xx, yy = torch.meshgrid(axis, axis, indexing="ij")
        s = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
        logits = self.posterior_logits(s)
        log_post = torch.log_softmax(logits, 1)
        # p(s) = (1/K) sum_k N(s; mu_k, sigma^2 I)
        log_ps = (
            torch.logsumexp(logits, 1)
            - math.log(self.skills)
            - math.log(2 * math.pi * self.sigma**2)
        )
        cond_entropy = -(log_post.exp() * log_post).sum(1)
        f = (log_ps.exp() * cond_entropy).reshape(len(axis), len(axis)).numpy()
        expected_h = integrate.trapezoid(integrate.trapezoid(f, dx=h, axis=1), dx=h)
        return math.log(self.skills) - float(expected_h)


@dataclass(frozen=True)
class UniformSkillShift:
    scale: float = 1.0  # a
    sigma: float = 0.3

    def __post_init__(self):
        if not (self.scale > 0 and self.sigma > 0):
            raise ValueError(f"scale = {self.scale}, sigma = {self.sigma}; expected both > 0")

    def sample(self, n: int, generator: torch.Generator | None = None):
        """n pairs (z, d = s' - s): z (n,) uniform on [-1, 1], d (n,) float64."""
        z = 2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1
        return z, self.scale * z + self.sigma * torch.randn(
            n, generator=generator, dtype=torch.float64
        )

    def log_q(self, d: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log N(d; a z, sigma^2), broadcast: the exact skill dynamics."""
        return torch.distributions.Normal(self.scale * z, self.sigma).log_prob(d)

    def mutual_information(self) -> float:
        a, s = self.scale, self.sigma

        def density(d):
            return (stats.norm.cdf((d + a) / s) - stats.norm.cdf((d - a) / s)) / (2 * a)

        def integrand(d):
            p = density(d)
            return -p * np.log(p) if p > 0 else 0.0

        lim = a + 12 * s
        h, _ = integrate.quad(integrand, -lim, lim, points=(-a, a), limit=200, epsabs=1e-12)
        return h - 0.5 * math.log(2 * math.pi * math.e * s**2)
