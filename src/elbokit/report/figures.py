"""The pictures of a trained latent-variable model, each written as a PNG.

    samples        decoded draws from the prior
    reconstructions  test images beside their reconstructions
    traversals     one latent dimension swept at a time (the most informative ones first)
    latent_map     2-D latents: the decoded grid over the prior's bulk; otherwise the posterior
                   means of test images projected on their two principal axes, coloured by label
    curves         training curves of ELBO, reconstruction and KL from metrics.jsonl
    kl_bars        KL per latent unit, active units marked
    prediction_strip, prediction_gif   a world model's imagination beside the truth
    open_loop_errors   per-step prediction error against simple baselines
    latent_usage   classes used per group of a categorical latent
    kl_balance_parts   a balanced KL and its dyn and rep parts over training

Every function takes the model (any LatentVariableModel on images) and writes one file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from elbokit.report._mpl import pyplot


def _save(fig, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    os.replace(tmp, out)
    return out


def _grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (H', W', C) image of `rows` rows with 1-pixel gaps."""
    n, c, h, w = images.shape
    cols = math.ceil(n / rows)
    canvas = torch.ones(c, rows * (h + 1) + 1, cols * (w + 1) + 1)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = (
            images[i]
        )
    return canvas.permute(1, 2, 0).clamp(0, 1)


def _show(ax, images: torch.Tensor, rows: int, title: str) -> None:
    g = _grid(images, rows).numpy()
    ax.imshow(
        g[..., 0] if g.shape[-1] == 1 else g,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_title(title)
    ax.axis("off")


@torch.no_grad()
def _decode_mean(model, z: torch.Tensor) -> torch.Tensor:
    params = model.decode(z)
    return (
        model.likelihood.mean(params, 1 + len(model.data_shape))
        .reshape(len(z), *model.data_shape)
        .float()
    )


@torch.no_grad()
def samples(model, path, n: int = 64, seed: int = 0) -> Path:
    model.eval()
    z = model.latent.sample_prior(n, generator=torch.Generator().manual_seed(seed))
    fig, ax = pyplot().subplots(figsize=(6, 6))
    _show(ax, _decode_mean(model, z), int(math.sqrt(n)), "samples from the prior (decoder means)")
    return _save(fig, path)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, path, n: int = 32) -> Path:
    model.eval()
    x = x[:n]
    recon = _decode_mean(model, model.latent.posterior_mean(model.encode(x)))
    pairs = torch.stack([x, recon], 1).reshape(-1, *x.shape[1:])  # input, reconstruction, ...
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    _show(ax, pairs, 4, "test images (left of each pair) and their reconstructions (right)")
    return _save(fig, path)


@torch.no_grad()
def traversals(model, x: torch.Tensor, path, dims: int = 8, steps: int = 9) -> Path:
    """Vary one unit at a time around a test image's posterior mean, the `dims` units with the
    largest mean KL: a Gaussian unit from -3 to +3 prior deviations, a categorical group
    through its classes."""
    model.eval()
    params = model.encode(x)
    order = model.latent.kl_units(params).mean(0).argsort(descending=True)[:dims].tolist()
    base = model.latent.posterior_mean(params[:1])[0]
    z = torch.cat([model.latent.traversal(base, unit, steps) for unit in order])
    how = (
        "classes of each group"
        if model.latent.name == "categorical"
        else "-3 to +3 along each unit"
    )
    fig, ax = pyplot().subplots(figsize=(7, 0.8 * len(order) + 0.6))
    _show(
        ax,
        _decode_mean(model, z),
        len(order),
        f"latent traversals, {how}; rows: units by KL, {order}",
    )
    return _save(fig, path)


@torch.no_grad()
def latent_map(model, x: torch.Tensor, labels: torch.Tensor | None, path, steps: int = 15) -> Path:
    model.eval()
    plt = pyplot()
    if model.latent.z_size == 2:
        grid = torch.linspace(-2.5, 2.5, steps)
        z = torch.stack(torch.meshgrid(grid.flip(0), grid, indexing="ij")[::-1], -1).reshape(-1, 2)
        fig, ax = plt.subplots(figsize=(7, 7))
        _show(ax, _decode_mean(model, z), steps, "the 2-D latent space, decoded over [-2.5, 2.5]^2")
        return _save(fig, path)
    means = model.latent.posterior_mean(model.encode(x)).double()
    centred = means - means.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    proj = (centred @ v[:2].T).numpy()
    explained = (s[:2] ** 2 / (s**2).sum()).tolist()
    fig, ax = plt.subplots(figsize=(7, 6))
    sc = ax.scatter(
        proj[:, 0],
        proj[:, 1],
        c=None if labels is None else labels[: len(proj)].numpy(),
        cmap="tab10",
        s=8,
    )
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set(
        title="posterior means of test images, first two principal axes",
        xlabel=f"PC 1 ({explained[0]:.0%} of the variance)",
        ylabel=f"PC 2 ({explained[1]:.0%})",
    )
    return _save(fig, path)


VAE_CURVES = (("elbo", "ELBO (nats)"), ("recon", "reconstruction NLL (nats)"), ("kl", "KL (nats)"))


