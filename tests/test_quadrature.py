"""The quadrature reference: against closed forms derived by hand, batches, errors, warnings."""

import math

import pytest
import torch
from torch.distributions import (
    Beta,
    Cauchy,
    Exponential,
    Laplace,
    MultivariateNormal,
    Normal,
    Poisson,
)

from elbokit import kl_quadrature


def test_exponential_pair_against_hand_derivation():
    # KL(Exp(a) || Exp(b)) = log(a / b) + b / a - 1
    a, b = 2.0, 0.5
    e = kl_quadrature(Exponential(a), Exponential(b))
    assert e.method == "quadrature"
    assert e.value.item() == pytest.approx(math.log(a / b) + b / a - 1, rel=1e-10)
    assert e.abserr.item() < 1e-8


def test_laplace_pair_against_hand_derivation():
    # KL(Laplace(m1, b1) || Laplace(m2, b2)) = log(b2/b1) + |m1-m2|/b2 + b1/b2 exp(-|m1-m2|/b1) - 1
    m1, b1, m2, b2 = 0.3, 0.7, -1.0, 2.0
    d = abs(m1 - m2)
    exact = math.log(b2 / b1) + d / b2 + b1 / b2 * math.exp(-d / b1) - 1
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731  (0.3 is not exact in float32)
    value = kl_quadrature(Laplace(f64(m1), f64(b1)), Laplace(f64(m2), f64(b2))).value.item()
    assert value == pytest.approx(exact, rel=1e-10)


def test_batches_broadcast_and_float32_extremes_are_integrated_in_float64():
    p = Normal(torch.tensor([[0.0], [1.0]]), torch.tensor([[1e-30], [1.0]]))
    q = Normal(torch.tensor([0.0, 0.0, 2.0]), torch.tensor([1.0, 1e30, 3.0]))
    e = kl_quadrature(p, q)
    assert e.value.shape == (2, 3) and e.value.dtype == torch.float64
    exact = lambda mp, sp, mq, sq: math.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5  # noqa: E731
    assert e.value[0, 0].item() == pytest.approx(exact(0, 1e-30, 0, 1), rel=1e-9)
    assert e.value[0, 1].item() == pytest.approx(exact(0, 1e-30, 0, 1e30), rel=1e-9)
    assert e.value[1, 2].item() == pytest.approx(exact(1, 1, 2, 3), rel=1e-9)


def test_mismatched_support_is_inf():
    assert math.isinf(kl_quadrature(Normal(0.5, 1.0), Beta(2.0, 2.0)).value.item())


def test_divergent_integral_warns_instead_of_staying_silent():
    # KL(Cauchy || Laplace) is infinite (E|x| diverges under a Cauchy); quad cannot converge.
    with pytest.warns(RuntimeWarning, match="did not converge"):
        kl_quadrature(Cauchy(0.0, 1.0), Laplace(0.0, 1.0))


def test_refuses_what_it_cannot_integrate():
    with pytest.raises(ValueError, match="discrete"):
        kl_quadrature(Poisson(3.0), Poisson(4.0))
    with pytest.raises(ValueError, match=r"event shape \(2,\)"):
        kl_quadrature(
            MultivariateNormal(torch.zeros(2), torch.eye(2)),
            MultivariateNormal(torch.zeros(2), torch.eye(2)),
        )
