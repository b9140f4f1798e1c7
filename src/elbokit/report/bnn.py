"""Figures of predictions by weight draws: the 1-D predictive band, predictions against targets,
the reliability diagram, and predictive entropy in and out of distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elbokit.evaluate.predictive import entropy, reliability
from elbokit.report._draw import save
from elbokit.report._mpl import pyplot

LABELS = {"bnn": "Bayes by backprop", "dvi": "DVI", "det": "deterministic (MAP)",
          "dropout": "MC dropout", "ensemble": "deep ensemble"}  # fmt: skip
COLORS = {"bnn": "tab:blue", "dvi": "tab:purple", "det": "tab:gray", "dropout": "tab:orange",
          "ensemble": "tab:green"}  # fmt: skip


def _spread(net, x, samples):
    """Predictive mean, total sd and epistemic sd of a regression net at x (standardized)."""
    means, sds = net.predictive(x, samples)
    means, sds = means.double(), sds.double()
    epistemic = means.var(0, unbiased=False)
    total = (epistemic + sds.square().mean(0)).sqrt()
    return means.mean(0), total, epistemic.sqrt()


def calibration(result: dict, names, path) -> Path:
    """Coverage of the central predictive intervals against their level, one line per net."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for name in names:
        levels, cover = zip(*result[name]["calibration"], strict=True)
        ax.plot(levels, cover, "o-", color=COLORS[name], label=LABELS[name])
    ax.set(xlabel="central interval's level", ylabel="test targets inside", xlim=(0, 1),
           ylim=(0, 1), title="calibration on test data")  # fmt: skip
    ax.legend(fontsize=8)
    return save(fig, path)


@torch.no_grad()
def residuals(modules: dict, data, samples: int, path) -> Path:
    """|target - predictive mean| against the predictive sd per test point, targets' units, with
    the 2-sd line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(modules), figsize=(4.5 * len(modules), 4), squeeze=False)
    y = data.y_test.double()
    for ax, (name, net) in zip(axes[0], modules.items(), strict=True):
        mean, total, _ = _spread(net, data.x_test, samples)
        sd = (total * data.y_std).numpy()
        res = ((y - mean) * data.y_std).numpy()
        inside = float((np.abs(res) <= 2 * sd).mean())
        ax.scatter(sd, res, s=6, alpha=0.6, color=COLORS[name])
        top = float(sd.max()) * 1.05
        ax.plot([0, top], [0, 2 * top], "k--", lw=1)
        ax.plot([0, top], [0, -2 * top], "k--", lw=1)
        ax.set(title=f"{LABELS[name]} ({inside:.0%} inside +-2 sd)", xlabel="predicted sd",
               ylabel="residual (target - mean)")  # fmt: skip
    return save(fig, path)


@torch.no_grad()
def band(modules: dict, data, samples: int, path) -> Path:
    """One panel per network: the data, the predictive mean, +-2 sd in total and epistemic,
    on inputs reaching beyond the data on both sides."""
    plt = pyplot()
    lo, hi = float(data.x_train.min()), float(data.x_train.max())
    pad = 0.5 * (hi - lo)
    grid = torch.linspace(lo - pad, hi + pad, 400, dtype=data.x_train.dtype)[:, None]
    fig, axes = plt.subplots(
        1, len(modules), figsize=(5 * len(modules), 4), squeeze=False, sharey=True
    )
    g = grid[:, 0].numpy()
    for ax, (name, net) in zip(axes[0], modules.items(), strict=True):
        mean, total, epi = (t.numpy() for t in _spread(net, grid, samples))
        ax.fill_between(
            g,
            mean - 2 * total,
            mean + 2 * total,
            color=COLORS[name],
            alpha=0.2,
            label="+-2 sd (total)",
        )
        ax.fill_between(
            g,
            mean - 2 * epi,
            mean + 2 * epi,
            color=COLORS[name],
            alpha=0.4,
            label="+-2 sd (epistemic)",
        )
        ax.plot(g, mean, color=COLORS[name], label="predictive mean")
        ax.plot(
            data.x_train[:, 0].numpy(),
            data.y_train.numpy(),
            "k.",
            markersize=3,
            label="training data",
        )
        ax.set(title=LABELS[name], xlabel="x")
    axes[0][0].set_ylabel("y")
    axes[0][0].legend(fontsize=8, loc="upper left")
    return save(fig, path)


@torch.no_grad()
def predictions(modules: dict, data, samples: int, path) -> Path:
    """Test targets against predictive means with 2-sd bars, in the data's units."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(modules), figsize=(4.5 * len(modules), 4.2), squeeze=False)
    y = (data.y_test.double() * data.y_std + data.y_mean).numpy()
    for ax, (name, net) in zip(axes[0], modules.items(), strict=True):
        mean, total, _ = _spread(net, data.x_test, samples)
        m = (mean * data.y_std + data.y_mean).numpy()
        ax.errorbar(
            y,
            m,
            yerr=2 * total.numpy() * data.y_std,
            fmt="o",
            markersize=3,
            alpha=0.6,
            color=COLORS[name],
        )
        lim = [min(y.min(), m.min()), max(y.max(), m.max())]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(title=LABELS[name], xlabel="target", ylabel="prediction (+-2 sd)")
    return save(fig, path)


@torch.no_grad()
def reliability_diagram(modules: dict, data, samples: int, path, bins: int = 15) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for name, net in modules.items():
        probs = net.sample_outputs(data.x_test, samples).softmax(-1).mean(0).double()
        conf, guess = probs.max(-1)
        counts, c, a, ece = reliability(conf, guess == data.y_test, bins)
        keep = (counts > 0).numpy()
        ax.plot(
            c.numpy()[keep],
            a.numpy()[keep],
            "o-",
            color=COLORS[name],
            label=f"{LABELS[name]} (ECE {ece:.3f})",
        )
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title="reliability on test data",
    )
    ax.legend(fontsize=8)
    return save(fig, path)


@torch.no_grad()
def entropy_histograms(modules: dict, data, ood: torch.Tensor, samples: int, path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(modules), figsize=(4.5 * len(modules), 3.8), squeeze=False, sharey=True
    )
    top = np.log(data.classes)
    for ax, (name, net) in zip(axes[0], modules.items(), strict=True):
        for x, label, style in (
            (data.x_test, "test (in distribution)", "tab:blue"),
            (ood, "out of distribution", "tab:red"),
        ):
            h = entropy(net.sample_outputs(x, samples).softmax(-1).mean(0)).numpy()
            ax.hist(h, bins=30, range=(0, top), alpha=0.5, color=style, label=label, density=True)
        ax.set(title=LABELS[name], xlabel="predictive entropy (nats)")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)
