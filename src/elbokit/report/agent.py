"""The pictures of a Dreamer agent: return against environment steps and wall-clock time,
imagination against a real episode under the same actions, and the policy acting (GIF)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from elbokit.files import atomic_path
from elbokit.report._draw import save
from elbokit.report._mpl import pyplot
from elbokit.report.metrics import read_metrics
from elbokit.report.world_model import prediction_strip


def returns(metrics_path, path) -> Path:
    """Two panels, against environment steps and against training seconds: training episodes'
    returns (a line) and evaluations (points with +- one standard error)."""
    lines = read_metrics(metrics_path)
    train = [(d["train/env/steps"], d["train/env/seconds"], d["train/return"])
             for d in lines if "train/return" in d and "train/env/steps" in d]  # fmt: skip
    test = [(d["test/env_steps"], d["test/seconds"], d["test/return"], d.get("test/return_se", 0.0))
            for d in lines if "test/return" in d]  # fmt: skip
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, i, label in ((axes[0], 0, "environment steps"), (axes[1], 1, "training time (s)")):
        if train:
            t = np.asarray(train)
            ax.plot(t[:, i], t[:, 2], "-", lw=1, alpha=0.7, label="training episodes (sampled)")
        if test:
            t = np.asarray(test)
            ax.errorbar(t[:, i], t[:, 2], yerr=t[:, 3], fmt="o", ms=4, capsize=2,
                        label="evaluation (most likely action)")  # fmt: skip
        ax.set(xlabel=label, ylabel="return")
        if i == 0:  # 40k, not 40000 (the labels would run into each other)
            ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:g}k" if v else "0")
        ax.legend(fontsize=8)
    return save(fig, path)


STATE_NAMES = {
    "CartPole": ("cart position", "cart velocity", "pole angle (rad)", "pole angular velocity"),
    "Pendulum": ("cos(angle)", "sin(angle)", "angular velocity"),
}


@torch.no_grad()
def open_loop(learner, record: dict, path, context: int = 5, horizon: int = 45) -> Path:
    """A real episode and the world model's open-loop imagination after ``context`` steps under
    the recorded actions: frames as two rows (pixels), or each state dimension as a line."""
    n = int(record["length"][0]) + 1
    if record["obs"].dim() == 5:
        horizon = min(horizon, 15)  # frames: a strip that stays legible
    steps = min(n, context + horizon)
    if steps <= context:
        context = max(1, steps - 1)
    obs = record["obs"][:1, :steps].float()
    batch = SimpleNamespace(image=obs.to(learner.ctx.device),
                            action=record["action"][:1, :steps].float().to(learner.ctx.device),
                            is_first=torch.zeros(1, steps, dtype=torch.bool,
                                                 device=learner.ctx.device))  # fmt: skip
    batch.is_first[:, 0] = True
    dream = learner.wm.open_loop(batch, context, generator=torch.Generator().manual_seed(0))
    imagined = dream["obs"].cpu()
    if obs.dim() == 5:
        return prediction_strip(obs, imagined, path)
    plt = pyplot()
    d = obs.shape[-1]
    fig, axes = plt.subplots(1, d, figsize=(3.4 * d, 3.2), squeeze=False)
    t = np.arange(steps)
    env = learner.cfg.env.name
    names = next((v for k, v in STATE_NAMES.items() if env.startswith(k) and len(v) == d), None)
    for i, ax in enumerate(axes[0]):
        ax.plot(t, obs[0, :, i].numpy(), "k-", label="real")
        ax.plot(t[context:], imagined[0, :, i].numpy(), "C1--", label="imagined")
        ax.axvline(context - 0.5, color="grey", lw=0.5)
        ax.set(title=names[i] if names else f"state[{i}]", xlabel="step")
    axes[0][0].legend(fontsize=8, title=f"after {context} observed steps")
    return save(fig, path)


def frames_gif(frames: list[np.ndarray], path, every: int = 2, size: int = 320) -> Path:
    """An animated GIF of rendered frames (H, W, 3) uint8, every ``every``-th, ``size`` wide."""
    from PIL import Image

    shown = [Image.fromarray(f) for f in frames[::every]] or [Image.new("RGB", (size, size))]
    scale = size / shown[0].width
    shown = [im.resize((size, max(1, round(im.height * scale)))) for im in shown]
    with atomic_path(path, suffix=".gif") as tmp:
        shown[0].save(tmp, save_all=True, append_images=shown[1:], duration=40, loop=0)
    return path
