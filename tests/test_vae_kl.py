"""The VAE term from (mu, logvar): values, gradients, higher derivatives, errors."""

import pytest
import torch
from torch.distributions import Independent, Normal

from elbokit import estimate_kl, kl, vae_kl
from references import within_stderr


def _inputs(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=dtype)
    logvar = torch.randn(shape, generator=g, dtype=dtype)
    return mu, logvar


def test_matches_monte_carlo_over_a_batch():
    mu, logvar = _inputs((6, 3), seed=1)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    prior = Independent(
        Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)), 1
    )
    mc = estimate_kl(q, prior, method="mc", num_samples=100_000, seed=3)
    assert within_stderr(vae_kl(mu, logvar), mc)


def test_per_dim_sums_to_total_and_matches_textbook_formula():
    mu, logvar = _inputs((8, 5))
    per_dim = vae_kl(mu, logvar, per_dim=True)
    textbook = -0.5 * (1 + logvar - mu**2 - logvar.exp())  # Kingma & Welling, appendix B
    torch.testing.assert_close(per_dim, textbook, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vae_kl(mu, logvar), per_dim.sum(-1), rtol=1e-12, atol=1e-12)


def test_equals_distribution_form():
    mu, logvar = _inputs((4, 7), seed=2)
    std_normal = Normal(torch.zeros(()), torch.ones(()))
    ref = kl(Normal(mu, (0.5 * logvar).exp()), std_normal.expand(mu.shape)).sum(-1)
    torch.testing.assert_close(vae_kl(mu, logvar), ref, rtol=1e-10, atol=1e-10)


def test_gradients_pass_gradcheck_and_gradgradcheck():
    mu, logvar = _inputs((3, 4), seed=4)
    mu.requires_grad_()
    logvar.requires_grad_()
    assert torch.autograd.gradcheck(vae_kl, (mu, logvar))
    assert torch.autograd.gradgradcheck(vae_kl, (mu, logvar))


def test_torch_func_transforms():
    mu, logvar = _inputs((5,), seed=5)
    hess = torch.func.hessian(lambda lv: vae_kl(mu, lv))(logvar)
    torch.testing.assert_close(hess, torch.diag(0.5 * logvar.exp()))
    grad_mu = torch.func.grad(lambda m: vae_kl(m, logvar))(mu)
    torch.testing.assert_close(grad_mu, mu)
    batched = torch.func.vmap(vae_kl)(mu.expand(3, 5), logvar.expand(3, 5))
    torch.testing.assert_close(batched, vae_kl(mu, logvar).expand(3))


def test_extreme_logvar_float32_finite_values_and_gradients():
    # logvar = -60: variance 1e-26; the exact term is 0.5 * (e^-60 - 1 + 60) = 29.5.
    mu = torch.tensor([[0.0, 1e4, 0.0]], requires_grad=True)
    logvar = torch.tensor([[-60.0, 0.0, 80.0]], requires_grad=True)
    out = vae_kl(mu, logvar, per_dim=True)
    assert out[0, 0].item() == pytest.approx(29.5, rel=1e-6)
    assert out[0, 1].item() == pytest.approx(0.5e8, rel=1e-6)
    assert out[0, 2].item() == pytest.approx(
        0.5 * (torch.tensor(80.0, dtype=torch.float64).exp().item() - 81), rel=1e-5
    )
    vae_kl(mu, logvar).sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"mu has shape \(2, 3\) but logvar has shape \(2, 4\)"):
        vae_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="0-dim"):
        vae_kl(torch.tensor(0.0), torch.tensor(0.0))
