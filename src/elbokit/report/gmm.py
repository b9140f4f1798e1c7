"""Figures of a fitted Gaussian mixture: points coloured by responsibility with 2-sigma ellipses,
the ELBO per iteration, the mixture weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from elbokit.report._draw import save
from elbokit.report._mpl import pyplot
from elbokit.report.metrics import read_metrics, series


def _axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, basis (D, 2)): the identity for 2-D points, else the two leading principal axes."""
    centre = x.mean(0)
    if x.shape[1] <= 2:
        return torch.zeros_like(centre), torch.eye(x.shape[1], dtype=x.dtype)
    _, _, vt = torch.linalg.svd(x - centre, full_matrices=False)
    return centre, vt[:2].T


@torch.no_grad()
def clusters(model, points, path) -> Path:
    """Each point's colour is the responsibility-weighted mix of the components' colours; each
    component with an expected count >= its threshold gets the ellipse of 2 standard deviations
    of its (projected) covariance and its mean as a cross."""
    plt = pyplot()
    x = points.x
    centre, basis = _axes(x)
    xy = ((x - centre) @ basis).numpy()
    if xy.shape[1] == 1:
        xy = np.c_[xy, np.zeros(len(xy))]
    r = model.responsibilities(x).numpy()
    k = r.shape[1]
    palette = plt.get_cmap("tab10" if k <= 10 else "tab20")(np.arange(k) % (10 if k <= 10 else 20))[
        :, :3
    ]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.scatter(xy[:, 0], xy[:, 1], c=np.clip(r @ palette, 0, 1), s=6)
    counts = model.counts()
    threshold = max(1.0, 0.01 * float(counts.sum()))
    means = ((model.means() - centre) @ basis).numpy()
    covs = model.covariances()
    t = np.linspace(0, 2 * math.pi, 100)
    for j in range(k):
        if counts[j] < threshold:
            continue
        c = (
            (basis.T @ covs[j] @ basis).numpy()
            if x.shape[1] > 1
            else np.diag([float(covs[j][0, 0]), 0.0])
        )
        vals, vecs = np.linalg.eigh(c)
        ell = vecs @ (
            2 * np.sqrt(np.clip(vals, 0, None))[:, None] * np.stack([np.cos(t), np.sin(t)])
        )
        m = means[j] if means.shape[1] == 2 else np.r_[means[j], 0.0]
        ax.plot(m[0] + ell[0], m[1] + ell[1], color=palette[j], lw=2)
        ax.plot(m[0], m[1], "x", color="k", markersize=8)
    ax.set(title=f"{points.name}: responsibilities and 2-sigma ellipses",
           xlabel="x1" if x.shape[1] <= 2 else "principal axis 1",
           ylabel="x2" if x.shape[1] <= 2 else "principal axis 2")  # fmt: skip
    ax.set_aspect("equal", adjustable="datalim")
    return save(fig, path)


def elbo_curve(metrics_path, path) -> Path:
    lines = read_metrics(metrics_path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    steps, values = series(lines, "train/elbo")
    if not steps:
        steps, values = series(lines, "full/elbo")
    while len(values) > 2 and values[-1] == values[-2]:  # converged: the rest are the same value
        steps, values = steps[:-1], values[:-1]
    ax.plot(steps, values, "-")
    ax.set(xlabel="iteration (step)", ylabel="full ELBO (nats)", title="the ELBO per iteration")
    lo, hi = float(np.percentile(values, 5)), max(values)
    if len(values) > 10 and hi > lo:  # the first iterations dwarf the rest: show the last 95%
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    return save(fig, path)


@torch.no_grad()
def weights(model, path) -> Path:
    plt = pyplot()
    w = model.weights().numpy()
    counts = model.counts()
    threshold = max(1.0, 0.01 * float(counts.sum())) / float(counts.sum())
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.bar(np.arange(len(w)), w, color="tab:blue")
    ax.axhline(threshold, ls="--", color="gray")
    ax.set(xlabel="component", ylabel="E[pi_k]", title="mixture weights")
    return save(fig, path)
