"""The Gaussian latent: reparameterized samples, densities and KL against independent references."""

import pytest
import torch
from torch.distributions import Independent, Normal

from elbokit.latents import make_latent


def _params(b=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [torch.randn(b, d, generator=g), 0.5 * torch.randn(b, d, generator=g)], -1
    ).double()


def test_densities_match_torch():
    lat = make_latent("gaussian", dim=3)
    params = _params()
    mu, lv = params[:, :3], params[:, 3:]
    z = lat.rsample(params, k=4, generator=torch.Generator().manual_seed(1))
    assert z.shape == (4, 6, 3)
    torch.testing.assert_close(
        lat.log_q(params, z), Independent(Normal(mu, (0.5 * lv).exp()), 1).log_prob(z)
    )
    torch.testing.assert_close(
        lat.log_prior(z), Independent(Normal(torch.zeros(3).double(), 1.0), 1).log_prob(z)
    )


def test_analytic_kl_agrees_with_sampled_log_ratio():
    lat = make_latent("gaussian", dim=3)
    params = _params(seed=2)
    z = lat.rsample(params, k=200_000, generator=torch.Generator().manual_seed(3))
    r = lat.log_q(params, z) - lat.log_prior(z)  # (k, B)
    mean, se = r.mean(0), r.std(0) / r.shape[0] ** 0.5
    assert ((lat.kl(params) - mean).abs() <= 4 * se).all()
    torch.testing.assert_close(lat.kl_units(params).sum(-1), lat.kl(params))


def test_samples_have_the_posterior_moments_and_carry_gradients():
    lat = make_latent("gaussian", dim=2)
    params = _params(b=1, d=2, seed=4).requires_grad_()
    z = lat.rsample(params, k=100_000, generator=torch.Generator().manual_seed(5))
    mu, var = params[0, :2].detach(), params[0, 2:].detach().exp()
    assert torch.allclose(z.detach().mean((0, 1)), mu, atol=4 * (var / 1e5).sqrt().max().item())
    assert torch.allclose(z.detach().var((0, 1)), var, rtol=0.02)
    z.sum().backward()
    assert torch.isfinite(params.grad).all() and params.grad[0, 0].item() == pytest.approx(1e5)


def test_errors():
    with pytest.raises(
        ValueError, match=r"encoder output has 5 features \(shape \(2, 5\)\), expected 6"
    ):
        make_latent("gaussian", dim=3).kl(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="unknown latent 'vq'"):
        make_latent("vq")
    with pytest.raises(ValueError, match="dim >= 1"):
        make_latent("gaussian", dim=0)


# ------------------------------------------------------------------ straight-through categorical


def test_categorical_samples_follow_q():
    lat = make_latent("categorical", groups=2, classes=4, unimix=0.0)
    params = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0, 0.0, 3.0, -2.0]])
    n = 200_000
    z = lat.rsample(params, k=n, generator=torch.Generator().manual_seed(0))
    freq = z.mean((0, 1)).view(2, 4)
    q = torch.softmax(params.view(2, 4), -1)
    se = (q * (1 - q) / n).sqrt()
    assert ((freq - q).abs() <= 4 * se + 1e-6).all(), (freq, q)
    onehots = z.view(n, 2, 4)
    assert set(onehots.unique().tolist()) <= {0.0, 1.0} and (onehots.sum(-1) == 1).all()


def test_straight_through_gradient_is_the_gradient_of_the_probabilities():
    lat = make_latent("categorical", groups=3, classes=5, unimix=0.01)
    logits = torch.randn(4, 15, generator=torch.Generator().manual_seed(1), requires_grad=True)
    w = torch.randn(15, generator=torch.Generator().manual_seed(2))
    z = lat.rsample(logits, generator=torch.Generator().manual_seed(3))
    (g_st,) = torch.autograd.grad((z * w).sum(), logits)
    (g_p,) = torch.autograd.grad((lat.posterior_mean(logits) * w).sum(), logits)
    torch.testing.assert_close(g_st, g_p)


def test_unimix_floor_and_normalization():
    lat = make_latent("categorical", groups=2, classes=3, unimix=0.03)
    params = torch.tensor([[50.0, -50.0, -50.0, 0.0, 0.0, 0.0]])
    p = lat.log_probs(params).exp()
    assert (p >= 0.03 / 3 - 1e-7).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 2))
    # log q sums to one over all 9 codes, log p(z) is uniform
    codes = torch.cartesian_prod(torch.arange(3), torch.arange(3))
    z = torch.nn.functional.one_hot(codes, 3).float().flatten(-2)  # (9, 6)
    assert torch.logsumexp(lat.log_q(params.expand(9, -1), z), 0).item() == pytest.approx(
        0.0, abs=1e-5
    )
    assert torch.logsumexp(lat.log_prior(z), 0).item() == pytest.approx(0.0, abs=1e-5)


def test_categorical_analytic_kl_agrees_with_sampled_log_ratio():
    lat = make_latent("categorical", groups=4, classes=6)
    params = 2 * torch.randn(3, 24, generator=torch.Generator().manual_seed(4))
    z = lat.rsample(params, k=100_000, generator=torch.Generator().manual_seed(5))
    r = lat.log_q(params, z) - lat.log_prior(z)
    se = r.std(0) / r.shape[0] ** 0.5
    assert ((lat.kl(params) - r.mean(0)).abs() <= 4 * se).all()
    assert lat.kl_units(params).shape == (3, 4)


def test_categorical_traversal_and_errors():
    lat = make_latent("categorical", groups=2, classes=3)
    base = lat.sample_prior(1, generator=torch.Generator().manual_seed(6))[0]
    t = lat.traversal(base, unit=1, steps=3).view(3, 2, 3)
    assert torch.equal(t[:, 1], torch.eye(3)) and torch.equal(
        t[:, 0], base.view(2, 3)[0].expand(3, 3)
    )
    with pytest.raises(ValueError, match="unimix must be in"):
        make_latent("categorical", unimix=1.0)
    with pytest.raises(ValueError, match="classes >= 2"):
        make_latent("categorical", classes=1)
