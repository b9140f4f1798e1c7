"""KL balancing routes exactly alpha of the KL's gradient to the prior and 1 - alpha to the
posterior; the two free-nats variants clip different things."""

import pytest
import torch

from elbokit.divergence import categorical_kl
from elbokit.objectives import KLBalance


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    post = torch.randn(6, 4, 5, generator=g, requires_grad=True)  # B=6, G=4 groups, K=5 classes
    prior = torch.randn(6, 4, 5, generator=g, requires_grad=True)
    return post, prior


@pytest.mark.parametrize("alpha", [0.8, 0.5, 0.0, 1.0])
def test_gradient_split_is_exactly_alpha_and_one_minus_alpha(alpha):
    post, prior = _logits(0)
    plain = categorical_kl(post, prior, event_dims=2).mean()
    g_post, g_prior = torch.autograd.grad(plain, (post, prior))
    out = KLBalance(alpha=alpha).from_logits(post, prior)
    b_post, b_prior = torch.autograd.grad(out.loss, (post, prior))
    torch.testing.assert_close(b_prior, alpha * g_prior)
    torch.testing.assert_close(b_post, (1 - alpha) * g_post)
    assert out.loss.item() == pytest.approx(plain.item(), rel=1e-6)  # same value, rerouted gradient


def test_free_nats_on_the_mean_and_elementwise_differ():
    # per-element KLs 0.5 and 3.0 with 1 free nat
    kl = torch.tensor([0.5, 3.0], requires_grad=True)
    mean_mode = KLBalance(free_nats=1.0, free_mode="mean").free(kl)
    elementwise = KLBalance(free_nats=1.0, free_mode="elementwise").free(kl)
    assert mean_mode.item() == pytest.approx(1.75)  # max(1, (0.5 + 3) / 2)
    assert elementwise.item() == pytest.approx(2.0)  # (max(1, 0.5) + max(1, 3)) / 2
    (g_mean,) = torch.autograd.grad(mean_mode, kl)
    (g_elem,) = torch.autograd.grad(elementwise, kl)
    assert g_mean.tolist() == [0.5, 0.5]  # above the floor on average: both elements trained
    assert g_elem.tolist() == [0.0, 0.5]  # the element under the floor is left alone
    # and below the floor on average, the mean variant trains nothing
    low = torch.tensor([0.2, 0.4], requires_grad=True)
    (g_low,) = torch.autograd.grad(KLBalance(free_nats=1.0).free(low), low)
    assert g_low.tolist() == [0.0, 0.0]


def test_errors():
    with pytest.raises(ValueError, match="alpha=1.5"):
        KLBalance(alpha=1.5)
    with pytest.raises(ValueError, match="free_mode='sum'"):
        KLBalance(free_mode="sum")
