"""Tutorial 2: log p(x) = ELBO + KL(q || p(z | x)) with every term computed (run by docs/hooks.py)."""

from __future__ import annotations

import math

import torch

from elbokit.models.linear_gaussian import LinearGaussian
from elbokit.objectives.iwae import log_weights


def page(out) -> str:
    g = torch.Generator().manual_seed(0)
    model = LinearGaussian(data_dim=5, latent_dim=2, sigma=0.5, generator=g)
    model.requires_grad_(False)
    x = model.sample(200, generator=g)
    # IWAE: E[log (1/k) sum_i w_i] rises towards log p(x) as k grows
    ks, bounds = (1, 10, 100, 1000, 10000), []
    for k in ks:
        lw = log_weights(model, x, k, generator=torch.Generator().manual_seed(k))
        bounds.append(float((torch.logsumexp(lw, 0) - math.log(k)).mean()))

    rows = []
    for label in ("its initial encoder", "the posterior's mean and diagonal variances"):
        if label.startswith("the posterior"):
            model.set_encoder_to_posterior()
        t = {k: float(v) for k, v in model.exact_terms(x).items()}
        residual = t["exact/log_px"] - t["exact/elbo"] - t["exact/kl_posterior"]
        assert abs(residual) < 1e-10, residual
        assert t["exact/elbo"] <= t["exact/log_px"]
        rows.append(f"| q = {label} | {t['exact/log_px']:.6f} | {t['exact/elbo']:.6f} | "
                    f"{t['exact/kl_posterior']:.6f} | {residual:.1e} |")  # fmt: skip
    log_px = t["exact/log_px"]
    # a bound for every k (Monte Carlo noise aside), the gap shrinking 100-fold by k = 10,000
    assert all(b <= log_px + 0.01 for b in bounds)
    assert log_px - bounds[-1] < (log_px - bounds[0]) / 100

    from elbokit.report._mpl import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(ks, bounds, "o-", label="IWAE bound (k samples)")
    ax.axhline(log_px, color="k", ls="--", label="log p(x), exact")
    ax.set(xscale="log", xlabel="k", ylabel="nats per example", title="IWAE tightens the bound")
    ax.legend()
    fig.savefig(out / "iwae_vs_k.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    table = "\n".join(
        f"| {k} | {b:.5f} | {log_px - b:.5f} |" for k, b in zip(ks, bounds, strict=True)
    )
    return f"""# The ELBO, term by term

For any \\(q(z \\mid x)\\),

\\[ \\log p(x) = \\underbrace{{\\mathbb{{E}}_q[\\log p(x \\mid z)] - \\mathrm{{KL}}(q(z \\mid x) \\,\\|\\, p(z))}}_{{\\mathrm{{ELBO}}}}
 + \\mathrm{{KL}}(q(z \\mid x) \\,\\|\\, p(z \\mid x)), \\]

so the ELBO is a lower bound and its gap is the KL to the true posterior. In probabilistic PCA
(\\(p(z) = N(0, I)\\), \\(p(x \\mid z) = N(Wz + b, \\sigma^2 I)\\)) every term is a closed form:
`LinearGaussian.exact_terms` computes the ELBO, \\(\\log p(x)\\) and the posterior KL each on its own.
Here D = 5, L = 2, sigma = 0.5, 200 points drawn from the model; means per example, in nats:

| encoder | log p(x) | ELBO | KL(q \\|\\| p(z\\|x)) | log p(x) - ELBO - KL |
|---|---|---|---|---|
{chr(10).join(rows)}

The identity holds to float64 round-off. A diagonal q cannot hold the posterior's correlation, so
the posterior's own diagonal still leaves a small gap.

## IWAE tightens the bound

\\(\\mathbb{{E}}[\\log \\frac1k \\sum_{{i=1}}^k w_i]\\), \\(w_i = p(x, z_i) / q(z_i \\mid x)\\), is a bound for every k and
rises towards \\(\\log p(x)\\) (with the initial encoder, whose ELBO is far below):

| k | IWAE bound | log p(x) - bound |
|---|---|---|
{table}

![IWAE bound against k](img/iwae_vs_k.png)
"""
