"""Probability arrays: against scipy.stats.entropy, the conventions, and every error path."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from elbokit import kl_discrete

positive = arrays(np.float64, st.integers(2, 12), elements=st.floats(0.01, 10.0))


@given(positive, st.integers(0, 2**31 - 1))
def test_matches_scipy_entropy(p_raw, seed):
    q_raw = np.random.default_rng(seed).uniform(0.01, 10.0, size=p_raw.shape)
    p, q = p_raw / p_raw.sum(), q_raw / q_raw.sum()
    assert kl_discrete(p, q) == pytest.approx(scipy.stats.entropy(p, q), rel=1e-12)
    assert kl_discrete(p, q, unit="bits") == pytest.approx(
        scipy.stats.entropy(p, q, base=2), rel=1e-12
    )
    # normalize=True is scipy's behaviour on unnormalized input
    assert kl_discrete(p_raw, q_raw, normalize=True) == pytest.approx(
        scipy.stats.entropy(p_raw, q_raw), rel=1e-12
    )


def test_axis_and_broadcasting_match_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=(3, 4))  # (3, 4, 5)
    q = rng.dirichlet(np.ones(5), size=(4,))  # (4, 5) broadcasts
    out = kl_discrete(p, q)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(
        out, scipy.stats.entropy(p, np.broadcast_to(q, p.shape), axis=-1), rtol=1e-12
    )
    np.testing.assert_allclose(
        kl_discrete(p.swapaxes(0, 2), q.T[:, :, None], axis=0), out.T, rtol=1e-12
    )


def test_zero_conventions():
    assert kl_discrete([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(
        math.log(2)
    )  # 0 log 0 = 0
    assert kl_discrete([0.5, 0.5], [1.0, 0.0]) == math.inf  # q = 0 < p
    assert kl_discrete([1.0, 0.0], [1.0, 0.0]) == 0.0


def test_torch_in_torch_out_numpy_in_numpy_out():
    out = kl_discrete(torch.tensor([0.2, 0.8]), [0.5, 0.5])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert isinstance(kl_discrete(np.array([0.2, 0.8]), [0.5, 0.5]), np.floating)


def test_float32_vectors_get_a_sum_tolerance_that_fits_them():
    p = torch.softmax(torch.randn(1000, generator=torch.Generator().manual_seed(0)), 0)
    assert kl_discrete(p, p).item() == 0.0


@pytest.mark.parametrize(
    ("p", "q", "kwargs", "message"),
    [
        ([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], {}, r"p has a negative entry -0.1 at index 1"),
        ([0.5, 0.4], [0.5, 0.5], {}, r"p sums to 0.9 along axis -1, expected 1"),
        ([[0.5, 0.5], [0.3, 0.3]], [0.5, 0.5], {}, r"p sums to 0.6 \(slice 1\)"),
        ([0.5, float("nan")], [0.5, 0.5], {}, r"p contains NaN at index 1"),
        ([0.5, 0.5], [0.5, float("inf")], {}, r"q contains inf at index 1"),
        (
            [0.5, 0.5],
            [0.2, 0.3, 0.5],
            {},
            r"p has 2 entries along axis -1 \(shape \(2,\)\) but q has 3",
        ),
        (
            [[0.5, 0.5]] * 3,
            [[0.5, 0.5]] * 2,
            {},
            r"shape \(3, 2\) and q of shape \(2, 2\) do not broadcast",
        ),
        ([0.0, 0.0], [0.5, 0.5], {"normalize": True}, r"sums to 0 along axis -1; cannot normalize"),
        ([0.5, 0.5], [0.5, 0.5], {"unit": "dits"}, r"unit='dits'"),
        (0.5, [0.5, 0.5], {}, r"p is a scalar"),
        (["a", "b"], [0.5, 0.5], {}, r"p is not an array of numbers"),
        ([0.5, 0.5], [0.5, 0.5], {"axis": 2}, r"axis=2 is out of range"),
    ],
)
def test_errors_name_the_value(p, q, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kl_discrete(p, q, **kwargs)
