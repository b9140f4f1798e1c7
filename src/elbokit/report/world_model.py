"""The pictures of a world model: imagination beside the truth, errors per step, latent usage,
and the balanced KL over training."""

from __future__ import annotations

from pathlib import Path

import torch

from elbokit.files import atomic_path
from elbokit.report._draw import grid, save, show
from elbokit.report._mpl import pyplot
from elbokit.report.metrics import read_metrics, series


def _strip_rows(truth: torch.Tensor, imagined: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) truth and (N, horizon, C, H, W) imagination -> (2N * T, C, H, W) rows:
    truth, then imagination with blank frames under the context."""
    t = truth.shape[1]
    blank = torch.ones_like(truth[:, : t - imagined.shape[1]])
    rows = torch.stack([truth, torch.cat([blank, imagined], 1)], 1)  # (N, 2, T, ...)
    return rows.flatten(0, 2)


def prediction_strip(truth: torch.Tensor, imagined: torch.Tensor, path) -> Path:
    """Each sequence as two rows: the true frames, and under them what the model imagined after
    the context (the blank frames) under the same actions."""
    n, t = truth.shape[:2]
    context = t - imagined.shape[1]
    plt = pyplot()
    h, w = truth.shape[-2:]
    fig, ax = plt.subplots(figsize=(min(24, 0.5 + t * w / 40), 0.4 + 2 * n * h / 40))
    show(ax, _strip_rows(truth, imagined), 2 * n,
          f"truth (upper rows) and imagination (lower rows): {context} context frames, then {t - context} steps open loop")  # fmt: skip
    return save(fig, path)


def prediction_gif(truth: torch.Tensor, imagined: torch.Tensor, path, scale: int = 2) -> Path:
    """An animated GIF: per imagined step, the true frames above the imagined ones, one column
    per sequence. Needs Pillow (a matplotlib dependency)."""
    from PIL import Image

    context = truth.shape[1] - imagined.shape[1]
    frames = []
    for k in range(imagined.shape[1]):
        pair = torch.stack([truth[:, context + k], imagined[:, k]])  # (2, N, C, H, W)
        g = grid(pair.flatten(0, 1), 2)
        img = (g.numpy() * 255).round().astype("uint8")
        if img.shape[-1] == 1:
            img = img[..., 0]
        im = Image.fromarray(img)
        k = max(scale, -(-320 // im.width))  # at least 320 px wide
        frames.append(im.resize((im.width * k, im.height * k), Image.NEAREST))
    with atomic_path(path, suffix=".gif") as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=200, loop=0)
    return path


def open_loop_errors(result: dict, path) -> Path:
    """Per imagined step: image MSE against the copy-the-last-frame baseline, and reward error
    against predicting the mean reward."""
    plt = pyplot()
    steps = range(1, result["horizon"] + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(steps, result["image_mse"], "o-", label="world model (open loop)")
    a.plot(steps, result["copy_last_mse"], "s--", label="copy the last context frame")
    a.set(
        title="image error per pixel", xlabel="steps after the context", ylabel="MSE", yscale="log"
    )
    a.legend()
    b.plot(steps, result["reward_mae"], "o-", label="world model")
    b.plot(steps, result["reward_mean_mae"], "s--", label="mean training reward")
    b.plot(
        steps, result["discount_mae"], "^-", label="discount error (target gamma * (1 - terminal))"
    )
    b.set(
        title="reward and discount error", xlabel="steps after the context", ylabel="mean |error|"
    )
    b.legend()
    return save(fig, path)


def latent_usage(usage: dict, path) -> Path:
    """Per group of a categorical latent: the perplexity of its aggregate posterior and the
    classes it uses, out of K (a group at 1 has collapsed)."""
    plt = pyplot()
    g = len(usage["perplexity"])
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * g), 3.5))
    ax.bar(range(g), usage["used"], color="tab:gray", label="classes used (argmax of some step)")
    ax.bar(
        range(g),
        usage["perplexity"],
        color="tab:blue",
        width=0.5,
        label="perplexity of the aggregate posterior",
    )
    ax.axhline(usage["classes"], color="k", lw=0.8, ls=":")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # groups are whole numbers
    ax.set(
        title=f"latent usage per group (of K = {usage['classes']} classes)",
        xlabel="group",
        ylabel="classes",
    )
    ax.legend(fontsize=8)
    return save(fig, path)


def kl_balance_parts(metrics_path, path, alpha: float, free_nats: float) -> Path:
    """The KL of a balanced objective over training (train and test), and its two parts as the
    loss weighs them: alpha * dyn (trains the prior) and (1 - alpha) * rep (trains the
    posterior), after free nats (the dotted line)."""
    lines = read_metrics(metrics_path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, weight, label, style in (
        ("train/kl", 1.0, "KL(q || p), train", "-"),
        ("test/kl", 1.0, "KL(q || p), test", "o"),
        ("train/kl/dyn", alpha, f"{alpha:g} x dyn: KL(sg(q) || p), trains the prior", "--"),
        (
            "train/kl/rep",
            1 - alpha,
            f"{1 - alpha:g} x rep: KL(q || sg(p)), trains the posterior",
            ":",
        ),
    ):
        steps, values = series(lines, key)
        if steps:
            ax.plot(steps, [weight * v for v in values], style, label=label, markersize=3)
    if free_nats > 0:
        ax.axhline(
            free_nats, color="gray", lw=0.8, ls=(0, (1, 3)), label=f"free nats = {free_nats:g}"
        )
    ax.set(title="KL balancing over training (nats)", xlabel="step")
    ax.legend(fontsize=8)
    return save(fig, path)
