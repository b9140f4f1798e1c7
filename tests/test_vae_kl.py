"""The VAE term from (mu, logvar): values, gradients, higher derivatives, errors."""

import pytest
import torch
from torch.distributions import Independent, Normal
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit import estimate_kl, vae_kl
from references import dense_gaussian_kl, within_stderr


def _inputs(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=dtype)
    logvar = torch.randn(shape, generator=g, dtype=dtype)
    return mu, logvar


def _torch_reference(mu, logvar):
    """torch's own closed form of KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the last
    dim: an independent reference, differentiable (and usable under torch.func) in float64."""
    q = Normal(mu, torch.exp(0.5 * logvar), validate_args=False)
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu), validate_args=False)
    return torch_kl(
        Independent(q, 1, validate_args=False), Independent(prior, 1, validate_args=False)
    )


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


def test_matches_torch_and_the_dense_multivariate_formula_in_float64():
    mu, logvar = _inputs((4, 7), seed=2)
    got = vae_kl(mu, logvar)
    assert got.shape == (4,) and got.dtype == torch.float64
    torch.testing.assert_close(got, _torch_reference(mu, logvar), rtol=1e-12, atol=1e-12)
    eye = torch.eye(7, dtype=torch.float64)
    for i in range(4):
        dense = dense_gaussian_kl(mu[i], torch.diag(logvar[i].exp()), torch.zeros(7), eye)
        assert got[i].item() == pytest.approx(dense, rel=1e-10)


def test_gradients_pass_gradcheck_and_match_torchs_closed_form():
    mu, logvar = _inputs((3, 4), seed=4)
    mu.requires_grad_()
    logvar.requires_grad_()
    assert torch.autograd.gradcheck(vae_kl, (mu, logvar))  # against central differences
    assert torch.autograd.gradgradcheck(vae_kl, (mu, logvar))
    # first and second derivatives against autograd of torch's closed form, float64
    w = torch.linspace(0.5, 2.0, 3, dtype=torch.float64)  # distinct weights per batch row
    v = _inputs((3, 4), seed=6)  # a direction for the Hessian-vector product
    grads, hvps = [], []
    for fn in (vae_kl, _torch_reference):
        g = torch.autograd.grad((w * fn(mu, logvar)).sum(), (mu, logvar), create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
        grads.append(g)
        hvps.append(torch.autograd.grad(dot, (mu, logvar)))
    for got, want in zip(grads[0] + hvps[0], grads[1] + hvps[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_torch_func_transforms():
    mu, logvar = _inputs((5,), seed=5)
    # d^2/dlv^2 of 0.5 (e^lv - 1 - lv) = 0.5 e^lv; d/dmu of 0.5 mu^2 = mu (Kingma & Welling, App. B)
    hess = torch.func.hessian(lambda lv: vae_kl(mu, lv))(logvar)
    torch.testing.assert_close(hess, torch.diag(0.5 * logvar.exp()))
    grad_mu = torch.func.grad(lambda m: vae_kl(m, logvar))(mu)
    torch.testing.assert_close(grad_mu, mu)
    grad_lv = torch.func.grad(lambda lv: vae_kl(mu, lv))(logvar)
    torch.testing.assert_close(grad_lv, 0.5 * torch.expm1(logvar))
    # forward mode (the fused function's own jvp) against torch's closed form
    tangents = _inputs((5,), seed=7)
    _, jvp = torch.func.jvp(vae_kl, (mu, logvar), tangents)
    _, want = torch.func.jvp(_torch_reference, (mu, logvar), tangents)
    torch.testing.assert_close(jvp, want, rtol=1e-12, atol=1e-12)
    # vmap over a batch of distinct rows, against torch's value of each row
    mus, logvars = _inputs((3, 5), seed=8)
    batched = torch.func.vmap(vae_kl)(mus, logvars)
    torch.testing.assert_close(batched, _torch_reference(mus, logvars), rtol=1e-12, atol=1e-12)


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
    # d/dmu = mu, d/dlogvar = 0.5 (e^lv - 1), by hand in float64: e^80 = 5.5e34 fits in float32
    lv = logvar.detach().double()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()
    torch.testing.assert_close(mu.grad.double(), mu.detach().double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(logvar.grad.double(), 0.5 * torch.expm1(lv), rtol=1e-5, atol=1e-30)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"mu has shape \(2, 3\) but logvar has shape \(2, 4\)"):
        vae_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="0-dim"):
        vae_kl(torch.tensor(0.0), torch.tensor(0.0))
