"""Figures of learned skills: trajectories coloured by skill, their animation, goal reaching."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from elbokit.files import atomic_path
from elbokit.report._draw import save
from elbokit.report._mpl import pyplot


def _colours(n: int):
    cmap = pyplot().get_cmap("tab10" if n <= 10 else "hsv")
    return [cmap(i if n <= 10 else i / n) for i in range(n)]


def _skill_ids(roll, method: str) -> np.ndarray:
    z = roll.skills
    if method == "diayn":
        return z.argmax(-1).numpy()
    _, ids = np.unique(z.numpy(), axis=0, return_inverse=True)
    return ids.reshape(-1)


def _limits(ax, roll, bounds):
    pts = roll.states[roll.valid][:, :2].numpy()
    lo, hi = (np.asarray(b, np.float64)[:2] for b in bounds)
    for i, set_lim in ((0, ax.set_xlim), (1, ax.set_ylim)):
        if i >= pts.shape[1]:
            continue
        a, b = (lo[i], hi[i]) if math.isfinite(lo[i]) and math.isfinite(hi[i]) else (
            pts[:, i].min(), pts[:, i].max())  # fmt: skip
        pad = 0.05 * (b - a or 1.0)
        set_lim(a - pad, b + pad)


def _draw(ax, roll, bounds, method: str, upto: int | None = None):
    ids = _skill_ids(roll, method)
    colours = _colours(int(ids.max()) + 1)
    states, valid = roll.states.numpy(), roll.valid.numpy()
    t_end = states.shape[1] if upto is None else upto + 1
    for i in np.argsort(ids, kind="stable"):  # the legend in skill order
        s = states[i, :t_end][valid[i, :t_end]]
        if s.shape[1] < 2:
            s = np.stack([np.arange(len(s)), s[:, 0]], 1)
        ax.plot(s[:, 0], s[:, 1], "-", color=colours[ids[i]], lw=1.2, alpha=0.8,
                label=f"skill {ids[i]}" if i == np.argmax(ids == ids[i]) else None)  # fmt: skip
        ax.plot(s[-1, 0], s[-1, 1], "o", color=colours[ids[i]], ms=4)
    start = states[0, 0]
    if start.shape[0] >= 2:
        ax.plot(start[0], start[1], "ko", ms=5)
    if states.shape[-1] >= 2:
        _limits(ax, roll, bounds)
    ax.set(xlabel="state[0]", ylabel="state[1]")
    ax.set_aspect("equal" if states.shape[-1] >= 2 else "auto")


def trajectories(roll, bounds, path, method: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    _draw(ax, roll, bounds, method)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"{method.upper()} skills: fresh rollouts")
    return save(fig, path)


def animation(roll, bounds, path, method: str, frames: int = 30) -> Path:
    """An animated GIF of the trajectories growing step by step (at most ``frames`` frames)."""
    from PIL import Image

    plt = pyplot()
    t = roll.states.shape[1] - 1
    marks = sorted({max(1, round(i * t / frames)) for i in range(1, frames + 1)})
    images = []
    for m in marks:
        fig, ax = plt.subplots(figsize=(4, 4))
        _draw(ax, roll, bounds, method, upto=m)
        ax.set_title(f"step {m}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)  # 320 px
        plt.close(fig)
        buf.seek(0)
        images.append(Image.open(buf).convert("P", palette=Image.ADAPTIVE))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".gif") as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=120, loop=0)
    return out


def planning(result: dict, path) -> Path:
    plt = pyplot()
    goals = np.asarray(result["goals"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, mode in zip(axes, ("planned", "random"), strict=True):
        r = result[mode]
        final = np.asarray(r["final_states"])
        for g, f in zip(goals, final, strict=True):
            ax.plot([g[0], f[0]], [g[1], f[1]], "-", color="0.7", lw=0.8)
        ax.plot(goals[:, 0], goals[:, 1], "x", color="tab:red", label="goal")
        ax.plot(final[:, 0], final[:, 1], "o", color="tab:blue", ms=4, label="final state")
        ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
               title=f"{mode} skills\nsuccess {r['success_rate']:.2f}, "
                     f"mean final distance {r['mean_final_distance']:.3f}")  # fmt: skip
        ax.legend(fontsize=7)
    return save(fig, path)
