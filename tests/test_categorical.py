"""Categorical, factorized categorical and Bernoulli KL: against scipy, torch, and extremes."""

import math

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical
from torch.distributions import OneHotCategoricalStraightThrough as OneHotST
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit import bernoulli_kl, categorical_kl, estimate_kl, kl
from references import within_stderr


def _scipy_categorical(p_logits, q_logits):
    p = scipy.special.softmax(np.asarray(p_logits, dtype=np.float64), -1)
    q = scipy.special.softmax(np.asarray(q_logits, dtype=np.float64), -1)
    return scipy.special.rel_entr(p, q).sum(-1)


@given(st.integers(0, 10_000), st.integers(2, 40), st.floats(0.1, 8.0))
def test_categorical_matches_scipy(seed, k, spread):
    g = torch.Generator().manual_seed(seed)
    pl, ql = spread * torch.randn(5, k, generator=g), spread * torch.randn(5, k, generator=g)
    np.testing.assert_allclose(
        categorical_kl(pl, ql).numpy(), _scipy_categorical(pl, ql), rtol=2e-5, atol=1e-6
    )


def test_categorical_matches_torch_and_monte_carlo_with_broadcasting():
    g = torch.Generator().manual_seed(0)
    p = Categorical(logits=torch.randn(3, 1, 6, generator=g))
    q = Categorical(logits=torch.randn(4, 6, generator=g))
    out = kl(p, q)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out, torch_kl(p, q))
    assert within_stderr(out, estimate_kl(p, q, method="mc", num_samples=50_000, seed=1))


def test_logits_of_1e4_are_finite_where_torch_gives_inf():
    pl = torch.tensor([1e4, -1e4], requires_grad=True)
    ql = torch.tensor([-1e4, 1e4], requires_grad=True)
    # p = (1, e^-2e4), q = (e^-2e4, 1): KL = log(1 / e^-2e4) = 2e4 exactly enough for float32.
    assert torch.isinf(torch_kl(Categorical(logits=pl), Categorical(logits=ql)))
    out = kl(Categorical(logits=pl), Categorical(logits=ql))
    assert out.item() == pytest.approx(2e4, rel=1e-6)
    out.backward()
    assert torch.isfinite(pl.grad).all() and torch.isfinite(ql.grad).all()


def test_masked_logits_give_finite_value_and_gradients():
    pl = torch.tensor([0.0, 1.0, -math.inf], requires_grad=True)
    ql = torch.tensor([0.5, 0.2, 0.1], requires_grad=True)
    out = categorical_kl(pl, ql)
    expected = _scipy_categorical([0.0, 1.0, -np.inf], [0.5, 0.2, 0.1])
    assert out.item() == pytest.approx(float(expected), rel=1e-6)
    out.backward()
    assert torch.isfinite(pl.grad).all() and torch.isfinite(ql.grad).all()
    # Gradient wrt p's logits, independently: d/dl_j KL = p_j (log p_j/q_j - KL); 0 where masked.
    p = torch.softmax(pl.detach(), -1)
    lr = torch.log_softmax(pl.detach(), -1) - torch.log_softmax(ql.detach(), -1)
    expected_grad = torch.where(p > 0, p * (lr - out.detach()), 0.0)
    torch.testing.assert_close(pl.grad, expected_grad)
    # torch's own gives NaN gradients here: the reason this closed form is ours.
    pt = pl.detach().clone().requires_grad_()
    torch_kl(Categorical(logits=pt), Categorical(logits=ql.detach())).backward()
    assert torch.isnan(pt.grad).any()


def test_mass_where_q_has_none_is_inf_never_nan():
    ninf = -math.inf
    cases = [
        ([0.0, 0.0], [0.0, ninf], math.inf),  # p > 0 = q
        ([0.0, ninf], [0.0, ninf], 0.0),  # both masked
        ([0.0, ninf], [0.0, 0.0], math.log(2.0)),  # p masked only
        ([0.0, -200.0], [0.0, ninf], math.inf),  # p's mass underflows in float32 but is > 0
    ]
    for pl, ql, expected in cases:
        out = categorical_kl(torch.tensor(pl), torch.tensor(ql)).item()
        assert not math.isnan(out)
        assert out == pytest.approx(expected, abs=1e-6)


def test_zero_probabilities_given_as_probs_are_exact():
    # torch turns probs 0 into a finite clamped logit (log eps); a zero must stay a zero.
    p = Categorical(probs=torch.tensor([0.5, 0.5]))
    q = Categorical(probs=torch.tensor([1.0, 0.0]))
    q.log_prob(torch.tensor(0))  # caches q.logits, the clamped ones, beside q.probs
    assert torch.isinf(kl(p, q))
    assert kl(q, p).item() == pytest.approx(math.log(2.0))


def test_factorized_32x32_sums_groups_and_dispatches_through_independent():
    g = torch.Generator().manual_seed(2)
    pl, ql = torch.randn(4, 32, 32, generator=g), torch.randn(4, 32, 32, generator=g)
    total = categorical_kl(pl, ql, event_dims=2)
    assert total.shape == (4,)
    np.testing.assert_allclose(total.numpy(), _scipy_categorical(pl, ql).sum(-1), rtol=1e-5)
    for cls in (OneHotCategorical, OneHotST):
        p, q = Independent(cls(logits=pl), 1), Independent(cls(logits=ql), 1)
        torch.testing.assert_close(kl(p, q), total)


