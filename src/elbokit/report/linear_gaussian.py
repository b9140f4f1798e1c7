"""The pictures of a model whose evidence is exact: the identity log p(x) = ELBO + KL(q || p(z|x))
over training, and importance sampling converging to the exact log p(x)."""

from __future__ import annotations

from pathlib import Path

import torch

from elbokit.report._draw import save
from elbokit.report._mpl import pyplot
from elbokit.report.metrics import read_metrics, series


def identity(metrics_path, path, rtol: float = 1e-6) -> Path:
    """Left: exact log p(x), exact ELBO and ELBO + KL by step (training batches); middle: the
    KL to the true posterior (the gap); right: |ELBO + KL - log p(x)| / |log p(x)| per logged
    step on a log scale, against ``rtol``."""
    lines = read_metrics(metrics_path)
    steps, log_px = series(lines, "train/exact/log_px")
    _, elbo = series(lines, "train/exact/elbo")
    _, kl = series(lines, "train/exact/kl_posterior")
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    total = [e + k for e, k in zip(elbo, kl, strict=True)]
    a.plot(steps, log_px, "-", lw=3, alpha=0.4, label="log p(x), exact")
    a.plot(steps, total, "--", label="ELBO + KL(q || p(z|x))")
    a.plot(steps, elbo, "-", label="ELBO")
    a.set(title="log p(x) = ELBO + KL(q(z|x) || p(z|x))", xlabel="step", ylabel="nats per example")
    a.legend()
    b.plot(steps, kl, "-", color="tab:red")
    b.set(title="KL(q(z|x) || p(z|x)): the gap, exact", xlabel="step", ylabel="nats", yscale="log")
    resid = [abs(t - p) / max(abs(p), 1e-300) for t, p in zip(total, log_px, strict=True)]
    shown = [max(r, 1e-18) for r in resid]  # an exact 0 drawn at the bottom of the axis
    c.plot(steps, shown, "o", markersize=3)
    c.axhline(rtol, color="gray", ls="--", label=f"tolerance {rtol:g}")
    c.set(title="relative residual |ELBO + KL - log p(x)| / |log p(x)|", xlabel="step",
          yscale="log", ylim=(1e-18, 1e-3))  # fmt: skip
    c.legend()
    return save(fig, path)


@torch.no_grad()
def importance_sampling(
    model, x: torch.Tensor, path, seed: int = 0, ks=(1, 3, 10, 30, 100, 300, 1000)
) -> Path:
    """The mean importance-sampled log p(x) over the examples x with its standard error, for
    each k, against the exact value."""
    from elbokit.evaluate import importance_log_likelihood

    exact = model.log_marginal(x).mean().item()
    means, errs = [], []
    for k in ks:
        ll = importance_log_likelihood(model, x, k, generator=torch.Generator().manual_seed(seed))
        means.append(ll.mean)
        errs.append(ll.mean_stderr)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(ks, means, yerr=errs, fmt="o-", capsize=3, label="importance sampled, +- 1 s.e.")
    ax.axhline(exact, color="k", ls="--", label=f"exact log p(x) = {exact:.4f}")
    ax.set(xscale="log", xlabel="importance samples k", ylabel="nats per example",
           title="importance sampling against the exact evidence")  # fmt: skip
    ax.legend()
    return save(fig, path)
