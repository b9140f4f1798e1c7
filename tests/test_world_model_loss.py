"""The world-model loss against an independent implementation of DreamerV2's equations."""

import pytest
import torch
from torch.distributions import Independent, Normal, OneHotCategorical
from torch.distributions.kl import kl_divergence

from elbokit.objectives import KLBalance
from elbokit.objectives.world_model import WorldModelLoss

B, T, C, H, W, G, K = 3, 4, 1, 6, 5, 4, 5


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = {
        "obs_mean": r(B, T, C, H, W).requires_grad_(),
        "obs": r(B, T, C, H, W),
        "reward_mean": r(B, T).requires_grad_(),
        "reward": r(B, T),
        "discount_logits": r(B, T).requires_grad_(),
        "discount": torch.full((B, T), 0.99),  # soft targets, as DreamerV2 uses them
        "posterior_logits": r(B, T, G, K).requires_grad_(),
        "prior_logits": r(B, T, G, K).requires_grad_(),
    }
    x["discount"][:, -1] = 0.0  # an episode end
    return x


def _reference(x, alpha, free, kl_scale, discount_scale):
    """DreamerV2 eq. 2 with torch.distributions and torch's own categorical KL."""
    image = -Independent(Normal(x["obs_mean"], 1.0), 3).log_prob(x["obs"]).mean()
    reward = -Normal(x["reward_mean"], 1.0).log_prob(x["reward"]).mean()
    p = torch.sigmoid(x["discount_logits"])
    g = x["discount"]
    discount = -(g * torch.log(p) + (1 - g) * torch.log1p(-p)).mean()

    def dist(logits):
        return Independent(OneHotCategorical(logits=logits), 1)

    post, prior = x["posterior_logits"], x["prior_logits"]
    dyn = kl_divergence(dist(post.detach()), dist(prior)).mean()
    rep = kl_divergence(dist(post), dist(prior.detach())).mean()
    kl = alpha * torch.clamp(dyn, min=free) + (1 - alpha) * torch.clamp(rep, min=free)
    return image + reward + discount_scale * discount + kl_scale * kl


@pytest.mark.parametrize(("alpha", "free"), [(0.8, 0.0), (0.5, 1.0), (0.8, 50.0)])
def test_loss_and_gradients_match_the_papers_equations(alpha, free):
    x = _inputs()
    scales = {"obs": 1.0, "reward": 1.0, "discount": 5.0, "kl": 0.1}
    ours = WorldModelLoss(scales, KLBalance(alpha=alpha, free_nats=free, free_mode="mean"))(**x)
    ref = _reference(x, alpha, free, kl_scale=0.1, discount_scale=5.0)
    assert ours.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    learnable = [
        x[k]
        for k in (
            "obs_mean",
            "reward_mean",
            "discount_logits",
            "posterior_logits",
            "prior_logits",
        )
    ]
    for a, b in zip(
        torch.autograd.grad(ours.loss, learnable), torch.autograd.grad(ref, learnable), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_image_nll_includes_the_gaussian_constant_and_mse_is_reported_beside_it():
    x = _inputs(1)
    out = WorldModelLoss()(**x)
    mse = (x["obs"] - x["obs_mean"]).pow(2).mean()
    pixels = C * H * W
    assert out.terms["obs_mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    assert out.terms["obs"].item() == pytest.approx(
        (0.5 * mse * pixels + 0.5 * pixels * torch.log(torch.tensor(2 * torch.pi))).item(), rel=1e-5
    )


def test_the_set_of_scales_must_equal_the_set_of_terms():
    with pytest.raises(ValueError, match=r"missing \['discount'\], unknown \['disount'\]"):
        WorldModelLoss({"obs": 1.0, "reward": 1.0, "disount": 5.0, "kl": 0.1})
    with pytest.raises(ValueError, match=r"missing \['kl'\]"):
        WorldModelLoss({"obs": 1.0, "reward": 1.0, "discount": 5.0})


def test_bad_shapes_and_targets():
    x = _inputs()
    bad = dict(x, reward_mean=x["reward_mean"][:, :2])
    with pytest.raises(ValueError, match=r"reward_mean has shape \(3, 2\)"):
        WorldModelLoss()(**bad)
    with pytest.raises(ValueError, match=r"discount targets must be in \[0, 1\]"):
        WorldModelLoss()(**dict(x, discount=x["discount"] + 0.5))
