"""Exponential, Cauchy and Gamma pairs: finite where torch's float32 closed forms overflow,
underflow or cancel, checked against mpmath at 50 digits, against torch in float64 where torch is
accurate, and with finite gradients (float64 gradcheck)."""

import itertools
import math

import mpmath
import pytest
import torch
from torch.distributions import Cauchy, Exponential, Gamma, kl_divergence

import elbokit as ek

mpmath.mp.dps = 50
f32 = lambda *v: [torch.tensor(x, dtype=torch.float32) for x in v]  # noqa: E731


def _f(v):  # the exact float32 value a test parameter becomes
    return mpmath.mpf(float(torch.tensor(v, dtype=torch.float32)))


def exponential_ref(rp, rq):
    rp, rq = _f(rp), _f(rq)
    return mpmath.log(rp / rq) + rq / rp - 1


def cauchy_ref(lp, sp, lq, sq):
    lp, sp, lq, sq = map(_f, (lp, sp, lq, sq))
    return mpmath.log(((sp + sq) ** 2 + (lp - lq) ** 2) / (4 * sp * sq))


def gamma_ref(a1, b1, a2, b2):
    a1, b1, a2, b2 = map(_f, (a1, b1, a2, b2))
    return ((a1 - a2) * mpmath.digamma(a1) - mpmath.loggamma(a1) + mpmath.loggamma(a2)
            + a2 * (mpmath.log(b1) - mpmath.log(b2)) + a1 * (b2 - b1) / b1)  # fmt: skip


def _close(got: float, want, rel=2e-6):
    want = float(want)
    if math.isinf(want) or abs(want) > 3.4e38:  # beyond float32: inf is the right answer
        return got == math.inf
    return abs(got - want) <= rel * abs(want) + 1e-6


EXTREME = [1e-38, 1e-30, 1e-10, 1e-3, 0.7, 1.0, 3.0, 1e3, 1e10, 1e30, 1e38]


@pytest.mark.parametrize(("rp", "rq"), list(itertools.product(EXTREME, EXTREME)))
def test_exponential_against_mpmath(rp, rq):
    got = ek.kl(Exponential(*f32(rp)), Exponential(*f32(rq))).item()
    assert _close(got, exponential_ref(rp, rq)), (rp, rq, got)


@pytest.mark.parametrize("case", [(0, 1, 0, 1), (1e30, 1, 0, 1), (0, 1e30, 0, 1e-30), (3, 2, -1, 0.5),
                                  (1e-20, 1e-20, 0, 1e-20), (1e19, 1e19, -1e19, 1e-19), (0.1, 1, 0, 1)])  # fmt: skip
def test_cauchy_against_mpmath(case):
    lp, sp, lq, sq = case
    got = ek.kl(Cauchy(*f32(lp, sp)), Cauchy(*f32(lq, sq))).item()
    assert _close(got, cauchy_ref(*case)), (case, got)


@pytest.mark.parametrize("a1", [1e-30, 0.3, 1.0, 7.0, 1e6, 1e8, 1.0000001e8, 1e12, 1e30])
@pytest.mark.parametrize(("b1", "a2", "b2"), [(1.0, 1.0, 1.0), (1e30, 2.0, 1.0), (0.5, 1e6, 3.0)])
def test_gamma_against_mpmath_across_the_series_switch(a1, b1, a2, b2):
    if a1 == 1e30 and b1 == 1.0 and a2 == 1.0:
        b1 = 1e30  # Gamma(1e30, 1e30) || Gamma(1, 1): torch gave -7.6e23
    got = ek.kl(Gamma(*f32(a1, b1)), Gamma(*f32(a2, b2))).item()
    assert _close(got, gamma_ref(a1, b1, a2, b2)), (a1, b1, a2, b2, got)


def test_moderate_parameters_agree_with_torch_in_float64():
    g = torch.Generator().manual_seed(0)
    u = lambda: torch.rand(50, generator=g, dtype=torch.float64) * 5 + 0.05  # noqa: E731
    pairs = [
        (Exponential(u()), Exponential(u())),
        (Cauchy(u() - 2, u()), Cauchy(u() - 2, u())),
        (Gamma(u(), u()), Gamma(u(), u())),
    ]
    for p, q in pairs:
        torch.testing.assert_close(ek.kl(p, q), kl_divergence(p, q), rtol=1e-10, atol=1e-12)


def test_gradients_are_finite_and_right_also_at_p_equal_q():
    def params(*v):
        return [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in v]

    checks = [
        (lambda a, b: ek.kl(Exponential(a), Exponential(b)), params(0.7, 2.0)),
        (lambda a, b, c, d: ek.kl(Cauchy(a, b), Cauchy(c, d)), params(0.3, 1.2, -0.4, 0.8)),
        (lambda a, b, c, d: ek.kl(Gamma(a, b), Gamma(c, d)), params(2.5, 1.5, 0.7, 3.0)),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args)
    # at p == q the KL is 0 and so is its gradient (no NaN from 0 / 0 in a branch not taken)
    for fn, args in ((checks[0][0], params(1.3, 1.3)), (checks[1][0], params(0.2, 1.1, 0.2, 1.1)),
                     (checks[2][0], params(2.0, 3.0, 2.0, 3.0))):  # fmt: skip
        value = fn(*args)
        grads = torch.autograd.grad(value, args)
        assert abs(value.item()) < 1e-12
        assert all(torch.isfinite(gr) and abs(gr.item()) < 1e-9 for gr in grads)
