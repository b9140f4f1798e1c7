"""Tutorial 4: likelihoods are losses (run by docs/hooks.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from elbokit.divergence import kl_discrete
from elbokit.likelihoods import GaussianLikelihood


def page(out) -> str:
    g = torch.Generator().manual_seed(0)
    # 1. maximum likelihood = minimum KL from the data's empirical distribution
    data = torch.multinomial(torch.tensor([0.5, 0.3, 0.15, 0.05]), 2000, True, generator=g)
    emp = torch.bincount(data, minlength=4).double() / len(data)
    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        nll = F.cross_entropy(logits.expand(len(data), 4), data)
        opt.zero_grad()
        nll.backward()
        opt.step()
    fitted = logits.detach().softmax(0)
    entropy = float(-(emp * emp.log()).sum())
    kl = float(kl_discrete(emp.numpy(), fitted.numpy()))
    ce = float(F.cross_entropy(logits.detach().expand(len(data), 4), data))
    assert abs(ce - (entropy + kl)) < 1e-9  # cross-entropy = H(data) + KL(data || model)
    assert float((fitted - emp).abs().max()) < 1e-4  # the minimizer is the empirical distribution

    # 2. MSE is the unit-variance Gaussian NLL up to a constant
    x, mean = torch.randn(64, 10, generator=g), torch.randn(64, 10, generator=g)
    nll_unit = -torch.distributions.Normal(mean, 1.0).log_prob(x).sum(-1).mean()
    sse = 0.5 * ((x - mean) ** 2).sum(-1).mean()
    const = 10 * 0.5 * math.log(2 * math.pi)
    assert abs(float(nll_unit) - float(sse) - const) < 1e-5
    ours = float(-GaussianLikelihood(sigma=1.0).log_prob(mean, x).mean())
    assert abs(ours - float(nll_unit)) < 1e-5

    # 3. cross-entropy is the categorical NLL
    logits2 = torch.randn(32, 5, generator=g)
    y = torch.randint(5, (32,), generator=g)
    cat_nll = -torch.distributions.Categorical(logits=logits2).log_prob(y).mean()
    assert abs(float(cat_nll) - float(F.cross_entropy(logits2, y))) < 1e-6
    extra = f" (elbokit's `GaussianLikelihood(sigma=1)`: {ours:.6f})"
    return f"""# Likelihoods are losses

## Maximum likelihood is minimum KL to the data

For data with empirical distribution \\(\\hat p\\) and a model \\(p_\\theta\\),

\\[ -\\frac1N \\sum_n \\log p_\\theta(x_n) = H(\\hat p) + \\mathrm{{KL}}(\\hat p \\,\\|\\, p_\\theta), \\]

so minimizing the negative log-likelihood (the cross-entropy) minimizes the KL from the data,
and \\(H(\\hat p)\\) is the floor. 2,000 draws from (0.5, 0.3, 0.15, 0.05), a categorical fitted by
Adam on `F.cross_entropy`: cross-entropy {ce:.6f} = entropy {entropy:.6f} + KL {kl:.2e} nats; the
fit is the empirical frequencies {", ".join(f"{v:.4f}" for v in emp.tolist())}.

## MSE is the unit-variance Gaussian negative log-likelihood

\\[ -\\log N(x; \\mu, I) = \\tfrac12 \\lVert x - \\mu \\rVert^2 + \\tfrac{{D}}{{2}} \\log 2\\pi. \\]

On 64 vectors of D = 10: NLL {float(nll_unit):.6f} nats, half the summed squared error
{float(sse):.6f}, difference {float(nll_unit) - float(sse):.6f} = 5 log 2 pi = {const:.6f}{extra}.
A learned variance turns the constant into a term the model trades against the error.

## Cross-entropy is the categorical negative log-likelihood

`F.cross_entropy(logits, y)` = {float(F.cross_entropy(logits2, y)):.6f}; the mean of
\\(-\\log \\mathrm{{Categorical}}(y; \\mathrm{{softmax}}(\\text{{logits}}))\\) = {float(cat_nll):.6f}.
"""
