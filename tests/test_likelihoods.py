"""Likelihood families against torch.distributions, scipy and their textbook identities."""

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal

from elbokit.likelihoods import make_likelihood

g = torch.Generator().manual_seed(0)
X_REAL = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)


def test_bernoulli_matches_torch_and_accepts_soft_targets():
    lik = make_likelihood("bernoulli")
    logits = torch.randn(4, 6, generator=g, dtype=torch.float64)
    x = (torch.rand(4, 6, generator=g, dtype=torch.float64) > 0.5).double()
    ref = Independent(Bernoulli(logits=logits), 1).log_prob(x)
    torch.testing.assert_close(lik.log_prob(logits, x), ref)
    soft = torch.full((4, 6), 0.99, dtype=torch.float64)  # torch's validation rejects this
    by_hand = (soft * F.logsigmoid(logits) + (1 - soft) * F.logsigmoid(-logits)).sum(-1)
    torch.testing.assert_close(lik.log_prob(logits, soft), by_hand)


def test_unit_variance_gaussian_nll_is_half_squared_error_plus_constant():
    lik = make_likelihood("gaussian")
    mean = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    d = 3 * 5
    expected = 0.5 * ((X_REAL - mean) ** 2).sum((1, 2)) + 0.5 * d * math.log(2 * math.pi)
    torch.testing.assert_close(-lik.log_prob(mean, X_REAL), expected)
    # and so MSE (mean over elements) is an affine function of it
    mse = F.mse_loss(mean, X_REAL, reduction="none").mean((1, 2))
    torch.testing.assert_close(
        -lik.log_prob(mean, X_REAL), 0.5 * d * mse + 0.5 * d * math.log(2 * math.pi)
    )


def test_gaussian_fixed_and_learned_match_torch_normal():
    mean = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    ref = Independent(Normal(mean, 0.3), 2).log_prob(X_REAL)
    torch.testing.assert_close(make_likelihood("gaussian", sigma=0.3).log_prob(mean, X_REAL), ref)
    log_sigma = 0.5 * torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    params = torch.stack([mean, log_sigma], dim=1)  # (B, 2, *E)
    ref = Independent(Normal(mean, log_sigma.exp()), 2).log_prob(X_REAL)
    torch.testing.assert_close(make_likelihood("gaussian-learned").log_prob(params, X_REAL), ref)


def test_categorical_nll_is_cross_entropy():
    lik = make_likelihood("categorical", num_classes=7)
    logits = torch.randn(4, 10, 7, generator=g)
    x = torch.randint(0, 7, (4, 10), generator=g).float()
    ce = F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none").sum(-1)
    torch.testing.assert_close(-lik.log_prob(logits, x), ce)


def test_discretized_logistic_is_a_probability_over_the_256_values():
    lik = make_likelihood("discretized-logistic")
    values = torch.arange(256, dtype=torch.float64) / 255.0  # (256,) as a batch of 1-d data
    for mean, log_scale in [(0.3, -3.0), (0.0, -1.0), (0.9, -6.5), (0.5, 0.5), (1.2, -4.0)]:
        params = torch.tensor([mean, log_scale], dtype=torch.float64).expand(256, 2)[:, :, None]
        lp = lik.log_prob(params, values[:, None])
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9)
        # and each interior bin is the logistic CDF difference, computed independently
        v = 100 / 255.0
        scale = math.exp(log_scale)
        cdf = lambda t, m=mean, s=scale: scipy.special.expit((t - m) / s)  # noqa: E731
        assert lp[100].item() == pytest.approx(
            math.log(cdf(v + 0.5 / 255) - cdf(v - 0.5 / 255)), rel=1e-6
        )


def test_discretized_logistic_far_tail_is_finite():
    lik = make_likelihood("discretized-logistic")
    params = torch.tensor([[[0.0], [-7.0]]])  # mean 0, tiny scale; observe 200/255
    lp = lik.log_prob(params, torch.tensor([[200 / 255.0]]))
    assert torch.isfinite(lp) and lp.item() < -100


def test_sample_dims_broadcast_against_data():
    lik = make_likelihood("bernoulli")
    logits = torch.randn(5, 4, 6, generator=g)  # (k, B, D)
    x = (torch.rand(4, 6, generator=g) > 0.5).float()
    out = lik.log_prob(logits, x)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out[2], lik.log_prob(logits[2], x))


@pytest.mark.parametrize(
    ("name", "opts", "x", "message"),
    [
        (
            "bernoulli",
            {},
            torch.tensor([[0.0, 1.5]]),
            r"value 1.5 at index \(0, 1\); the bernoulli likelihood needs values in \[0, 1\]",
        ),
        ("gaussian", {}, torch.tensor([[0.0, float("nan")]]), r"contains NaN at index \(0, 1\)"),
        (
            "categorical",
            {"num_classes": 4},
            torch.tensor([[0.0, 2.5]]),
            r"value 2.5 .* needs integers",
        ),
        (
            "categorical",
            {"num_classes": 4},
            torch.tensor([[0.0, 4.0]]),
            r"needs values in \[0, 3\]",
        ),
        ("discretized-logistic", {}, torch.tensor([[0.5]]), r"not v / 255"),
    ],
)
def test_check_data_names_the_bad_value(name, opts, x, message):
    with pytest.raises(ValueError, match=message):
        make_likelihood(name, **opts).check_data(x)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="likelihood 'gaussian'"):
        make_likelihood("gaussian", scale=2.0)
    with pytest.raises(ValueError, match="finite sigma > 0"):
        make_likelihood("gaussian", sigma=0.0)


def test_check_shapes_names_what_the_decoder_must_output():
    lik = make_likelihood("gaussian-learned")
    with pytest.raises(
        ValueError, match=r"decoder output has shape \(4, 3, 5\).*needs \(\.\.\., 4, 2, 3, 5\)"
    ):
        lik.check_shapes(torch.zeros(4, 3, 5), X_REAL)
    lik.check_shapes(torch.zeros(4, 2, 3, 5), X_REAL)
    assert np.all(np.asarray(lik.param_shape((3, 5))) == (2, 3, 5))
