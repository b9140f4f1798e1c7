"""KL between a discrete and a continuous distribution is infinite, by every method, because p
and q have no common dominating measure; a Monte Carlo estimate would compare a probability with
a density and print a finite number that means nothing."""

import json
import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Geometric,
    Normal,
    Poisson,
    Uniform,
)

import elbokit as ek
from elbokit.cli import main

MIXED = [
    (Bernoulli(0.5), Normal(0.0, 1.0)),
    (Normal(0.0, 1.0), Poisson(3.0)),
    (Poisson(torch.tensor([1.0, 2.0])), Normal(0.0, torch.tensor([[1.0], [2.0], [3.0]]))),
    (Categorical(torch.tensor([0.5, 0.5])), Uniform(0.0, 2.0)),
    (Beta(2.0, 2.0), Bernoulli(0.3)),
]


@pytest.mark.parametrize(("p", "q"), MIXED)
def test_a_discrete_and_a_continuous_distribution_are_infinitely_apart(p, q):
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    assert torch.equal(ek.kl(p, q), torch.full(shape, math.inf))
    for method in ("auto", "closed", "mc"):
        est = ek.estimate_kl(p, q, method=method)
        assert est.method == "support" and torch.isinf(est.value).all(), method
        assert est.value.shape == shape
    assert "no common dominating measure" in ek.divergence.result.mismatched_supports(p, q)
    if p.event_shape == q.event_shape == torch.Size():
        assert torch.isinf(ek.kl_quadrature(p, q).value).all()


def test_two_discrete_or_two_continuous_ones_are_not_affected():
    # Poisson against Geometric: both on the integers; the value against an explicit sum
    p, q = Poisson(3.0), Geometric(0.3)
    k = torch.arange(0, 80, dtype=torch.float64)
    lp, lq = (
        Poisson(torch.tensor(3.0, dtype=torch.float64)).log_prob(k),
        Geometric(torch.tensor(0.3, dtype=torch.float64)).log_prob(k),
    )
    exact = (lp.exp() * (lp - lq)).sum().item()
    est = ek.estimate_kl(p, q, method="mc", num_samples=20_000)
    assert est.method == "mc" and abs(est.value.item() - exact) < 4 * est.stderr.item()
    assert ek.estimate_kl(Normal(0.0, 1.0), Normal(1.0, 2.0)).method == "closed"


def test_the_command_line_prints_inf_and_strict_json(capsys):
    assert main(["kl", "bernoulli(0.5)", "normal(0, 1)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # strict JSON: no bare Infinity
    assert out["kl_pq"]["nats"] == "inf" and float(out["kl_qp"]["nats"]) == math.inf
    assert "discrete" in out["kl_pq"]["method"]
