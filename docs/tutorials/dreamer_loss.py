"""Tutorial 5: DreamerV2's world-model loss (run by docs/hooks.py)."""

from __future__ import annotations

import torch

from elbokit.divergence import categorical_kl
from elbokit.latents import CategoricalLatent
from elbokit.objectives.balance import KLBalance


def page(out) -> str:
    g = torch.Generator().manual_seed(0)
    # straight-through categorical latents: the forward value is one-hot, the gradient that of p
    latent = CategoricalLatent(groups=4, classes=5, unimix=0.0)
    logits = torch.randn(1, 20, generator=g, requires_grad=True)
    z = latent.rsample(logits, generator=g)
    one_hot = bool(((z == 0) | (z == 1)).all()) and bool(
        (z.unflatten(-1, (4, 5)).sum(-1) == 1).all()
    )
    w = torch.randn(20, generator=g)
    (z * w).sum().backward()
    p = logits.detach().unflatten(-1, (4, 5)).softmax(-1)
    # d/dlogits of sum_k w_k p_k (the softmax's Jacobian applied to w): what straight-through gives
    wg = w.unflatten(-1, (4, 5))
    expected = (p * (wg - (p * wg).sum(-1, keepdim=True))).flatten()
    st_err = float((logits.grad[0] - expected).abs().max())
    assert one_hot and st_err < 1e-6

    # KL balancing: the same value, the gradient split alpha : 1 - alpha
    post = torch.randn(8, 32, 32, generator=g, requires_grad=True)
    prior = torch.randn(8, 32, 32, generator=g, requires_grad=True)
    bal = KLBalance(alpha=0.8)
    out_bal = bal.from_logits(post, prior)
    out_bal.loss.backward()
    g_post_bal, g_prior_bal = post.grad.clone(), prior.grad.clone()
    post.grad, prior.grad = None, None
    plain = categorical_kl(post, prior, event_dims=2).mean()
    plain.backward()
    r_prior = float((g_prior_bal / prior.grad).nanmedian())
    r_post = float((g_post_bal / post.grad).nanmedian())
    assert abs(float(out_bal.terms["kl"]) - float(plain.detach())) < 1e-5
    assert abs(r_prior - 0.8) < 1e-4 and abs(r_post - 0.2) < 1e-4

    # free nats: below the threshold the KL gets no gradient
    leaf = post.detach().clone().requires_grad_()
    free = KLBalance(alpha=0.8, free_nats=1000.0).from_logits(leaf, prior.detach())
    free.loss.backward()
    no_gradient = leaf.grad is None or float(leaf.grad.abs().max()) == 0.0
    leaf2 = post.detach().clone().requires_grad_()
    KLBalance(alpha=0.8, free_nats=0.1).from_logits(leaf2, prior.detach()).loss.backward()
    assert no_gradient and float(leaf2.grad.abs().max()) > 0
    return f"""# DreamerV2's world-model loss

DreamerV2 (Hafner et al. 2021) learns a recurrent state-space model whose stochastic state is 32
categorical variables of 32 classes, with the ELBO of a sequence: reconstruction, reward and
discount terms minus the KL from the posterior \\(q(z_t \\mid h_t, x_t)\\) to the prior
\\(p(z_t \\mid h_t)\\), with two changes to the KL.

## Straight-through categorical latents

A sample is one-hot in the forward pass; backward, it passes the gradient of the probabilities:
\\(z = \\text{{onehot}} + p - \\text{{sg}}(p)\\). For 4 groups of 5 classes, the sample is one-hot:
**{one_hot}**; the gradient of \\(\\sum_k w_k z_k\\) with respect to the logits equals the gradient
of \\(\\sum_k w_k p_k\\) (the softmax Jacobian applied to w) to {st_err:.1e}.

## KL balancing

\\[ \\mathrm{{KL}}_{{bal}} = \\alpha\\, \\mathrm{{KL}}(\\text{{sg}}(q) \\,\\|\\, p) + (1 - \\alpha)\\, \\mathrm{{KL}}(q \\,\\|\\, \\text{{sg}}(p)) \\]

has the value of the plain KL ({float(out_bal.terms["kl"]):.5f} against {float(plain.detach()):.5f} nats on a
batch of 8 x 32 x 32 random logits), but of the plain KL's gradient the prior receives a fraction
**{r_prior:.4f}** and the posterior **{r_post:.4f}** (alpha = 0.8, `elbokit.objectives.KLBalance`): the
prior is trained towards the posterior four times faster than the posterior is pulled towards
the prior.

## Free nats

`KLBalance(free_nats=F)` uses max(F, mean KL) (DreamerV2; `free_mode="elementwise"` clips each
element, DreamerV3): with F = 1000 nats, above this batch's KL, the loss is {float(free.loss.detach()):.1f}
and the posterior receives no gradient (**{no_gradient}**); with F = 0.1, below it, the gradient
is back. The KL is free up to F nats: the model is not pushed to encode less than that.
"""