def curves(metrics_path, path, keys=VAE_CURVES) -> Path:
    """One panel per (key, title): ``train/key`` as a line, ``test/key`` as points, by step;
    a key ending in ``_mse`` on a log scale."""
    lines = [
        json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()
    ]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.7 * len(keys), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        for split, style in (("train", "-"), ("test", "o-")):
            pts = [
                (line["step"], line[f"{split}/{key}"]) for line in lines if f"{split}/{key}" in line
            ]
            if pts:
                steps, values = zip(*pts, strict=True)
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set(title=label, xlabel="step", yscale="log" if key.endswith("_mse") else "linear")
        ax.legend()
    return _save(fig, path)


@torch.no_grad()
def kl_bars(
    kl_per_unit: torch.Tensor, activity: torch.Tensor, path, threshold: float = 0.01
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(kl_per_unit)), 3.5))
    active = (activity > threshold).tolist()
    colors = ["tab:blue" if a else "tab:gray" for a in active]
    ax.bar(range(len(kl_per_unit)), kl_per_unit.tolist(), color=colors)
    ax.set(
        title=f"KL per latent unit; {sum(active)} of {len(active)} active (blue: Cov_x E[z|x] > {threshold:g})",
        xlabel="latent unit",
        ylabel="E_x KL (nats)",
    )
    return _save(fig, path)


def rate_distortion(points: list[dict], path) -> Path:
    """Distortion (reconstruction NLL) against rate (KL), one point per beta, with the lines
    of constant ELBO (rate + distortion = const) for reference."""
    plt = pyplot()
    pts = sorted(points, key=lambda p: p["rate"])
    rates = [p["rate"] for p in pts]
    dists = [p["distortion"] for p in pts]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(rates, dists, "o-", color="tab:blue")
    for p in pts:
        ax.annotate(
            f"beta = {p['beta']:g}",
            (p["rate"], p["distortion"]),
            textcoords="offset points",
            xytext=(6, 6),
        )
    lo, hi = min(rates), max(rates)
    span = max(hi - lo, 1.0)
    best = min(r + d for r, d in zip(rates, dists, strict=True))
    xs = [lo - 0.1 * span, hi + 0.1 * span]
    ax.plot(
        xs,
        [best - x for x in xs],
        "--",
        color="gray",
        label=f"rate + distortion = {best:.1f} (best -ELBO)",
    )
    ax.set(xlabel="rate: test KL(q(z|x) || p(z)) (nats)", ylabel="distortion: test -E_q log p(x|z) (nats)",
           title="rate-distortion curve of the beta sweep")  # fmt: skip
    ax.legend()
    return _save(fig, path)


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
    _show(ax, _strip_rows(truth, imagined), 2 * n,
          f"truth (upper rows) and imagination (lower rows): {context} context frames, then {t - context} steps open loop")  # fmt: skip
    return _save(fig, path)


def prediction_gif(truth: torch.Tensor, imagined: torch.Tensor, path, scale: int = 2) -> Path:
    """An animated GIF: per imagined step, the true frames above the imagined ones, one column
    per sequence. Needs Pillow (a matplotlib dependency)."""
    from PIL import Image

    context = truth.shape[1] - imagined.shape[1]
    frames = []
    for k in range(imagined.shape[1]):
        pair = torch.stack([truth[:, context + k], imagined[:, k]])  # (2, N, C, H, W)
        g = _grid(pair.flatten(0, 1), 2)
        img = (g.numpy() * 255).round().astype("uint8")
        if img.shape[-1] == 1:
            img = img[..., 0]
        im = Image.fromarray(img)
        frames.append(im.resize((im.width * scale, im.height * scale), Image.NEAREST))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.gif")
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=200, loop=0)
    os.replace(tmp, out)
    return out


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
    return _save(fig, path)


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
    ax.set(
        title=f"latent usage per group (of K = {usage['classes']} classes)",
        xlabel="group",
        ylabel="classes",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def kl_balance_parts(metrics_path, path, alpha: float, free_nats: float) -> Path:
    """The KL of a balanced objective over training (train and test), and its two parts as the
    loss weighs them: alpha * dyn (trains the prior) and (1 - alpha) * rep (trains the
    posterior), after free nats (the dotted line)."""
    lines = [
        json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, weight, label, style in (
        ("train/kl/value", 1.0, "KL(q || p), train", "-"),
        ("test/kl/value", 1.0, "KL(q || p), test", "o"),
        ("train/kl/dyn", alpha, f"{alpha:g} x dyn: KL(sg(q) || p), trains the prior", "--"),
        (
            "train/kl/rep",
            1 - alpha,
            f"{1 - alpha:g} x rep: KL(q || sg(p)), trains the posterior",
            ":",
        ),
    ):
        pts = [(line["step"], weight * line[key]) for line in lines if key in line]
        if pts:
            steps, values = zip(*pts, strict=True)
            ax.plot(steps, values, style, label=label, markersize=3)
    if free_nats > 0:
        ax.axhline(
            free_nats, color="gray", lw=0.8, ls=(0, (1, 3)), label=f"free nats = {free_nats:g}"
        )
    ax.set(title="KL balancing over training (nats)", xlabel="step")
    ax.legend(fontsize=8)
    return _save(fig, path)