def test_categorical_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"5 classes \(shape \(3, 5\)\).*4 \(shape \(3, 4\)\)"):
        categorical_kl(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="do not broadcast"):
        categorical_kl(torch.zeros(3, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="event_dims=3"):
        categorical_kl(torch.zeros(3, 5), torch.zeros(3, 5), event_dims=3)


def test_chunked_rows_equal_one_pass():
    # Large inputs are processed in row chunks; the result must not depend on the chunking.
    import elbokit.divergence.categorical as cat

    g = torch.Generator().manual_seed(3)
    pl, ql = torch.randn(300, 50, generator=g), torch.randn(300, 50, generator=g)
    whole = categorical_kl(pl, ql)
    old = cat._CHUNK_ELEMENTS
    try:
        cat._CHUNK_ELEMENTS = 7 * 50
        torch.testing.assert_close(categorical_kl(pl, ql), whole)
    finally:
        cat._CHUNK_ELEMENTS = old


# ----------------------------------------------------------------------------------- Bernoulli


def _bernoulli_float64(a, b):
    p, q = scipy.special.expit(a), scipy.special.expit(b)
    return scipy.special.rel_entr(p, q) + scipy.special.rel_entr(1 - p, 1 - q)


@given(st.floats(-15, 15), st.floats(-15, 15))
def test_bernoulli_matches_scipy(a, b):
    out = bernoulli_kl(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert out.item() == pytest.approx(float(_bernoulli_float64(a, b)), rel=1e-9, abs=1e-12)


def test_bernoulli_matches_torch_and_broadcasts():
    g = torch.Generator().manual_seed(4)
    p, q = (
        Bernoulli(logits=torch.randn(3, 1, generator=g)),
        Bernoulli(logits=torch.randn(5, generator=g)),
    )
    assert kl(p, q).shape == (3, 5)
    # torch's Bernoulli pair indexes with q's mask and fails on broadcast batch shapes; compare
    # with it on expanded copies.
    with pytest.raises(IndexError):
        torch_kl(p, q)
    torch.testing.assert_close(kl(p, q), torch_kl(p.expand((3, 5)), q.expand((3, 5))))


def test_bernoulli_extreme_logits_are_finite_where_torch_gives_inf():
    a = torch.tensor(0.0, requires_grad=True)
    b = torch.tensor(1e4, requires_grad=True)
    # KL(Bern(1/2) || Bern(s(1e4))) = 1/2 log(1/2) + 1/2 log(1/2 / s(-1e4)) = 1e4/2 - log 2.
    assert torch.isinf(torch_kl(Bernoulli(logits=a.detach()), Bernoulli(logits=b.detach())))
    out = kl(Bernoulli(logits=a), Bernoulli(logits=b))
    assert out.item() == pytest.approx(5000.0 - math.log(2.0), rel=1e-6)
    out.backward()
    assert torch.isfinite(a.grad) and torch.isfinite(b.grad)


def test_bernoulli_probabilities_zero_and_one():
    half, one, zero = (Bernoulli(probs=torch.tensor(v)) for v in (0.5, 1.0, 0.0))
    assert torch.isinf(kl(half, one)) and torch.isinf(kl(half, zero))
    assert kl(one, half).item() == pytest.approx(math.log(2.0))
    assert kl(one, one).item() == 0.0
    one.log_prob(torch.tensor(1.0))  # caches torch's clamped logit (15.9) beside probs = 1
    assert torch.isinf(kl(half, one))


@pytest.mark.parametrize("classes", [1, 2, 7, 8, 15, 16, 33])
def test_few_class_softmax_matches_scipy_values_and_torch_gradients(classes):
    """elbokit's log_softmax / softmax (their own route below 16 classes on the CPU): values
    against scipy in float64, gradients against torch's, masked classes and huge logits kept."""
    from elbokit.divergence.categorical import log_softmax, softmax

    g = torch.Generator().manual_seed(classes)
    x = (torch.randn(3, 5, classes, generator=g, dtype=torch.float64) * 20).requires_grad_()
    x.data[0, 0, 0] = 1e4  # one class dominating by far
    if classes > 2:
        x.data[1, 0, 1] = -math.inf  # one class excluded
    ref = scipy.special.log_softmax(x.detach().numpy(), -1)
    np.testing.assert_allclose(log_softmax(x).detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(softmax(x).detach().numpy(), np.exp(ref), rtol=1e-12, atol=1e-300)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64)
    for ours, theirs in ((log_softmax, torch.log_softmax), (softmax, torch.softmax)):
        (a,) = torch.autograd.grad((ours(x) * w).nan_to_num(0.0, 0.0, 0.0).sum(), x)
        (b,) = torch.autograd.grad((theirs(x, -1) * w).nan_to_num(0.0, 0.0, 0.0).sum(), x)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # float32 as training runs it
    x32 = x.detach().float().nan_to_num(neginf=-50.0)
    torch.testing.assert_close(log_softmax(x32), torch.log_softmax(x32, -1), rtol=1e-6, atol=1e-5)
