"""``elbokit collect`` and ``elbokit train world-model``: episodes from gymnasium, then a
DreamerV2-style world model trained on them, evaluated open loop and reported.

    elbokit collect --env CartPole-v1 --episodes 100 --out data/cartpole
    elbokit train world-model --data data/cartpole            the small preset (~15 min, 2 CPUs)
    elbokit train world-model --preset debug                  seconds: collects its own episodes
    elbokit train world-model --resume runs/wm-...            continue an interrupted run

With no ``--data``, the run first collects ``--episodes`` episodes of ``--env`` into
RUN/episodes. The run directory is the trainer's (config.json, checkpoints, metrics.jsonl) plus
eval.json and report/ (``elbokit eval RUN`` and ``elbokit report RUN`` redo them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from elbokit.cli._args import config_of, saved_config
from elbokit.cli._runs import new_run_dir, read_run_config, write_run_config
from elbokit.data.collect import collect_episodes
from elbokit.data.episodes import load_episodes
from elbokit.evaluate.world_model import latent_usage, open_loop
from elbokit.models.world_model import WorldModel, WorldModelConfig
from elbokit.objectives import KLBalance, WorldModelLoss, WorldModelObjective
from elbokit.train.checkpoint import atomic_write_text, load_checkpoint
from elbokit.train.distributed import setup, teardown
from elbokit.train.trainer import TrainConfig, Trainer

KIND = "world-model"


@dataclass(frozen=True)
class CollectConfig:
    env: str = field(default="CartPole-v1", metadata={"help": "a gymnasium environment id"})
    episodes: int = field(default=100, metadata={"help": "episodes to collect"})
    policy: Literal["scripted", "random"] = field(
        default="scripted",
        metadata={"help": "scripted (CartPole: balance, with epsilon random actions) or random"},
    )
    epsilon: float = field(default=0.5, metadata={"help": "random-action probability (scripted)"})
    image_size: int = field(default=64, metadata={"help": "frames are resized to this square"})
    max_steps: int = field(default=200, metadata={"help": "steps before an episode is cut"})
    seed: int = field(default=0, metadata={"help": "seeds the environment and the policy"})
    out: str = field(default="data/episodes", metadata={"help": "folder for the episode files"})
    progress: bool = field(default=True, metadata={"help": "progress bar"})


def run_collect(cfg: CollectConfig) -> int:
    t0 = time.perf_counter()
    meta = collect_episodes(
        cfg.env,
        out=cfg.out,
        episodes=cfg.episodes,
        policy=cfg.policy,
        epsilon=cfg.epsilon,
        size=cfg.image_size,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    print(
        f"collected {meta['episodes']} episodes, {meta['steps']} steps (mean length "
        f"{meta['mean_length']:.1f}, mean return {meta['mean_return']:.1f}) of {cfg.env} in "
        f"{time.perf_counter() - t0:.1f} s into {cfg.out}"
    )
    return 0


@dataclass(frozen=True)
class TrainWorldModelConfig:
    """Everything a world-model run is made of; the CLI's options, one per field."""

    # data
    data: str = field(
        default="", metadata={"help": "folder of episodes (default: collect into RUN/episodes)"}
    )
    env: str = field(default="CartPole-v1", metadata={"help": "environment to collect from"})
    episodes: int = field(default=100, metadata={"help": "episodes to collect"})
    policy: Literal["scripted", "random"] = field(
        default="scripted", metadata={"help": "collection policy"}
    )
    epsilon: float = field(default=0.5, metadata={"help": "random-action probability (scripted)"})
    image_size: int = field(default=64, metadata={"help": "frame size when collecting"})
    max_steps: int = field(default=200, metadata={"help": "episode length limit when collecting"})
    seq_len: int = field(default=32, metadata={"help": "steps per training sequence"})
    test_fraction: float = field(default=0.1, metadata={"help": "episodes held out for testing"})
    # model
    deter: int = field(default=200, metadata={"help": "GRU state size"})
    hidden: int = field(default=200, metadata={"help": "width of the RSSM's MLPs"})
    groups: int = field(default=32, metadata={"help": "categorical latent groups"})
    classes: int = field(default=32, metadata={"help": "classes per group"})
    unimix: float = field(default=0.01, metadata={"help": "uniform mix in the categoricals"})
    channels: tuple[int, ...] = field(
        default=(16, 32, 64, 128), metadata={"help": "conv channels per stride-2 layer"}
    )
    embed: int = field(default=256, metadata={"help": "image embedding size"})
    head_hidden: tuple[int, ...] = field(
        default=(200, 200), metadata={"help": "reward and discount MLP widths"}
    )
    # loss
    image_scale: float = field(default=1.0, metadata={"help": "scale of the image NLL"})
    reward_scale: float = field(default=1.0, metadata={"help": "scale of the reward NLL"})
    discount_scale: float = field(default=1.0, metadata={"help": "scale of the discount NLL"})
    kl_scale: float = field(default=1.0, metadata={"help": "scale of the balanced KL"})
    kl_balance: float = field(default=0.8, metadata={"help": "alpha: the prior's share of the KL"})
    free_nats: float = field(default=1.0, metadata={"help": "free nats (0: off)"})
    free_mode: Literal["mean", "elementwise"] = field(
        default="mean", metadata={"help": "clip the mean KL (DreamerV2) or each one (DreamerV3)"}
    )
    gamma: float = field(default=0.99, metadata={"help": "discount target on non-terminal steps"})
    # training
    epochs: int = field(default=100, metadata={"help": "passes over the training sequences"})
    batch_size: int = field(default=16, metadata={"help": "sequences per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    grad_clip: float = field(default=100.0, metadata={"help": "gradient norm clip (0: off)"})
    seed: int = field(default=0, metadata={"help": "seeds collection, init, order and sampling"})
    checkpoint_every: int = field(default=250, metadata={"help": "steps between checkpoints"})
    eval_every: int = field(default=10, metadata={"help": "epochs between test evaluations"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: leave as is)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    precision: Literal["fp32", "bf16"] = field(
        default="fp32", metadata={"help": "bf16: autocast matmuls and convolutions"}
    )
    progress: bool = field(default=True, metadata={"help": "progress bar"})
    # evaluation
    context: int = field(default=5, metadata={"help": "frames observed before imagining"})
    horizon: int = field(default=15, metadata={"help": "steps imagined open loop"})
    eval_sequences: int = field(default=64, metadata={"help": "test sequences for open loop"})
    report: bool = field(default=True, metadata={"help": "then evaluate and write the report"})
    out: str = field(default="", metadata={"help": "run directory (default runs/wm-ENV-TIME)"})

    def __post_init__(self):
        if self.context < 1 or self.horizon < 1:
            raise ValueError(f"context={self.context}, horizon={self.horizon}; expected >= 1")


PRESETS = {
    "small": TrainWorldModelConfig(),
    "debug": TrainWorldModelConfig(
        episodes=6,
        max_steps=40,
        image_size=32,
        seq_len=12,
        deter=32,
        hidden=32,
        groups=4,
        classes=4,
        channels=(8, 16),
        embed=32,
        head_hidden=(32,),
        epochs=2,
        batch_size=4,
        checkpoint_every=10,
        eval_every=1,
        context=3,
        horizon=6,
        eval_sequences=8,
    ),
}
PRESETS["default"] = PRESETS["small"]


def model_config(cfg: TrainWorldModelConfig, data) -> WorldModelConfig:
    return config_of(
        WorldModelConfig, cfg, image_shape=data.image_shape, action_dim=data.action_dim
    )


def build_objective(cfg: TrainWorldModelConfig) -> WorldModelObjective:
    scales = {
        "image": cfg.image_scale,
        "reward": cfg.reward_scale,
        "discount": cfg.discount_scale,
        "kl": cfg.kl_scale,
    }
    balance = KLBalance(alpha=cfg.kl_balance, free_nats=cfg.free_nats, free_mode=cfg.free_mode)
    return WorldModelObjective(WorldModelLoss(scales, balance), gamma=cfg.gamma)


def train_config(cfg: TrainWorldModelConfig) -> TrainConfig:
    return config_of(TrainConfig, cfg, log_every=10)  # steps are slow: log often


def episodes_dir(cfg: TrainWorldModelConfig, run_dir: Path) -> Path:
    return Path(cfg.data) if cfg.data else run_dir / "episodes"


def run_data(cfg: TrainWorldModelConfig, run_dir: Path):
    return load_episodes(
        episodes_dir(cfg, run_dir), seq_len=cfg.seq_len, test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )  # fmt: skip


def run_config(saved: dict) -> TrainWorldModelConfig:
    return saved_config(TrainWorldModelConfig, saved["run"])


def load_run(run_dir: str | Path) -> tuple[WorldModel, TrainWorldModelConfig, dict]:
    """Rebuild a world-model run's model from config.json and load its latest checkpoint."""
    saved = read_run_config(run_dir, KIND)
    model = WorldModel(WorldModelConfig.from_dict(saved["model"]))
    state = load_checkpoint(Path(run_dir), model)
    return model, run_config(saved), state


def run_train_world_model(cfg: TrainWorldModelConfig, *, resume: str = "") -> int:
    if resume:
        run_dir = Path(resume)
        cfg = run_config(read_run_config(run_dir, KIND))
    else:
        run_dir = new_run_dir(cfg.out, f"runs/wm-{cfg.env.split('/')[-1]}")
    world = setup(cfg.device)
    say = print if world.main else (lambda *args: None)
    folder = episodes_dir(cfg, run_dir)
    if not cfg.data and not (folder / "meta.json").exists():
        if world.size > 1:
            raise ValueError("under torchrun, collect first (elbokit collect) and pass --data")
        for partial in folder.glob("episode-*.npz"):  # an interrupted collection of this run's
            partial.unlink()
        say(f"collecting {cfg.episodes} episodes of {cfg.env} into {folder}")
        run_collect(config_of(CollectConfig, cfg, out=str(folder)))
    data = run_data(cfg, run_dir)
    if cfg.report and not data.windows("test", cfg.context + cfg.horizon):
        raise ValueError(  # fail before training, not after it
            f"no test episode has --context + --horizon = {cfg.context + cfg.horizon} steps for "
            f"the open-loop evaluation; lower them, collect longer episodes, or pass --no-report"
        )
    torch.manual_seed(cfg.seed)
    mcfg = model_config(cfg, data)
    model = WorldModel(mcfg)
    objective = build_objective(cfg)
    if world.main and not resume:
        write_run_config(run_dir, KIND, cfg, mcfg)
    steps = sum(len(e["image"]) for e in data.train)
    say(f"run directory: {run_dir}")
    say(
        f"data: {folder}, {len(data.train)} train / {len(data.test)} test episodes, {steps} train "
        f"steps of {data.image_shape} images, {data.action_dim} actions; sequences of {cfg.seq_len}"
    )
    say(
        f"model: RSSM {cfg.deter} deter + {cfg.groups}x{cfg.classes} categorical, conv "
        f"{cfg.channels}, {sum(p.numel() for p in model.parameters()):,} parameters"
        + (f"; {world.size} processes" if world.size > 1 else "")
    )
    trainer = Trainer(train_config(cfg), run_dir)
    t0 = time.perf_counter()
    try:
        metrics = trainer.fit(model, objective, data, resume=bool(resume))
    finally:
        teardown(world)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "/kl/" not in k)
    say(f"done in {time.perf_counter() - t0:.1f} s: {shown or 'no new epochs'}")
    if cfg.report and world.main:
        evaluate_run(run_dir)
        report_run(run_dir)
    return 0


def evaluate_run(run_dir: str | Path, seed: int = 0) -> dict:
    """Open-loop errors, latent usage and the test loss terms of a run: RUN/eval.json."""
    model, cfg, state = load_run(run_dir)
    data = run_data(cfg, Path(run_dir))
    result, _ = open_loop(
        model, data, context=cfg.context, horizon=cfg.horizon, sequences=cfg.eval_sequences,
        seed=seed, gamma=cfg.gamma,
    )  # fmt: skip
    usage = latent_usage(model, data, seed=seed)
    trainer = Trainer(train_config(cfg), run_dir)
    terms = trainer.evaluate(model, build_objective(cfg), data, state["step"])
    out = {"step": state["step"], "open_loop": result.as_dict(), "latent_usage": usage, **terms}
    atomic_write_text(Path(run_dir) / "eval.json", json.dumps(out, indent=2))
    ol = out["open_loop"]
    print(f"{run_dir} at step {state['step']}: {result.sequences} test sequences, "
          f"{cfg.context} context frames, {cfg.horizon} steps open loop")  # fmt: skip
    print(
        f"  image MSE {ol['image_mse_mean']:.5f} vs copy-last-frame {ol['copy_last_mse_mean']:.5f} "
        f"({ol['copy_last_mse_mean'] / max(ol['image_mse_mean'], 1e-12):.2f}x lower); last step "
        f"{ol['image_mse'][-1]:.5f} vs {ol['copy_last_mse'][-1]:.5f}"
    )
    print(
        f"  reward MAE {ol['reward_mae_mean']:.4f} (mean-reward baseline {ol['reward_mean_mae_mean']:.4f}); "
        f"discount MAE {ol['discount_mae_mean']:.4f}"
    )
    perp = torch.tensor(usage["perplexity"])
    print(
        f"  latent usage: perplexity per group {perp.min():.1f}-{perp.max():.1f} (median "
        f"{perp.median():.1f}) of {usage['classes']}; test KL {terms.get('test/kl/value', float('nan')):.2f} nats"
    )
    print(f"wrote {Path(run_dir) / 'eval.json'}")
    return out


def report_run(run_dir: str | Path, seed: int = 0) -> Path:
    from elbokit.report import figures, write_html

    run = Path(run_dir)
    if not (run / "eval.json").exists():
        evaluate_run(run, seed)
    result = json.loads((run / "eval.json").read_text())
    model, cfg, state = load_run(run)
    data = run_data(cfg, run)
    _, seqs = open_loop(
        model, data, context=cfg.context, horizon=cfg.horizon, sequences=cfg.eval_sequences,
        seed=seed, keep=6, gamma=cfg.gamma,
    )  # fmt: skip
    out = run / "report"
    ol = result["open_loop"]
    terms = (("image", "image NLL (nats)"), ("image_mse", "image MSE per pixel"),
             ("reward", "reward NLL (nats)"), ("discount", "discount NLL (nats)"),
             ("kl/value", "KL(posterior || prior) (nats)"))  # fmt: skip
    pngs = [
        (figures.prediction_strip(seqs["truth"], seqs["imagined"], out / "open_loop.png"),
         "Test sequences: the truth, and under it the model's open-loop imagination from the context frames under the recorded actions."),
        (figures.prediction_gif(seqs["truth"], seqs["imagined"], out / "open_loop.gif"),
         "The same, animated: truth (top row) and imagination (bottom row) per imagined step."),
        (figures.open_loop_errors(ol, out / "open_loop_errors.png"),
         "Open-loop error per imagined step against the copy-the-last-frame and mean-reward baselines."),
        (figures.curves(run / "metrics.jsonl", out / "curves.png", terms),
         "Loss terms over training (train: running means; test: per evaluation)."),
        (figures.kl_balance_parts(run / "metrics.jsonl", out / "kl_balance.png", cfg.kl_balance, cfg.free_nats),
         f"The KL between posterior and prior, and its dyn and rep parts as the loss weighs them ({cfg.free_mode} free nats). "
         "The two parts have the same value by construction (before weighting); they differ in where the gradient goes."),
        (figures.latent_usage(result["latent_usage"], out / "latent_usage.png"),
         "Classes used per latent group: groups near 1 have collapsed."),
    ]  # fmt: skip
    perp = torch.tensor(result["latent_usage"]["perplexity"])
    meta = data.meta
    numbers = {
        "data": f"{meta.get('env', data.name)}: {len(data.train)} train / {len(data.test)} test episodes, policy {meta.get('policy', '?')}",
        "model": f"RSSM {cfg.deter} + {cfg.groups}x{cfg.classes} categorical, conv {cfg.channels}",
        "trained": f"{state['step']} steps",
        f"open-loop image MSE ({cfg.horizon} steps after {cfg.context})": f"{ol['image_mse_mean']:.5f}",
        "copy-last-frame baseline MSE": f"{ol['copy_last_mse_mean']:.5f} ({ol['copy_last_mse_mean'] / max(ol['image_mse_mean'], 1e-12):.2f}x the model's)",
        "open-loop reward MAE": f"{ol['reward_mae_mean']:.4f} (mean-reward baseline {ol['reward_mean_mae_mean']:.4f})",
        "open-loop discount MAE": f"{ol['discount_mae_mean']:.4f}",
        "test image NLL / MSE per pixel": f"{result.get('test/image', float('nan')):.1f} nats / {result.get('test/image_mse', float('nan')):.5f}",
        "test KL(posterior || prior)": f"{result.get('test/kl/value', float('nan')):.2f} nats",
        "latent usage (perplexity per group)": f"min {perp.min():.1f}, median {perp.median():.1f}, max {perp.max():.1f} of {result['latent_usage']['classes']}",
    }  # fmt: skip
    config = read_run_config(run)
    page = write_html(
        out / "report.html", f"elbokit world model: {run.name}", numbers, pngs, config
    )
    print(f"wrote {page} and {len(pngs)} figures in {out}")
    return page
