"""Tutorial 3: the VAE, trained on mnist5k while the site is built (run by docs/hooks.py)."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import torch

from elbokit import recipes
from elbokit.evaluate import diagnose
from elbokit.report.vae import rate_distortion, samples

BETAS = (0.25, 1.0, 4.0, 16.0)


def _reparameterization():
    """d/dmu E_{z ~ N(mu, 1)}[z^2] = 2 mu, estimated from the same 1,000 draws two ways."""
    mu = torch.tensor(1.5, requires_grad=True)
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    z = mu + eps  # reparameterized: the gradient flows through the sample
    per_sample = torch.autograd.functional.jacobian(lambda m: (m + eps) ** 2, mu)
    score = (z.detach() ** 2) * (z.detach() - mu.detach())  # f(z) d/dmu log N(z; mu, 1)
    return (
        2 * mu.item(),
        per_sample.mean().item(),
        per_sample.std().item(),
        score.mean().item(),
        score.std().item(),
    )


def page(out) -> str:
    truth, rep_mean, rep_sd, sf_mean, sf_sd = _reparameterization()
    assert rep_sd < sf_sd / 3  # the reason VAEs sample by reparameterization

    kind = recipes.get_recipe("vae")
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for beta in BETAS:
            cfg = kind.preset("default", {"model": {"latent_dim": 16, "hidden": (256,)},
                                          "objective": {"beta": beta},
                                          "train": {"epochs": 6, "progress": False, "threads": 1},
                                          "evaluate": {"eval_k": 0}})  # fmt: skip
            run_dir = recipes.train(kind, cfg, out=Path(tmp) / f"beta{beta:g}", say=lambda *a: None)
            lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
            last = [x for x in lines if "test/elbo" in x][-1]
            run = recipes.open_run(run_dir)
            data = run.data()
            learner, _ = run.learner(data)
            model = learner.modules["model"]
            x_test = next(data.batches("test", 500, seed=0, epoch=-1, shuffle=False))
            with torch.no_grad():
                d = diagnose(model, x_test, generator=torch.Generator().manual_seed(0))
            points.append({"beta": beta, "rate": last["test/kl"], "distortion": last["test/recon"],
                           "elbo": last["test/elbo"], "active": d.active_units})  # fmt: skip
            if beta == 1.0:
                samples(model, out / "vae_samples.png")
    rate_distortion(points, out / "vae_rate_distortion.png")
    rates = [p["rate"] for p in points]
    dists = [p["distortion"] for p in points]
    assert all(a > b for a, b in itertools.pairwise(rates)), rates  # more beta, less rate
    assert all(a < b for a, b in itertools.pairwise(dists)), dists  # and more distortion
    assert points[-1]["active"] < points[0]["active"]  # units collapse onto the prior
    table = "\n".join(
        f"| {p['beta']:g} | {p['rate']:.2f} | {p['distortion']:.2f} | {p['elbo']:.2f} | {p['active']} of 16 |"
        for p in points
    )
    return f"""# The VAE

An encoder \\(q_\\phi(z \\mid x) = N(\\mu_\\phi(x), \\mathrm{{diag}}\\,\\sigma^2_\\phi(x))\\) amortizes inference
over every image; a decoder \\(p_\\theta(x \\mid z)\\) (Bernoulli pixels here) and the prior
\\(p(z) = N(0, I)\\) make the model. Both are trained by the ELBO,

\\[ \\mathcal{{L}} = \\underbrace{{\\mathbb{{E}}_q[\\log p_\\theta(x \\mid z)]}}_{{-\\text{{distortion}}}}
 - \\beta\\, \\underbrace{{\\mathrm{{KL}}(q_\\phi(z \\mid x) \\,\\|\\, p(z))}}_{{\\text{{rate}}}}, \\]

(\\(\\beta = 1\\): the ELBO itself), with the KL in closed form (`elbokit.vae_kl`).

## The reparameterization trick

Writing \\(z = \\mu + \\sigma \\epsilon\\), \\(\\epsilon \\sim N(0, 1)\\), moves the parameters out of the
sampling distribution, so gradients pass through the sample. For
\\(\\frac{{d}}{{d\\mu}} \\mathbb{{E}}_{{N(\\mu, 1)}}[z^2] = 2\\mu = {truth:g}\\), from the same 1,000 draws:
reparameterized {rep_mean:.3f} (per-sample sd {rep_sd:.2f}); score function
\\(f(z) \\nabla_\\mu \\log q\\) {sf_mean:.3f} (sd {sf_sd:.2f}): both unbiased, the first far less noisy.

## The KL term as a regularizer, and beta

The same VAE (MLP 784-256-16, 6 epochs on the 4,500 training digits of mnist5k), trained at four
values of \\(\\beta\\); test means in nats, active units counted by
`elbokit.evaluate.diagnose` (Cov\\(_x\\)(E\\(_q\\)[z\\(_u\\) | x]) > 0.01):

| beta | rate (KL) | distortion | ELBO | active units |
|---|---|---|---|---|
{table}

Raising \\(\\beta\\) buys a smaller rate with more distortion; at large \\(\\beta\\) units stop carrying
information and their posterior equals the prior: posterior collapse, by design.

![rate-distortion curve](img/vae_rate_distortion.png)

## Generation from the prior

Decoding \\(z \\sim N(0, I)\\) with the \\(\\beta = 1\\) model (pixel means):

![samples](img/vae_samples.png)
"""
