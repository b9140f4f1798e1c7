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
    t = torch.tensor(0.5)
    p = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 1.0]))
    q = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 0.0]))
    e = estimate_kl(p, q, num_samples=5000)
    assert e.method == "mc" and torch.isfinite(e.value)
