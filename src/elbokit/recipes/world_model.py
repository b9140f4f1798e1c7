"""The ``world-model`` kind: a DreamerV2-style world model on episodes, judged open loop.

    elbokit train world-model --data data/cartpole            the small preset (~15 min, 2 CPUs)
    elbokit train world-model --preset debug                  seconds: collects its own episodes
    elbokit train world-model --resume runs/wm-...            continue an interrupted run
    elbokit eval RUN  /  elbokit report RUN

With no ``--data``, the run first collects ``--episodes`` episodes of ``--env`` into
RUN/episodes. Its evaluation: open-loop image, reward and discount errors against simple
baselines, latent usage per group, the test loss terms. Its report: the imagination strip and
GIF, errors per step, loss curves, the balanced KL's parts, latent usage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.collect import summary
from elbokit.data.episodes import EpisodeDataConfig
from elbokit.evaluate.world_model import OpenLoopSettings, latent_usage, open_loop, versus
from elbokit.models.world_model import WorldModel, WorldModelConfig
from elbokit.objectives import WorldModelObjectiveConfig
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import Loaded, as_batch, as_pixels
from elbokit.train.learner import AdamConfig, ObjectiveLearner
from elbokit.train.loop import TrainConfig, Trainer

# compiled step / eager per device type (benchmarks/world_model_bench.py --compiled, the small
# preset, 2 threads, Zen 5 EPYC, 2026-12-07): 1.08x, its 64x64 convolutions most of the step (the
# debug preset's tiny model 2.18x): --compile auto keeps it eager
COMPILE_SPEEDUP = {"cpu": 1.08}


def _train_defaults() -> TrainConfig:
    # steps are slow: log often, evaluate every 10 epochs, clip as DreamerV2 does
    return TrainConfig(epochs=100, batch_size=16, checkpoint_every=250, log_every=10,
                       eval_every=10, grad_clip=100.0)  # fmt: skip


@dataclass(frozen=True)
class WorldModelRunConfig(Section):
    data: EpisodeDataConfig = opt(default_factory=EpisodeDataConfig, help="the episodes")
    model: WorldModelConfig = opt(default_factory=WorldModelConfig, help="the RSSM and heads")
    objective: WorldModelObjectiveConfig = opt(
        default_factory=WorldModelObjectiveConfig, help="the loss"
    )
    optim: AdamConfig = opt(default_factory=AdamConfig, help="the optimizer")
    train: TrainConfig = opt(default_factory=_train_defaults, help="the training loop")
    evaluate: OpenLoopSettings = opt(default_factory=OpenLoopSettings, help="after training")


@dataclass(frozen=True)
class WorldModelEvalOptions(Section):
    seed: int = opt(0, "seed of the imagined samples", ge=0)


class LoadedWorldModel(Loaded):
    """A trained world model (``elbokit.load``): ``observe`` filters a recorded sequence into
    the RSSM's states, ``imagine`` continues it under actions with the prior alone and decodes
    what it dreams. Observations are (B, T, *obs_shape): images in [0, 1] (or uint8 pixels),
    or vectors; actions (B, T, action_dim) as recorded (one-hot for discrete actions)."""

    @property
    def model(self) -> WorldModel:
        return self.learner.model

    def _sequence(self, obs, actions) -> tuple[torch.Tensor, torch.Tensor]:
        vector = len(self.model.obs_shape) == 1
        obs = (
            as_batch(obs, "obs", device=self.device)
            if vector
            else as_pixels(obs, "obs", self.device)
        )
        actions = as_batch(actions, "actions", device=self.device)
        shape, a = self.model.obs_shape, self.model.config.action_dim
        if obs.dim() != 2 + len(shape) or tuple(obs.shape[2:]) != shape:
            raise ValueError(f"obs has shape {tuple(obs.shape)}; this model takes (B, T, "
                             f"{', '.join(map(str, shape))})")  # fmt: skip
        if actions.dim() != 3 or actions.shape[-1] != a or actions.shape[:2] != obs.shape[:2]:
            raise ValueError(f"actions have shape {tuple(actions.shape)}; expected "
                             f"({obs.shape[0]}, {obs.shape[1]}, {a}), beside obs")  # fmt: skip
        return obs, actions

    @torch.no_grad()
    def observe(self, obs, actions, *, seed: int = 0):
        """The posterior states of a sequence (an ``RSSMState``: h (B, T, deter), z (B, T,
        groups * classes), the prior's and posterior's log-probabilities (B, T, G, K)); the
        action at t is the one that led to obs t (zeros at the start)."""
        obs, actions = self._sequence(obs, actions)
        g = torch.Generator(self.device).manual_seed(seed)
        return self.model.rssm.observe(self.model.embed(obs), actions, generator=g)

    @torch.no_grad()
    def imagine(self, obs, actions, future_actions, *, seed: int = 0, sample: bool = True):
        """Observe (obs, actions), then imagine ``future_actions`` (B, H, action_dim) ahead:
        {"obs" (B, H, *obs_shape) decoded, "reward" (B, H), "discount" (B, H) probabilities}.
        ``sample=False`` takes each step's most likely latent classes."""
        seen = self.observe(obs, actions, seed=seed)
        future = as_batch(future_actions, "future_actions", device=self.device)
        if future.dim() != 3 or future.shape[0] != seen.h.shape[0] or \
                future.shape[-1] != self.model.config.action_dim:  # fmt: skip
            raise ValueError(f"future_actions have shape {tuple(future.shape)}; expected "
                             f"({seen.h.shape[0]}, H, {self.model.config.action_dim})")  # fmt: skip
        g = torch.Generator(self.device).manual_seed(seed + 1)
        dream = self.model.rssm.imagine((seen.h[:, -1], seen.z[:, -1]), future, g, sample)
        out = self.model.heads(dream)
        return {"obs": self.model.decoded(out["obs_mean"].float()),
                "reward": out["reward_mean"].float(),
                "discount": torch.sigmoid(out["discount_logits"].float())}  # fmt: skip


