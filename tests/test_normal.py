"""Univariate Normal KL: against quadrature, torch, and at float32's extremes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Normal
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit import kl, kl_quadrature, normal_kl

locs = st.floats(-5, 5)
log_scales = st.floats(-4, 4)


@given(locs, log_scales, locs, log_scales)
def test_normal_matches_quadrature(mp, lsp, mq, lsq):
    p = Normal(
        torch.tensor(mp, dtype=torch.float64), torch.tensor(math.exp(lsp), dtype=torch.float64)
    )
    q = Normal(
        torch.tensor(mq, dtype=torch.float64), torch.tensor(math.exp(lsq), dtype=torch.float64)
    )
    ref = kl_quadrature(p, q)
    assert kl(p, q).item() == pytest.approx(ref.value.item(), rel=1e-7, abs=1e-9)


def test_normal_matches_torch_away_from_extremes():
    g = torch.Generator().manual_seed(0)
    p = Normal(torch.randn(50, generator=g), torch.rand(50, generator=g) + 0.1)
    q = Normal(torch.randn(50, generator=g), torch.rand(50, generator=g) + 0.1)
    torch.testing.assert_close(kl(p, q), torch_kl(p, q), rtol=1e-5, atol=1e-6)


def test_batch_shapes_broadcast_like_torch():
    g = torch.Generator().manual_seed(1)
    p = Normal(torch.randn(3, 1, generator=g), torch.rand(3, 1, generator=g) + 0.5)
    q = Normal(torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5)
    out = kl(p, q)
    assert out.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            ref = kl_quadrature(Normal(p.loc[i, 0], p.scale[i, 0]), Normal(q.loc[j], q.scale[j]))
            assert out[i, j].item() == pytest.approx(ref.value.item(), rel=1e-5)


# The independent reference: the textbook closed form in numpy float64 (and its derivatives),
#   KL = log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2,
# exact in float64 for every float32 parameter below (s^2 of 1e-30 or 1e30 is no problem there).
def _textbook(mp, sp, mq, sq):
    mp, sp, mq, sq = (np.asarray(a, dtype=np.float64) for a in (mp, sp, mq, sq))
    return np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5


def _textbook_grad(mp, sp, mq, sq):
    """(dKL/dm_p, dKL/ds_p, dKL/dm_q, dKL/ds_q), differentiated by hand, numpy float64."""
    mp, sp, mq, sq = (np.asarray(a, dtype=np.float64) for a in (mp, sp, mq, sq))
    d = mp - mq
    return (d / sq**2, -1 / sp + sp / sq**2, -d / sq**2, 1 / sq - (sp**2 + d**2) / sq**3)


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_raw_tensor_function_and_registered_form_match_the_textbook_and_torch_in_float64():
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    # broadcast (3, 1) against (4,); scales from about e^-4 to e^4
    mp, mq = torch.randn(3, 1, generator=g, dtype=dt), 2 * torch.randn(4, generator=g, dtype=dt)
    sp = torch.exp(2 * torch.randn(3, 1, generator=g, dtype=dt))
    sq = torch.exp(2 * torch.randn(4, generator=g, dtype=dt))
    want = _textbook(mp.numpy(), sp.numpy(), mq.numpy(), sq.numpy())
    assert want.shape == (3, 4) and np.all(want > 0)
    raw = normal_kl(mp, sp, mq, sq)
    registered = kl(Normal(mp, sp), Normal(mq, sq))
    for got in (raw, registered):
        assert got.shape == (3, 4) and got.dtype == dt
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-13)
    # torch's own closed form in float64 (elbokit never writes into torch's registry)
    np.testing.assert_allclose(torch_kl(Normal(mp, sp), Normal(mq, sq)).numpy(), want, rtol=1e-12)


def test_gradients_match_finite_differences_and_the_textbook_derivatives():
    g = torch.Generator().manual_seed(2)
    dt = torch.float64
    args = [
        torch.randn(6, generator=g, dtype=dt),
        torch.rand(6, generator=g, dtype=dt) * 3 + 0.2,
        torch.randn(6, generator=g, dtype=dt),
        torch.rand(6, generator=g, dtype=dt) * 3 + 0.2,
    ]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(normal_kl, args)  # central differences
    assert torch.autograd.gradgradcheck(normal_kl, args)
    out = kl(Normal(args[0], args[1]), Normal(args[2], args[3])).sum()
    grads = torch.autograd.grad(out, args)
    for got, want in zip(grads, _textbook_grad(*map(_f64, args)), strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-13)


_F32_MAX = float(torch.finfo(torch.float32).max)


@pytest.mark.parametrize(
    ("mp", "sp", "mq", "sq"),
    [
        (0.0, 1e-30, 0.0, 1.0),  # torch float32: inf; true 68.58
        (0.0, 1.0, 0.0, 1e30),  # torch float32: inf; true 68.58
        (3.0, 1e-30, 3.0, 1e-29),  # ratio 0.1 at tiny scales: log 10 - 0.495
        (1e30, 1e30, 0.0, 1e30),
        (0.0, 1e-20, 0.0, 1e10),  # torch float32: inf; true 68.58
        (1.0, 2.0, -1.0, 1e-15),  # (4 + 4) / (2e-30) = 4e30: large but finite in float32
    ],
)
def test_float32_extreme_scales_are_finite_and_exact(mp, sp, mq, sq):
    params = [torch.tensor(v, dtype=torch.float32).requires_grad_() for v in (mp, sp, mq, sq)]
    exact = [_f64(p) for p in params]  # the float32 parameters, exactly, in float64
    want = _textbook(*exact)
    # a second reference: torch's closed form, finite in float64 at these scales
    torch64 = torch_kl(*(Normal(*map(torch.from_numpy, exact[i : i + 2])) for i in (0, 2)))
    assert float(torch64) == pytest.approx(float(want), rel=1e-12)
    out = kl(Normal(params[0], params[1]), Normal(params[2], params[3]))
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert out.item() == pytest.approx(float(want), rel=1e-5)
    grads = torch.autograd.grad(out, params)
    for got, want_grad in zip(grads, _textbook_grad(*exact), strict=True):
        want_grad = float(want_grad)
        if abs(want_grad) > _F32_MAX:  # d/ds_q of the last case: -8e45, beyond float32
            assert got.item() == math.copysign(math.inf, want_grad)
            continue
        assert torch.isfinite(got)
        # each derivative is a sum of terms up to 1/s in size; zero up to float32 rounding of those
        scale = 1 / exact[1] + 1 / exact[3] + (exact[1] + abs(exact[0] - exact[2])) / exact[3] ** 2
        assert got.item() == pytest.approx(want_grad, rel=1e-5, abs=1e-6 * float(scale))


def test_torch_really_fails_there_and_elbokit_leaves_torch_alone():
    # The reason this closed form is ours; importing elbokit must not patch torch's registry.
    p, q = Normal(0.0, 1e-30), Normal(0.0, 1.0)
    assert torch.isinf(torch_kl(p, q))
    assert kl(p, q).item() == pytest.approx(68.5776, abs=1e-4)


def test_overflow_is_inf_not_nan():
    # The true value (1e60 / 2) exceeds float32's range: inf is the honest answer.
    out = kl(Normal(0.0, 1e30), Normal(0.0, 1.0))
    assert torch.isinf(out) and out > 0


def test_equal_distributions_give_exact_zero():
    p = Normal(torch.tensor([0.3, -2.0, 1e20]), torch.tensor([1e-30, 1.0, 1e30]))
    assert torch.equal(kl(p, p), torch.zeros(3))


def test_infinite_scale_ratio_is_inf_not_nan():
    # KL(N(0, inf) || N(0, 1)) is infinite; expm1(inf) - inf would be NaN.
    assert kl(Normal(0.0, float("inf")), Normal(0.0, 1.0)).item() == math.inf
