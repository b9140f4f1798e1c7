"""The textbook properties, run on elbokit's own pairs."""

import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Gamma,
    Independent,
    Laplace,
    LogNormal,
    MultivariateNormal,
    Normal,
    StudentT,
)

from elbokit import asymmetry_example, check_kl_properties, kl_quadrature, triangle_counterexample

PAIRS = {
    "normal": (
        Normal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1e-3])),
        Normal(0.5, torch.tensor([2.0, 1.0])),
    ),
    "diag-mvn": (
        Independent(Normal(torch.zeros(2), torch.tensor([1.0, 0.5])), 1),
        MultivariateNormal(torch.ones(2), torch.tensor([[1.0, 0.3], [0.3, 2.0]])),
    ),
    "categorical": (
        Categorical(logits=torch.tensor([0.0, 2.0, -1.0])),
        Categorical(logits=torch.tensor([1.0, 0.0, 0.0])),
    ),
    "bernoulli": (Bernoulli(logits=torch.tensor(3.0)), Bernoulli(logits=torch.tensor(-1.0))),
    "beta (torch's form)": (Beta(2.0, 3.0), Beta(1.0, 1.0)),
    "lognormal (transformed)": (LogNormal(0.0, 1.0), LogNormal(0.5, 0.7)),
    "gamma": (Gamma(2.0, 1.0), Gamma(3.0, 2.0)),
    "student-t vs laplace (Monte Carlo)": (StudentT(5.0, 0.0, 1.0), Laplace(0.0, 1.0)),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_kl_is_non_negative_and_zero_iff_equal(name):
    p, q = PAIRS[name]
    props = check_kl_properties(p, q)
    assert props.holds, str(props)
    assert props.distinct and props.positive_on_distinct


def test_equal_arguments_are_reported_as_not_distinct():
    props = check_kl_properties(Normal(0.0, 1.0), Normal(0.0, 1.0))
    assert not props.distinct and props.positive_on_distinct is None and props.holds
    assert props.kl_pq.value.item() == 0.0


def test_asymmetry_example_values_match_quadrature():
    p, q = asymmetry_example()
    props = check_kl_properties(p, q)
    assert not props.symmetric
    # independent reference: numerical integration, and the docstring's numbers
    assert props.kl_pq.value.item() == pytest.approx(kl_quadrature(p, q).value.item(), rel=1e-6)
    assert props.kl_qp.value.item() == pytest.approx(kl_quadrature(q, p).value.item(), rel=1e-6)
    assert props.kl_pq.value.item() == pytest.approx(0.3181, abs=1e-4)
    assert props.kl_qp.value.item() == pytest.approx(0.8069, abs=1e-4)


def test_triangle_counterexample_violates_the_inequality():
    p, q, r = triangle_counterexample()
    t = check_kl_properties(p, q, r).triangle
    assert t is not None and not t.holds
    assert t.kl_pr.value.item() == pytest.approx(2.0)
    assert (t.kl_pq.value + t.kl_qr.value).item() == pytest.approx(1.0)
    # and where it does hold, it is reported as holding
    assert check_kl_properties(Normal(0.0, 1.0), Normal(0.1, 1.0), Normal(0.0, 1.1)).triangle.holds


def test_a_broken_closed_form_is_caught():
    # The check is only worth having if it fails on a wrong KL: register one that goes negative.
    from elbokit import register_kl

    class Odd(Normal):
        pass

    @register_kl(Odd, Odd)
    def _wrong(p, q):
        return (p.loc - q.loc) - 0.1  # can be negative, and non-zero for p = q

    props = check_kl_properties(Odd(0.0, 1.0), Odd(0.05, 1.0))
    assert not props.non_negative and not props.zero_on_equal and not props.holds


def test_report_reads_as_a_table():
    text = str(check_kl_properties(*triangle_counterexample()))
    assert "non-negative ............. yes" in text
    assert "triangle inequality ...... NO" in text
    assert math.isfinite(float(text.split("= ")[1].split(" ")[0]))


def test_batches_that_broadcast():
    p = Normal(torch.zeros(3), 1.0)
    q = Normal(torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 4.0]]))
    props = check_kl_properties(p, q)
    assert props.kl_pq.value.shape == (2, 3) and props.holds
    # p equals q at two elements: distinct overall, and positive where they differ
    assert props.distinct and props.positive_on_distinct
