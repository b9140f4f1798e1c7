"""Multivariate Gaussian pairs: full, diagonal and low-rank covariances, every direction.

Each closed form is checked against an independent dense float64 formula and against a seeded
Monte Carlo estimate within 4 standard errors, with batch shapes that broadcast.
"""

import itertools

import numpy as np
import pytest
import torch
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal, Normal

from elbokit import estimate_kl, kl
from references import dense_gaussian_kl, within_stderr

N = 3


def _full(batch, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, N, N, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2) + 0.5 * torch.eye(N, dtype=torch.float64)
    return MultivariateNormal(torch.randn(*batch, N, generator=g, dtype=torch.float64), cov)


def _diag(batch, seed):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, N, generator=g, dtype=torch.float64)
    scale = torch.rand(*batch, N, generator=g, dtype=torch.float64) + 0.5
    return Independent(Normal(loc, scale), 1)


def _lowrank(batch, seed):
    g = torch.Generator().manual_seed(seed)
    return LowRankMultivariateNormal(
        torch.randn(*batch, N, generator=g, dtype=torch.float64),
        torch.randn(*batch, N, 2, generator=g, dtype=torch.float64),
        torch.rand(*batch, N, generator=g, dtype=torch.float64) + 0.3,
    )


FAMILIES = {"full": _full, "diag": _diag, "lowrank": _lowrank}


def _dense(d):
    """(mean, covariance) as numpy, expanded to d's batch shape."""
    mean = d.mean.detach().numpy()
    if isinstance(d, Independent):
        var = d.variance.detach().numpy()
        return mean, var[..., :, None] * np.eye(var.shape[-1])
    return mean, d.covariance_matrix.detach().numpy()


@pytest.mark.parametrize(("fp", "fq"), list(itertools.product(FAMILIES, FAMILIES)))
def test_every_pair_against_dense_formula_with_broadcasting(fp, fq):
    p = FAMILIES[fp]((2, 1), seed=1)
    q = FAMILIES[fq]((3,), seed=2)
    out = kl(p, q)
    assert out.shape == (2, 3)
    (mp, cp), (mq, cq) = _dense(p), _dense(q)
    for i, j in itertools.product(range(2), range(3)):
        ref = dense_gaussian_kl(mp[i, 0], cp[i, 0], mq[j], cq[j])
        assert out[i, j].item() == pytest.approx(ref, rel=1e-9, abs=1e-10)


@pytest.mark.parametrize(
    ("fp", "fq"), [("diag", "full"), ("full", "diag"), ("diag", "lowrank"), ("lowrank", "diag")]
)
def test_pairs_torch_lacks_against_monte_carlo(fp, fq):
    p, q = FAMILIES[fp]((4,), seed=3), FAMILIES[fq]((4,), seed=4)
    mc = estimate_kl(p, q, method="mc", num_samples=100_000, seed=5)
    assert within_stderr(kl(p, q), mc)


def test_correlation_term_is_the_only_difference_from_marginals():
    # A full p against a diagonal q pays the marginal KLs plus -0.5 log det(correlation of p).
    rho = 0.9
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    p = MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov)
    q = Independent(
        Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1
    )
    assert kl(p, q).item() == pytest.approx(-0.5 * np.log(1 - rho**2), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_singular_covariance_is_finite_with_finite_gradients(dtype):
    eps = 1e-4 if dtype == torch.float32 else 1e-10
    cov = torch.tensor([[1.0, 1 - eps], [1 - eps, 1.0]], dtype=dtype)
    loc = torch.zeros(2, dtype=dtype, requires_grad=True)
    p = MultivariateNormal(loc, cov)
    q = Independent(Normal(torch.zeros(2, dtype=dtype), torch.ones(2, dtype=dtype)), 1)
    for a, b in [(p, q), (q, p)]:
        out = kl(a, b)
        ref = dense_gaussian_kl(*_dense(a), *_dense(b))
        assert torch.isfinite(out)
        assert out.item() == pytest.approx(ref, rel=1e-3 if dtype == torch.float32 else 1e-6)
        out.backward()
        assert torch.isfinite(loc.grad).all()
        loc.grad = None


def test_event_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"event shape \(3,\).*\(2,\)"):
        kl(_diag((), 0), MultivariateNormal(torch.zeros(2), torch.eye(2)))


def test_independent_over_other_bases_reports_no_closed_form():
    from elbokit import NoClosedFormError

    p = Independent(torch.distributions.Laplace(torch.zeros(3), torch.ones(3)), 1)
    q = MultivariateNormal(torch.zeros(3), torch.eye(3))
    with pytest.raises(NoClosedFormError, match="Independent\\(Laplace\\)"):
        kl(p, q)
