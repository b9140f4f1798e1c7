"""estimate_kl and the Monte Carlo estimator: method reporting, standard errors, seeding."""

import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    Gumbel,
    Laplace,
    MixtureSameFamily,
    Normal,
    RelaxedOneHotCategorical,
    StudentT,
    Uniform,
)

from elbokit import estimate_kl, kl, kl_monte_carlo, kl_quadrature
from references import within_stderr


def test_auto_uses_the_closed_form_and_says_so():
    e = estimate_kl(Normal(0.0, 1.0), Normal(1.0, 2.0))
    assert e.method == "closed" and torch.equal(e.stderr, torch.zeros(()))
    assert e.value.item() == pytest.approx(math.log(2) + 2 / 8 - 0.5)
    assert "closed form" in str(e)


def test_auto_falls_back_to_monte_carlo_and_says_so():
    p, q = (
        StudentT(torch.tensor(10.0, dtype=torch.float64)),
        Normal(torch.tensor(0.0, dtype=torch.float64), 1.0),
    )
    e = estimate_kl(p, q, num_samples=100_000)
    assert e.method == "mc" and e.num_samples == 100_000
    assert "Monte Carlo, 100000 samples" in str(e)
    ref = kl_quadrature(p, q).value
    assert within_stderr(ref, e)


def test_closed_method_raises_when_there_is_none():
    from elbokit import NoClosedFormError

    with pytest.raises(NoClosedFormError):
        estimate_kl(StudentT(3.0), Normal(0.0, 1.0), method="closed")


@pytest.mark.parametrize(
    ("p", "q"),
    [
        (
            MixtureSameFamily(
                Categorical(torch.tensor([0.3, 0.7])),
                Normal(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 0.5])),
            ),
            Normal(2.0, 2.0),
        ),
        (
            Normal(2.0, 2.0),
            MixtureSameFamily(
                Categorical(torch.tensor([0.3, 0.7])),
                Normal(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 0.5])),
            ),
        ),
        (Laplace(0.0, 1.0), Gumbel(0.5, 2.0)),
        (Gumbel(0.0, 1.0), Laplace(0.3, 1.5)),
    ],
)
def test_monte_carlo_within_four_standard_errors_of_quadrature(p, q):
    e = kl_monte_carlo(p, q, num_samples=200_000, seed=7)
    assert within_stderr(kl_quadrature(p, q).value.float(), e)


def test_monte_carlo_broadcasts_batch_shapes():
    p = Normal(torch.randn(3, 1, generator=torch.Generator().manual_seed(0)), 1.0)
    q = Normal(torch.zeros(4), torch.linspace(0.5, 2.0, 4))
    e = kl_monte_carlo(p, q, num_samples=50_000)
    assert e.value.shape == e.stderr.shape == (3, 4)
    assert within_stderr(kl(p, q), e)


def test_relaxed_categoricals_are_estimable():
    t = torch.tensor(0.5)
    p = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 1.0, -1.0]))
    q = RelaxedOneHotCategorical(t, logits=torch.tensor([0.0, 0.0, 0.0]))
    e = estimate_kl(p, q, num_samples=20_000)
    assert e.method == "mc" and e.value.item() > 0 and e.stderr.item() < 0.05


def test_standard_error_shrinks_as_one_over_root_n():
    p, q = Laplace(0.0, 1.0), Normal(0.5, 1.5)
    small = kl_monte_carlo(p, q, num_samples=10_000, seed=1).stderr.item()
    large = kl_monte_carlo(p, q, num_samples=160_000, seed=1).stderr.item()
    assert large == pytest.approx(small / 4, rel=0.1)


def test_seeded_estimates_repeat_and_leave_the_global_rng_alone():
    p, q = Laplace(0.0, 1.0), Normal(0.0, 1.0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = kl_monte_carlo(p, q, num_samples=1000, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = kl_monte_carlo(p, q, num_samples=1000, seed=5)
    assert torch.equal(a.value, b.value)
    c = kl_monte_carlo(p, q, num_samples=1000, seed=6)
    assert not torch.equal(a.value, c.value)


def test_samples_outside_q_support_give_inf_not_an_error():
    e = kl_monte_carlo(Uniform(0.0, 2.0), Uniform(0.0, 1.0), num_samples=100)
    assert torch.isinf(e.value) and e.stderr.item() == 0.0
    # the other direction is finite and exact: log 2
    assert kl_monte_carlo(
        Uniform(0.0, 1.0), Uniform(0.0, 2.0), num_samples=100
    ).value.item() == pytest.approx(math.log(2))


def test_reparameterized_estimate_carries_gradients():
    loc = torch.tensor(0.7, requires_grad=True)
    e = kl_monte_carlo(Normal(loc, 1.0), Normal(0.0, 1.0), num_samples=20_000)
    e.value.backward()
    # d/dloc of loc^2 / 2 is loc; with common random numbers the estimate is exact up to noise.
    assert loc.grad.item() == pytest.approx(0.7, abs=0.05)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="method='exact'; expected one of 'auto'"):
        estimate_kl(Normal(0.0, 1.0), Normal(0.0, 1.0), method="exact")
    with pytest.raises(ValueError, match="num_samples=1"):
        kl_monte_carlo(Normal(0.0, 1.0), Normal(0.0, 1.0), num_samples=1)
    with pytest.raises(ValueError, match=r"batch shape \(3,\) and q has \(4,\)"):
        kl_monte_carlo(Normal(torch.zeros(3), 1.0), Normal(torch.zeros(4), 1.0))


def test_bits_are_nats_over_ln2():
    e = estimate_kl(Normal(0.0, 1.0), Normal(1.0, 1.0))
    assert e.bits.item() == pytest.approx(0.5 / math.log(2))


def test_standard_error_survives_a_large_mean():
    # p = N(m, s^2), q = N(0, 1): the log ratio is const + m s e + (s^2 - 1) e^2 / 2 with e ~ N(0, 1),
    # so its variance is m^2 s^2 + (1 - s^2)^2 / 2, while its mean is about m^2 / 2 = 5e11:
    # E[r^2] - E[r]^2 computed naively would lose the variance to rounding.
    m, s, n = 1e6, 1e-3, 40_000
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    e = kl_monte_carlo(Normal(f64(m), f64(s)), Normal(f64(0.0), f64(1.0)), num_samples=n)
    true_stderr = math.sqrt((m * s) ** 2 + (1 - s**2) ** 2 / 2) / math.sqrt(n)
    assert e.stderr.item() == pytest.approx(true_stderr, rel=0.03)
    assert within_stderr(kl(Normal(f64(m), f64(s)), Normal(f64(0.0), f64(1.0))), e)


def test_result_names_stay_importable_from_their_old_module():
    # KLEstimate and broadcast_pair moved to divergence.result; estimate re-exports them.
    from elbokit.divergence import estimate, result

    assert estimate.KLEstimate is result.KLEstimate
    assert estimate.broadcast_pair is result.broadcast_pair
    assert estimate.LN2 == result.LN2 == math.log(2)
    assert isinstance(kl_quadrature(Normal(0.0, 1.0), Normal(1.0, 1.0)), estimate.KLEstimate)
