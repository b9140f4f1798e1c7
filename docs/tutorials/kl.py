"""Tutorial 1: the KL divergence, computed where it is claimed (run by docs/hooks.py)."""

from __future__ import annotations

import math

import torch
from torch.distributions import MultivariateNormal, Normal

import elbokit
from elbokit.divergence import kl_discrete, kl_quadrature, triangle_counterexample


def page(out) -> str:
    # discrete: definition and properties on probability vectors
    p, q = [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]
    d_pq, d_qp = float(kl_discrete(p, q)), float(kl_discrete(q, p))
    by_hand = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert abs(d_pq - by_hand) < 1e-12 and d_pq > 0 and d_pq != d_qp
    assert float(kl_discrete(p, p)) == 0.0

    # the 1-D Gaussian closed form against quadrature
    rows, worst = [], 0.0
    for mu_p, s_p, mu_q, s_q in ((0.0, 1.0, 1.0, 2.0), (0.3, 0.5, -1.0, 1.5), (2.0, 3.0, 0.0, 1.0)):
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        a, b = Normal(f64(mu_p), f64(s_p)), Normal(f64(mu_q), f64(s_q))
        closed = float(elbokit.kl(a, b))
        formula = math.log(s_q / s_p) + (s_p**2 + (mu_p - mu_q) ** 2) / (2 * s_q**2) - 0.5
        quad = float(kl_quadrature(a, b).value)
        worst = max(worst, abs(closed - quad), abs(closed - formula))
        rows.append(
            f"| N({mu_p:g}, {s_p:g}^2) | N({mu_q:g}, {s_q:g}^2) | {closed:.10f} | {quad:.10f} |"
        )
    assert worst < 1e-8

    # asymmetry and the triangle counterexample
    a, b, c = triangle_counterexample()
    pr, pq, qr = (float(elbokit.kl(x, y)) for x, y in ((a, c), (a, b), (b, c)))
    assert pr > pq + qr

    # the figure: KL(N(mu, sigma^2) || N(0, 1)) against sigma
    from elbokit.report import plot_gaussian_kl

    plot_gaussian_kl(out / "kl_vs_sigma.png")

    # multivariate and diagonal forms agree
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    scale = torch.tensor([0.5, 1.5, 2.0], dtype=torch.float64)
    full = float(elbokit.kl(MultivariateNormal(loc, torch.diag(scale**2)),
                            MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))))  # fmt: skip
    diag = float(elbokit.kl(Normal(loc, scale), Normal(0.0, 1.0)).sum())
    assert abs(full - diag) < 1e-12

    # extreme parameters: torch's own closed form against ours at a tiny sigma
    tiny = (
        Normal(torch.tensor(0.0), torch.tensor(1e-30)),
        Normal(torch.tensor(0.0), torch.tensor(1.0)),
    )
    ours = float(elbokit.kl(*tiny))
    theirs = float(torch.distributions.kl_divergence(*tiny))
    exact = -math.log(1e-30) + 0.5 * 1e-60 - 0.5
    assert abs(ours - exact) < 1e-4 * exact

    return f"""# The KL divergence

For distributions \\(p\\) and \\(q\\) with densities (or probabilities),

\\[ \\mathrm{{KL}}(p \\,\\|\\, q) = \\mathbb{{E}}_{{x \\sim p}}\\left[\\log \\frac{{p(x)}}{{q(x)}}\\right]
 = \\sum_k p_k \\log \\frac{{p_k}}{{q_k}} \\ \\text{{(discrete)}}
 = \\int p(x) \\log \\frac{{p(x)}}{{q(x)}} \\, dx \\ \\text{{(continuous)}}, \\]

in nats. Every number on this page was computed by elbokit when the site was built.

## Discrete: non-negative, zero iff equal, not symmetric

With \\(p = (0.5, 0.3, 0.2)\\) and \\(q = (0.2, 0.5, 0.3)\\): `kl_discrete(p, q)` =
**{d_pq:.6f}** nats (the sum by hand: {by_hand:.6f}), `kl_discrete(q, p)` = **{d_qp:.6f}**, and
`kl_discrete(p, p)` = 0.

## The univariate Gaussian, derived and checked

\\(\\log \\frac{{p(x)}}{{q(x)}} = \\log\\frac{{\\sigma_q}}{{\\sigma_p}} - \\frac{{(x-\\mu_p)^2}}{{2\\sigma_p^2}}
+ \\frac{{(x-\\mu_q)^2}}{{2\\sigma_q^2}}\\); under \\(p\\), \\(\\mathbb{{E}}[(x-\\mu_p)^2] = \\sigma_p^2\\) and
\\(\\mathbb{{E}}[(x-\\mu_q)^2] = \\sigma_p^2 + (\\mu_p-\\mu_q)^2\\), so

\\[ \\mathrm{{KL}} = \\log\\frac{{\\sigma_q}}{{\\sigma_p}} + \\frac{{\\sigma_p^2 + (\\mu_p - \\mu_q)^2}}{{2\\sigma_q^2}} - \\frac12. \\]

| p | q | `elbokit.kl` (closed form) | scipy quadrature |
|---|---|---|---|
{chr(10).join(rows)}

The largest difference from quadrature and from the formula above: {worst:.1e} nats.

![KL(N(mu, sigma^2) || N(0, 1)) against sigma](img/kl_vs_sigma.png)

## Not a metric

With \\(p = N(0, 1)\\), \\(q = N(1, 1)\\), \\(r = N(2, 1)\\): KL(p || r) = {pr:.3f} > KL(p || q) +
KL(q || r) = {pq + qr:.3f}: the triangle inequality fails (for equal variances KL is half the
squared distance of the means).

## Multivariate and diagonal forms

A diagonal multivariate Gaussian against N(0, I) as a `MultivariateNormal`: {full:.12f} nats; the
sum of the three univariate KLs: {diag:.12f}.

## At extreme parameters

KL(N(0, (1e-30)^2) || N(0, 1)) is \\(-\\log 10^{{-30}} - 1/2\\) = {exact:.6f} nats. elbokit's closed
form gives {ours:.6f}; `torch.distributions.kl_divergence` gives {theirs:.6g}.
"""
