"""How well a world model predicts: open-loop imagination against the truth, and latent usage.

Open loop: from test windows of ``context + horizon`` steps, the model observes ``context``
frames and imagines the rest under the recorded actions, never seeing another image. Per
imagined step k = 1..horizon:

    image_mse[k]     mean over sequences and pixels of (imagined - true)^2, images in [0, 1]
    copy_last_mse[k] the same for the baseline that repeats the last context frame
    reward_mae[k]    mean |predicted reward - true reward|; beside it, the error of always
                     predicting the training episodes' mean reward (``reward_mean_mae``)
    discount_mae[k]  mean |predicted discount - gamma * (1 - terminal)|, the head's own target

Latent usage, the collapse diagnostic of a categorical latent: over the posterior of every test
step, for each group g, the aggregate distribution m_g = E[q(z_g | .)] over the K classes,

    perplexity_g = exp(H(m_g))   (1: the group always says the same; K: all classes equally used)
    used_g       classes that are the most likely one for at least one test step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from elbokit.config import Section, opt


@dataclass(frozen=True)
class OpenLoopSettings(Section):
    """How a world-model run is judged once trained."""

    context: int = opt(5, "frames observed before imagining", ge=1)
    horizon: int = opt(15, "steps imagined open loop", ge=1)
    eval_sequences: int = opt(64, "test sequences for open loop", ge=1)
    report: bool = opt(True, "then evaluate and write the report")


def versus(model: float, baseline: float) -> str:
    """'3.10x lower' or '2700x higher': the model's error against a baseline's, in words."""
    if model <= 0 or baseline <= 0:
        return "not comparable (an error of 0)"
    if model <= baseline:
        return f"{baseline / model:.2f}x lower than the baseline's"
    return f"{model / baseline:.3g}x higher than the baseline's"


@dataclass
class OpenLoopResult:
    context: int
    horizon: int
    sequences: int
    image_mse: list[float]
    copy_last_mse: list[float]
    reward_mae: list[float]
    reward_mean_mae: list[float]
    discount_mae: list[float]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["image_mse_mean"] = sum(self.image_mse) / self.horizon
        d["copy_last_mse_mean"] = sum(self.copy_last_mse) / self.horizon
        d["reward_mae_mean"] = sum(self.reward_mae) / self.horizon
        d["reward_mean_mae_mean"] = sum(self.reward_mean_mae) / self.horizon
        d["discount_mae_mean"] = sum(self.discount_mae) / self.horizon
        return d


@torch.no_grad()
def open_loop(
    model,
    data,
    *,
    context: int = 5,
    horizon: int = 15,
    sequences: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    sample: bool = True,
    keep: int = 0,
    gamma: float = 1.0,
) -> tuple[OpenLoopResult, dict[str, torch.Tensor]]:
    """Open-loop errors on the test split (see the module docstring).

    Returns the result and, for the first ``keep`` sequences, the tensors to draw:
    ``truth`` (N, context + horizon, C, H, W) and ``imagined`` (N, horizon, C, H, W), both in
    [0, 1], and ``reward``/``predicted_reward`` (N, horizon).

    Raises:
        ValueError: no test episode has context + horizon steps.
    """
    length = context + horizon
    windows = data.windows("test", length)
    if not windows:
        raise ValueError(
            f"no test episode has context + horizon = {length} steps; lower --horizon or collect longer episodes"
        )
    step = max(1, len(windows) // sequences)  # spread over the test episodes
    windows = windows[::step][:sequences]
    train_reward = torch.cat([ep["reward"][1:] for ep in data.train]).mean()
    g = torch.Generator().manual_seed(seed)
    sums = {
        k: torch.zeros(horizon, dtype=torch.float64)
        for k in ("img", "copy", "rew", "rmean", "disc")
    }
    kept: dict[str, list[torch.Tensor]] = {
        "truth": [],
        "imagined": [],
        "reward": [],
        "predicted_reward": [],
    }
    model.eval()
    device = next(model.parameters()).device
    for i in range(0, len(windows), batch_size):
        batch = data.gather("test", windows[i : i + batch_size], length).to(device)
        pred = model.open_loop(batch, context, generator=g, sample=sample)
        truth = batch.image[:, context:].float()
        last = batch.image[:, context - 1 : context].float()
        reward, discount = batch.reward[:, context:], gamma * batch.discount[:, context:]
        sums["img"] += (pred["obs"] - truth).pow(2).mean((2, 3, 4)).sum(0).double().cpu()
        sums["copy"] += (last - truth).pow(2).mean((2, 3, 4)).sum(0).double().cpu()
        sums["rew"] += (pred["reward"] - reward).abs().sum(0).double().cpu()
        sums["rmean"] += (train_reward - reward).abs().sum(0).double().cpu()
        sums["disc"] += (pred["discount"] - discount).abs().sum(0).double().cpu()
        have = sum(len(t) for t in kept["truth"])
        if have < keep:
            n = keep - have
            kept["truth"].append(batch.image[:n].float().cpu())
            kept["imagined"].append(pred["obs"][:n].cpu())
            kept["reward"].append(reward[:n].cpu())
            kept["predicted_reward"].append(pred["reward"][:n].cpu())
    n = len(windows)
    result = OpenLoopResult(
        context,
        horizon,
        n,
        *((sums[k] / n).tolist() for k in ("img", "copy", "rew", "rmean", "disc")),
    )
    return result, {k: torch.cat(v) for k, v in kept.items() if v}


@torch.no_grad()
def latent_usage(model, data, *, batch_size: int = 16, seed: int = 0) -> dict[str, list[float]]:
    """Per group: ``perplexity`` of the aggregate posterior and ``used`` classes (see above)."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total, count, argmax_seen = None, 0, None
    for batch in data.batches("test", batch_size, seed=seed, epoch=-1, shuffle=False):
        batch = batch.to(device)
        state = model.rssm.observe(model.embed(batch.image), batch.action, generator=g)
        probs = state.posterior.float().exp().flatten(0, 1)  # (N, G, K)
        onehot = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).amax(0)
        total = probs.sum(0) if total is None else total + probs.sum(0)
        argmax_seen = onehot if argmax_seen is None else argmax_seen | onehot
        count += len(probs)
    m = (total / count).double()
    entropy = -(m * m.clamp_min(1e-300).log()).sum(-1)
    return {
        "perplexity": entropy.exp().tolist(),
        "used": argmax_seen.sum(-1).tolist(),
        "classes": int(m.shape[-1]),
    }
