"""Transformed distributions go through elbokit's base pairs (LogNormal's stable Normal)."""

import math

import pytest
import torch
from torch.distributions import LogNormal, RelaxedOneHotCategorical
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit import estimate_kl, kl, kl_quadrature


def test_lognormal_is_stable_at_tiny_scales_and_matches_quadrature():
    assert torch.isinf(torch_kl(LogNormal(0.0, 1e-30), LogNormal(0.0, 1.0)))
    assert kl(LogNormal(0.0, 1e-30), LogNormal(0.0, 1.0)).item() == pytest.approx(
        math.log(1e30) - 0.5, rel=1e-6
    )
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    p, q = LogNormal(f64(0.2), f64(0.5)), LogNormal(f64(-0.3), f64(1.2))
    assert kl(p, q).item() == pytest.approx(kl_quadrature(p, q).value.item(), rel=1e-8)


def test_base_pairs_without_a_closed_form_fall_back_to_monte_carlo_in_auto():
    # two classes: the relaxed one-hot lives on y in (0, 1) (the second coordinate is 1 - y), so
    # the KL is a 1-D integral of torch's own densities, by scipy's quad; the density integrates
    # to 1 there, which shows it is the measure the integral needs
    from scipy.integrate import quad

    t = torch.tensor(0.5)
    p = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 1.0]))
    q = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 0.0]))
    torch.manual_seed(0)
    e = estimate_kl(p, q, num_samples=5000)
    assert e.method == "mc"

    def log_prob(d, y):
        d64 = RelaxedOneHotCategorical(t.double(), logits=d.logits.double())
        return d64.log_prob(torch.tensor([y, 1 - y], dtype=torch.float64)).item()

    mass = quad(lambda y: math.exp(log_prob(p, y)), 0, 1, limit=200)[0]
    assert mass == pytest.approx(1.0, abs=1e-8)
    exact = quad(lambda y: math.exp(log_prob(p, y)) * (log_prob(p, y) - log_prob(q, y)), 0, 1,
                 limit=200)[0]  # fmt: skip
    assert abs(e.value.item() - exact) < 4 * e.stderr.item()
    assert e.stderr.item() < 0.1 * exact  # tight enough that a wrong estimator would be seen
