"""Tutorial 6: variational inference over parameters (run by docs/hooks.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from elbokit import recipes


def _run(kind: str, overrides: dict, tmp: Path) -> tuple[Path, dict]:
    r = recipes.get_recipe(kind)
    cfg = r.preset("default", {"train": {"progress": False}, **overrides})
    run = recipes.train(r, cfg, out=tmp / kind, say=lambda *a: None)
    return run, json.loads((run / "eval.json").read_text())


def page(out) -> str:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        coin, c = _run("coin", {}, tmp)
        shutil.copy(coin / "report" / "densities.png", out / "vi_coin.png")
        gmm, m = _run("gmm", {}, tmp)
        shutil.copy(gmm / "report" / "clusters.png", out / "vi_gmm.png")
        bnn, b = _run("bnn", {"train": {"progress": False, "epochs": 300}}, tmp)
        shutil.copy(bnn / "report" / "band.png", out / "vi_bnn_band.png")
    # a Beta q holds the conjugate posterior exactly: ELBO = log p(D), KL(q || posterior) = 0
    assert abs(c["identity_residual"]) < 1e-9 and c["gap"] < 1e-6
    assert m["converged"] and m["effective_components"] == 4 and m["ari"] > 0.95
    assert b["bnn"]["coverage_95"] >= 0.9 and b["bnn"]["sd_epistemic"] > 0
    return f"""# Variational inference over parameters

The same identity, with the parameters \\(\\theta\\) as the latent variable and the data set D as
the observation:

\\[ \\log p(D) = \\underbrace{{\\mathbb{{E}}_q[\\log p(D \\mid \\theta)] - \\mathrm{{KL}}(q(\\theta) \\,\\|\\, p(\\theta))}}_{{\\mathrm{{ELBO}}}}
 + \\mathrm{{KL}}(q(\\theta) \\,\\|\\, p(\\theta \\mid D)). \\]

## A coin, exactly (`elbokit fit coin`)

7 heads in 10 tosses, a uniform prior: the posterior is Beta({c["posterior_a"]:g}, {c["posterior_b"]:g}) and
\\(\\log p(D)\\) = {c["log_evidence_sequence"]:.10f} (this sequence of tosses). A Beta q fitted by Newton
steps on the exact ELBO reaches ELBO = {c["elbo"]:.10f}; the gap \\(\\log p(D) - \\)ELBO =
{c["gap"]:.2e} and KL(q || posterior) = {c["kl_q_posterior"]:.2e} agree to {abs(c["identity_residual"]):.1e}.
P(next toss is heads | D) = {c["predictive_heads"]:.6f}.

![prior, likelihood, posterior and q](img/vi_coin.png)

## A mixture of four Gaussians by coordinate ascent (`elbokit fit gmm`)

A Bayesian Gaussian mixture (Dirichlet weights, Normal-Wishart components) fitted by CAVI to
{m["points"]} points drawn from four Gaussians, started with more components than needed: it
converged in {m["iterations"]} iterations to ELBO {m["elbo"]:.2f} nats with
**{m["effective_components"]} effective components** (the prior prunes the rest); adjusted Rand
index against the true labels {m["ari"]:.4f}.

![the fitted mixture](img/vi_gmm.png)

## Bayes by backprop (`elbokit train bnn`)

A mean-field Gaussian q over every weight of an MLP, the ELBO over weights a minibatch at a time
(the batch's log-likelihood minus KL(q || p) / N), on 1-D data with a gap in the inputs (300
epochs here). Test log-likelihood {b["bnn"]["log_likelihood"]:.3f} per point, RMSE
{b["bnn"]["rmse"]:.3f}, 95% coverage {b["bnn"]["coverage_95"]:.3f}; the deterministic network of the same
size: {b["det"]["log_likelihood"]:.3f}, {b["det"]["rmse"]:.3f}. KL(q || p) = {b["kl"]["value"]:.1f} nats
({b["kl"]["method"]}). The predictive band widens where there is no data: the epistemic part.

![predictive band](img/vi_bnn_band.png)
"""
