"""The one reader of a run's metrics.jsonl, and the training-curve figure built on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from elbokit.report._draw import panels, save

__all__ = ["curves", "last_with", "read_metrics", "series"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Every line of a metrics.jsonl as a dict (``step``, ``epoch``, ``train/...``, ...); a
    torn last line (a run killed while writing it) is skipped.

    Raises:
        ValueError: the file is missing, or a line other than the last is not JSON.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist: the run has logged nothing yet")
    text = path.read_text().splitlines()
    lines = []
    for i, line in enumerate(text):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(text) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return lines


def series(lines: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the lines that hold ``key``."""
    pts = [(line["step"], line[key]) for line in lines if key in line]
    return [p[0] for p in pts], [p[1] for p in pts]


def last_with(lines: list[dict], key: str) -> dict:
    """The last line that holds ``key``; ValueError if none does."""
    for line in reversed(lines):
        if key in line:
            return line
    raise ValueError(f"no metrics line has {key!r}")


VAE_CURVES = (("elbo", "ELBO (nats)"), ("recon", "reconstruction NLL (nats)"), ("kl", "KL (nats)"))


def curves(metrics_path, path, keys=VAE_CURVES) -> Path:
    """One panel per (key, title): ``train/key`` as a line, ``test/key`` as points, by step;
    a key ending in ``_mse`` on a log scale."""
    lines = read_metrics(metrics_path)
    fig, axes = panels(len(keys))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for split, style in (("train", "-"), ("test", "o-")):
            steps, values = series(lines, f"{split}/{key}")
            if steps:
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set(title=label, xlabel="step", yscale="log" if key.endswith("_mse") else "linear")
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing logged yet has no legend
            ax.legend()
    fig.tight_layout()
    return save(fig, path)