class WorldModelRecipe(Recipe):
    headline = "test/obs:min"  # what a study optimizes by default
    name = "world-model"
    help = "a DreamerV2-style world model on episodes; --preset debug runs in seconds"
    config = WorldModelRunConfig
    eval_options = WorldModelEvalOptions
    loaded = LoadedWorldModel
    renamed: ClassVar[dict[str, str | None]] = {
        "model.image_shape": "model.obs_shape",
        "objective.image_scale": "objective.obs_scale",
    }
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "the same as small",
        "small": "100 CartPole episodes at 64x64, RSSM 200 + 32x32, 100 epochs: ~15 min",
        "debug": "6 short episodes at 32x32, a tiny RSSM, 2 epochs: seconds",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "small": {},
        "debug": {
            "data": {
                "collect": {"episodes": 6, "max_steps": 40, "image_size": 32},
                "seq_len": 12,
            },
            "model": {
                "deter": 32,
                "hidden": 32,
                "groups": 4,
                "classes": 4,
                "channels": (8, 16),
                "embed": 32,
                "head_hidden": (32,),
            },
            "train": {"epochs": 2, "batch_size": 4, "checkpoint_every": 10, "eval_every": 1},
            "evaluate": {"context": 3, "horizon": 6, "eval_sequences": 8},
        },
    }

    def default_out(self, cfg):
        return f"runs/wm-{cfg.data.collect.env.split('/')[-1]}"

    def data(self, cfg, run_dir):
        return cfg.data.load(run_dir, cfg.train.seed)

    def learner(self, cfg, data) -> ObjectiveLearner:
        return ObjectiveLearner(WorldModel(cfg.model), cfg.objective.build(), cfg.optim,
                                compile_speedup=COMPILE_SPEEDUP)  # fmt: skip

    def build(self, cfg, run_dir, *, world, say) -> Built:
        folder = cfg.data.folder(run_dir)
        if not cfg.data.source and not (folder / "meta.json").exists():
            if world.size > 1:
                raise ConfigError("under torchrun, collect first (elbokit collect) and pass --data")
            for partial in folder.glob("episode-*.npz"):  # an interrupted collection of this run's
                partial.unlink()
            say(
                f"collecting {cfg.data.collect.episodes} episodes of {cfg.data.collect.env} into {folder}"
            )
            t0 = time.perf_counter()
            meta = cfg.data.collect.run(folder, seed=cfg.train.seed, progress=cfg.train.progress)
            say(summary(meta, time.perf_counter() - t0, folder))
        data = self.data(cfg, run_dir)
        ev = cfg.evaluate
        if ev.report and not data.windows("test", ev.context + ev.horizon):
            raise ConfigError(  # fail before training, not after it
                f"no test episode has --context + --horizon = {ev.context + ev.horizon} steps for "
                f"the open-loop evaluation; lower them, collect longer episodes, or pass --no-report"
            )
        cfg = derive(cfg, model={"obs_shape": data.image_shape, "action_dim": data.action_dim})
        torch.manual_seed(cfg.train.seed)
        learner = self.learner(cfg, data)
        steps = sum(len(e["image"]) for e in data.train)
        m = cfg.model
        lines = [
            f"data: {folder}, {len(data.train)} train / {len(data.test)} test episodes, {steps} "
            f"train steps of {data.image_shape} images, {data.action_dim} actions; sequences of "
            f"{cfg.data.seq_len}",
            f"model: RSSM {m.deter} deter + {m.groups}x{m.classes} categorical, conv "
            f"{m.channels}, {sum(p.numel() for p in learner.model.parameters()):,} parameters",
        ]
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        return WorldModelEvalOptions() if cfg.evaluate.report else None

    def measure(self, run: Run, options: WorldModelEvalOptions) -> tuple[dict, list[str]]:
        """Open-loop errors, latent usage and the test loss terms of a run."""
        cfg, ev = run.config, run.config.evaluate
        data = run.data()
        learner, state = run.learner(data)
        model = learner.model
        result, _ = open_loop(
            model, data, context=ev.context, horizon=ev.horizon, sequences=ev.eval_sequences,
            seed=options.seed, gamma=cfg.objective.gamma,
        )  # fmt: skip
        usage = latent_usage(model, data, seed=options.seed)
        terms = Trainer(cfg.train, run.dir).evaluate(learner, data, state["step"]).named()
        out = {"step": state["step"], "open_loop": result.as_dict(), "latent_usage": usage, **terms}
        ol = out["open_loop"]
        perp = torch.tensor(usage["perplexity"])
        lines = [
            f"{run.dir} at step {state['step']}: {result.sequences} test sequences, "
            f"{ev.context} context frames, {ev.horizon} steps open loop",
            f"  image MSE {ol['image_mse_mean']:.5f} vs copy-last-frame "
            f"{ol['copy_last_mse_mean']:.5f} ({versus(ol['image_mse_mean'], ol['copy_last_mse_mean'])}); "
            f"last step {ol['image_mse'][-1]:.5f} vs {ol['copy_last_mse'][-1]:.5f}",
            f"  reward MAE {ol['reward_mae_mean']:.4f} (mean-reward baseline "
            f"{ol['reward_mean_mae_mean']:.4f}); discount MAE {ol['discount_mae_mean']:.4f}",
            f"  latent usage: perplexity per group {perp.min():.1f}-{perp.max():.1f} (median "
            f"{perp.median():.1f}) of {usage['classes']}; test KL "
            f"{terms.get('test/kl', float('nan')):.2f} nats",
        ]
        return out, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves
        from elbokit.report import world_model as figures

        cfg, ev = run.config, run.config.evaluate
        _, seqs = open_loop(
            learner.model, data, context=ev.context, horizon=ev.horizon,
            sequences=ev.eval_sequences, seed=options.seed, keep=6, gamma=cfg.objective.gamma,
        )  # fmt: skip
        ol = result["open_loop"]
        obj = cfg.objective
        terms = (("obs", "image NLL (nats)"), ("obs_mse", "image MSE per pixel"),
                 ("reward", "reward NLL (nats)"), ("discount", "discount NLL (nats)"),
                 ("kl", "KL(posterior || prior) (nats)"))  # fmt: skip
        pngs = [
            (figures.prediction_strip(seqs["truth"], seqs["imagined"], out / "open_loop.png"),
             "Test sequences: the truth, and under it the model's open-loop imagination from the context frames under the recorded actions."),
            (figures.prediction_gif(seqs["truth"], seqs["imagined"], out / "open_loop.gif"),
             "The same, animated: truth (top row) and imagination (bottom row) per imagined step."),
            (figures.open_loop_errors(ol, out / "open_loop_errors.png"),
             "Open-loop error per imagined step against the copy-the-last-frame and mean-reward baselines."),
            (curves(run.dir / "metrics.jsonl", out / "curves.png", terms),
             "Loss terms over training (train: running means; test: per evaluation)."),
            (figures.kl_balance_parts(run.dir / "metrics.jsonl", out / "kl_balance.png", obj.kl_balance, obj.free_nats),
             f"The KL between posterior and prior, and its dyn and rep parts as the loss weighs them ({obj.free_mode} free nats). "
             "The two parts have the same value by construction (before weighting); they differ in where the gradient goes."),
            (figures.latent_usage(result["latent_usage"], out / "latent_usage.png"),
             "Classes used per latent group: groups near 1 have collapsed."),
        ]  # fmt: skip
        perp = torch.tensor(result["latent_usage"]["perplexity"])
        meta, m = data.meta, cfg.model
        numbers = {
            "data": f"{meta.get('env', data.name)}: {len(data.train)} train / {len(data.test)} test episodes, policy {meta.get('policy', '?')}",
            "model": f"RSSM {m.deter} + {m.groups}x{m.classes} categorical, conv {m.channels}",
            "trained": f"{state['step']} steps",
            f"open-loop image MSE ({ev.horizon} steps after {ev.context})": f"{ol['image_mse_mean']:.5f}",
            "copy-last-frame baseline MSE": f"{ol['copy_last_mse_mean']:.5f} (the model's is {versus(ol['image_mse_mean'], ol['copy_last_mse_mean'])})",
            "open-loop reward MAE": f"{ol['reward_mae_mean']:.4f} (mean-reward baseline {ol['reward_mean_mae_mean']:.4f})",
            "open-loop discount MAE": f"{ol['discount_mae_mean']:.4f}",
            "test image NLL / MSE per pixel": f"{result.get('test/obs', float('nan')):.1f} nats / {result.get('test/obs_mse', float('nan')):.5f}",
            "test KL(posterior || prior)": f"{result.get('test/kl', float('nan')):.2f} nats",
            "latent usage (perplexity per group)": f"min {perp.min():.1f}, median {perp.median():.1f}, max {perp.max():.1f} of {result['latent_usage']['classes']}",
        }  # fmt: skip
        return f"elbokit world model: {run.dir.name}", numbers, pngs
