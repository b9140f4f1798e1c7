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
