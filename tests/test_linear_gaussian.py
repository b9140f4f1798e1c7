"""log p(x) = ELBO + KL(q(z|x) || p(z|x)), made concrete on a model whose posterior is exact."""

import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from elbokit import kl
from elbokit.models import LinearGaussian
from elbokit.objectives import ELBO, IWAE
from elbokit.objectives.iwae import log_weights


def _model(seed=0, data_dim=5, latent_dim=3, sigma=0.5):
    return LinearGaussian(
        data_dim, latent_dim, sigma, generator=torch.Generator().manual_seed(seed)
    )


def _analytic_elbo(model, x):
    params = model.encode(x)
    return model.expected_log_likelihood(x) - model.latent.kl(params)


def _q(model, x):
    mu, logvar = model.latent.split(model.encode(x))
    return Independent(Normal(mu, (0.5 * logvar).exp()), 1)


def test_exact_marginal_and_posterior_against_scipy_and_bayes_rule():
    model = _model()
    x = model.sample(4, generator=torch.Generator().manual_seed(1))
    W, b, s = model.W.detach().numpy(), model.b.detach().numpy(), model.sigma.item()
    ref = scipy.stats.multivariate_normal(b, W @ W.T + s**2 * np.eye(5)).logpdf(x.numpy())
    np.testing.assert_allclose(model.log_marginal(x).detach().numpy(), ref, rtol=1e-12)
    # Bayes: log p(x|z) + log p(z) - log p(z|x) = log p(x) for any z
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lhs = model.log_likelihood(z, x) + model.latent.log_prior(z) - model.posterior(x).log_prob(z)
    torch.testing.assert_close(lhs, model.log_marginal(x))


@pytest.mark.parametrize("seed", range(4))
def test_elbo_gap_is_the_kl_to_the_true_posterior(seed):
    model = _model(seed)
    with torch.no_grad():  # an arbitrary encoder, not the posterior
        model.enc_A.normal_(generator=torch.Generator().manual_seed(seed + 10))
        model.enc_s.uniform_(-2, 1, generator=torch.Generator().manual_seed(seed + 20))
    x = model.sample(16, generator=torch.Generator().manual_seed(seed + 1))
    log_px = model.log_marginal(x)
    elbo = _analytic_elbo(model, x)
    assert (elbo <= log_px).all()
    torch.testing.assert_close(
        log_px - elbo, kl(_q(model, x), model.posterior(x)), rtol=1e-9, atol=1e-9
    )


def test_encoder_at_the_posterior_leaves_only_the_correlation_gap():
    # q = the posterior's mean and marginal variances: the gap is KL(diag || full posterior),
    # here against the dense float64 textbook formula.
    from references import dense_gaussian_kl

    model = _model(3)
    model.set_encoder_to_posterior()
    x = model.sample(16, generator=torch.Generator().manual_seed(4))
    gap = model.log_marginal(x) - _analytic_elbo(model, x)
    post, q = model.posterior(x), _q(model, x)
    ref = dense_gaussian_kl(
        q.mean[0].detach(),
        torch.diag(q.variance[0]).detach(),
        post.mean[0].detach(),
        post.covariance_matrix[0].detach(),
    )
    assert gap[0].item() == pytest.approx(ref, rel=1e-9)
    assert (gap > 0).all()


def test_sampled_elbo_objective_is_unbiased_for_the_analytic_elbo():
    model = _model(5)
    x = model.sample(1).expand(20_000, -1)
    torch.manual_seed(0)
    out = ELBO(kl_estimator="sampled")(model, x)
    e = out.per_example["elbo"]
    exact = _analytic_elbo(model, x[:1]).item()
    assert abs(e.mean().item() - exact) <= 4 * e.std().item() / len(e) ** 0.5


def test_iwae_rises_towards_log_px():
    model = _model(6)
    x = model.sample(200, generator=torch.Generator().manual_seed(7))
    log_px = model.log_marginal(x).mean().item()
    torch.manual_seed(8)
    bounds = []
    with torch.no_grad():
        for k in (1, 10, 100, 1000):
            lw = log_weights(model, x, k)
            bounds.append(IWAE(k=k).from_log_weights(lw).terms["iwae"].item())
    assert all(a < b for a, b in itertools.pairwise(bounds)), bounds
    assert bounds[-1] <= log_px + 1e-3
    assert log_px - bounds[-1] < 0.05 * (log_px - bounds[0])


def test_mutual_information_closed_form_against_posterior_kls():
    # I(x; z) = E_x[KL(p(z|x) || p(z))]: a seeded Monte Carlo over x of exact KLs.
    model = _model(9)
    x = model.sample(20_000, generator=torch.Generator().manual_seed(10))
    post = model.posterior(x)
    prior = MultivariateNormal(
        torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    )
    kls = kl(post, prior)
    assert (
        abs(kls.mean().item() - model.mutual_information().item())
        <= 4 * kls.std().item() / len(kls) ** 0.5
    )


def test_ignored_dims_carry_no_information():
    model = LinearGaussian(5, 4, ignored_dims=2, generator=torch.Generator().manual_seed(0))
    post = model.posterior(model.sample(3))
    # the posterior of an ignored dim is the prior: mean 0, variance 1
    torch.testing.assert_close(post.mean[:, 2:], torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(post.covariance_matrix[0, 2:, 2:], torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="ignored_dims=4"):
        LinearGaussian(5, 4, ignored_dims=4)
