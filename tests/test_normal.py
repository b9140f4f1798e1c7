"""Univariate Normal KL: against quadrature, torch, and at float32's extremes."""

import math

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


# The exact value at extreme scales, float64 by hand: log(s_q/s_p) + (s_p^2 + dm^2)/(2 s_q^2) - 1/2.
def _exact(mp, sp, mq, sq):
    return math.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5


@pytest.mark.parametrize(
    ("mp", "sp", "mq", "sq"),
    [
        (0.0, 1e-30, 0.0, 1.0),  # torch: inf; true 68.58
        (0.0, 1.0, 0.0, 1e30),  # torch: inf; true 68.58
        (3.0, 1e-30, 3.0, 1e-29),  # ratio 0.1 at tiny scales: log 10 - 0.495
        (1e30, 1e30, 0.0, 1e30),
        (0.0, 1e-20, 0.0, 1e10),
        (1.0, 2.0, -1.0, 1e-15),  # (2/1e-15)^2 / 2 = 2e30: large but finite in float32
    ],
)
def test_float32_extreme_scales_are_finite_and_exact(mp, sp, mq, sq):
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    loc_p, scale_p = t(mp).requires_grad_(), t(sp).requires_grad_()
    out = kl(Normal(loc_p, scale_p), Normal(t(mq), t(sq)))
    assert torch.isfinite(out)
    assert out.item() == pytest.approx(_exact(mp, sp, mq, sq), rel=1e-5)
    out.backward()
    assert torch.isfinite(loc_p.grad) and torch.isfinite(scale_p.grad)


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


def test_raw_tensor_function_equals_registered_form():
    args = [torch.randn(5, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    args[1], args[3] = args[1].exp(), args[3].exp()
    assert torch.equal(normal_kl(*args), kl(Normal(args[0], args[1]), Normal(args[2], args[3])))


def test_infinite_scale_ratio_is_inf_not_nan():
    # KL(N(0, inf) || N(0, 1)) is infinite; expm1(inf) - inf would be NaN.
    assert kl(Normal(0.0, float("inf")), Normal(0.0, 1.0)).item() == math.inf
