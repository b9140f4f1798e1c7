"""Training steps per second of the world model, measured in one run against peers:

  elbokit       the trainer (``Trainer.fit``) on the preset's model, objective and episodes
  elbokit bf16  the same under ``--precision bf16`` (autocast)
  bare          a hand-written PyTorch loop over the same model, objective and batches
                (torch.optim.Adam, clip_grad_norm_): the framework's overhead is elbokit / bare
  sheeprl       sheeprl's DreamerV2 world-model update (its ``world_model_loss``, Fabric backward,
                gradient clipping, Adam) at the same sizes, on the same batches, when sheeprl is
                installed; 64x64 images only (its encoder is fixed at 4 unpadded stride-2 convs)

    python benchmarks/world_model_bench.py --threads 2                 # debug and small
    python benchmarks/world_model_bench.py --threads 1 --steps 20

Episodes are collected from CartPole (gymnasium) into a temporary folder. Each trainer timing is
the difference of two runs from the same initialization (warm-up steps, then warm-up + steps),
both after a first untimed run of warm-up steps, so start-up costs and the process's one-time
costs cancel. Thread count: set with --threads and printed; say which in any record.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from elbokit import recipes
from elbokit.config import leaves, merge
from elbokit.data.collect import collect_episodes
from elbokit.data.episodes import load_episodes
from elbokit.models.world_model import WorldModel
from elbokit.recipes.base import derive
from elbokit.train import ObjectiveLearner, Trainer
from elbokit.train.learner import StepContext
from elbokit.train.settings import bf16_is_native, describe_machine

RECIPE = recipes.get_recipe("world-model")


def flat(run_cfg):
    """The run config's leaves by name (unique within a kind): cfg.deter, cfg.lr, ..."""
    return SimpleNamespace(run=run_cfg, **{leaf.path[-1]: leaf.value for leaf in leaves(run_cfg)})


def _data(cfg, folder: Path, episodes: int):
    collect_episodes(cfg.env, out=folder, episodes=episodes, size=cfg.image_size,
                     max_steps=cfg.max_steps, seed=0, progress=False)  # fmt: skip
    return load_episodes(folder, seq_len=cfg.seq_len, seed=0)


def _derived(cfg, data):
    return derive(cfg.run, model={"obs_shape": data.image_shape, "action_dim": data.action_dim})


def _fresh(cfg, data):
    torch.manual_seed(0)
    return WorldModel(_derived(cfg, data).model)


def build_objective(cfg):
    return cfg.run.objective.build()


def time_learner(cfg, data, warmup: int, steps: int, compile: bool) -> float:
    """Steps per second of the kind's learner stepped directly on full batches (the trainer's
    epochs end in a shorter batch, which a compiled step compiles again), eager or compiled as
    ``--compile on`` compiles it; the compiling falls in the warm-up."""
    run_cfg = _derived(cfg, data)
    torch.manual_seed(0)
    learner = ObjectiveLearner(WorldModel(run_cfg.model), build_objective(cfg), run_cfg.optim)
    learner.setup(StepContext(compile=compile))
    full = [b for b in _batches(cfg, data, 2 * (warmup + steps)) if len(b) == cfg.batch_size]
    for i, batch in enumerate(full[: warmup + steps]):
        if i == warmup:
            t0 = time.perf_counter()
        learner.train_step(batch, i)
    return steps / (time.perf_counter() - t0)


def time_elbokit(cfg, data, warmup: int, steps: int, workdir: Path, precision="fp32") -> float:
    run_cfg = merge(_derived(cfg, data), {"train": {
        "epochs": 10_000, "eval_every": 10_000, "checkpoint_every": 10**9, "progress": False,
        "precision": precision}})  # fmt: skip
    seconds = []
    # a first run pays the process's one-time costs (oneDNN's kernel choices, allocations); the
    # two timed runs come after it, else their difference would leave those costs out of the
    # steps and overstate the rate (benchmarks/diffusion_bench.py's trainer read 2x too fast so)
    for n in (warmup, warmup, warmup + steps):
        out = Path(tempfile.mkdtemp(dir=workdir))
        torch.manual_seed(0)
        learner = ObjectiveLearner(WorldModel(run_cfg.model), build_objective(cfg), run_cfg.optim)
        t0 = time.perf_counter()
        Trainer(run_cfg.train, out).fit(learner, data, stop_at=n)
        seconds.append(time.perf_counter() - t0)
    return steps / (seconds[2] - seconds[1])


def _batches(cfg, data, n: int):
    out, epoch = [], 0
    while len(out) < n:
        out += list(data.batches("train", cfg.batch_size, seed=0, epoch=epoch))
        epoch += 1
    return out[:n]


def time_bare(cfg, data, warmup: int, steps: int) -> float:
    model, objective = _fresh(cfg, data), build_objective(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = _batches(cfg, data, warmup + steps)
    for i, batch in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        loss = objective(model, batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return steps / (time.perf_counter() - t0)


def time_sheeprl(cfg, data, warmup: int, steps: int) -> tuple[float, int]:
    """sheeprl's DreamerV2 world-model step at the preset's sizes, on the same batches."""
    import gymnasium as gym
    import numpy as np
    from hydra import compose, initialize_config_module
    from lightning.fabric import Fabric
    from omegaconf import OmegaConf
    from sheeprl.algos.dreamer_v2.agent import build_agent
    from sheeprl.algos.dreamer_v2.dreamer_v2 import world_model_loss
    from sheeprl.utils.utils import dotdict

    if len(cfg.channels) != 4 or any(
        c != cfg.channels[0] * 2**i for i, c in enumerate(cfg.channels)
    ):
        raise ValueError(f"sheeprl's encoder has 4 doubling conv layers; channels {cfg.channels}")
    overrides = [
        "exp=dreamer_v2", "env=gym", f"env.id={cfg.env}", "algo.cnn_keys.encoder=[rgb]",
        "algo.mlp_keys.encoder=[]", f"env.screen_size={cfg.image_size}",
        f"algo.world_model.encoder.cnn_channels_multiplier={cfg.channels[0]}",
        f"algo.dense_units={cfg.head_hidden[0]}", f"algo.mlp_layers={len(cfg.head_hidden)}",
        f"algo.world_model.recurrent_model.recurrent_state_size={cfg.deter}",
        f"algo.world_model.transition_model.hidden_size={cfg.hidden}",
        f"algo.world_model.representation_model.hidden_size={cfg.hidden}",
        f"algo.world_model.stochastic_size={cfg.groups}", f"algo.world_model.discrete_size={cfg.classes}",
        "algo.world_model.use_continues=True", "fabric.accelerator=cpu",
    ]  # fmt: skip
    with initialize_config_module(version_base="1.3", config_module="sheeprl.configs"):
        scfg = compose(config_name="config", overrides=overrides)
    scfg = dotdict(OmegaConf.to_container(scfg, resolve=True, throw_on_missing=False))
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    space = gym.spaces.Dict(
        {"rgb": gym.spaces.Box(0, 255, (3, cfg.image_size, cfg.image_size), np.uint8)}
    )
    torch.manual_seed(0)
    wm = build_agent(fabric, (data.action_dim,), False, scfg, space)[0]
    opt = torch.optim.Adam(wm.parameters(), lr=cfg.lr)
    # sheeprl's Bernoulli continue head rejects soft targets (0.99) under torch's default
    # argument validation; its CLI switches validation off globally, as we must here
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        batches = _batches(cfg, data, warmup + steps)
        for i, b in enumerate(batches):
            if i == warmup:
                t0 = time.perf_counter()
            first = torch.zeros_like(b.reward)
            first[:, 0] = 1
            sb = {
                "rgb": (b.image * 255).transpose(0, 1),
                "actions": b.action.transpose(0, 1),
                "rewards": b.reward.transpose(0, 1)[..., None],
                "terminated": (1 - b.discount).transpose(0, 1)[..., None],
                "is_first": first.transpose(0, 1)[..., None],
            }
            loss = world_model_loss(
                wm, sb, cnn_keys=("rgb",), mlp_keys=(), stochastic_size=cfg.groups,
                discrete_size=cfg.classes, recurrent_state_size=cfg.deter, use_continues=True,
                gamma=cfg.gamma, kl_balancing_alpha=cfg.kl_balance, kl_free_nats=cfg.free_nats,
                kl_free_avg=cfg.free_mode == "mean", kl_regularizer=cfg.kl_scale,
                discount_scale_factor=cfg.discount_scale, entropies=False,
            )[0]  # fmt: skip
            opt.zero_grad(set_to_none=True)
            fabric.backward(loss)
            fabric.clip_gradients(wm, opt, max_norm=cfg.grad_clip, error_if_nonfinite=False)
            opt.step()
        rate = steps / (time.perf_counter() - t0)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    return rate, sum(p.numel() for p in wm.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["debug", "small"])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=20, help="episodes collected per preset")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument(
        "--compiled",
        action="store_true",
        help="also time --compile on (between two eager timings: the machine drifts)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe_machine()}; {args.steps} timed steps after {args.warmup}")
    if not args.no_bf16 and not bf16_is_native():
        print("bf16 is emulated on this CPU (measured): the bf16 column is skipped")
        args.no_bf16 = True
    try:
        import sheeprl

        have_sheeprl = sheeprl.__version__
    except ImportError:
        have_sheeprl = None
    print(f"sheeprl: {have_sheeprl or 'not installed (pip install sheeprl)'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.presets:
            cfg = flat(RECIPE.preset(name))
            data = _data(cfg, work / f"episodes-{name}", args.episodes)
            params = sum(p.numel() for p in _fresh(cfg, data).parameters())
            row = {"preset": name, "params": params}
            print(f"\n{name}: batch {cfg.batch_size} x {cfg.seq_len} steps of {data.image_shape}, "
                  f"RSSM {cfg.deter} + {cfg.groups}x{cfg.classes}, conv {cfg.channels}, {params:,} parameters")  # fmt: skip
            torch.set_flush_denormal(True)  # as the trainer does, for every contestant
            row["bare"] = time_bare(cfg, data, args.warmup, args.steps)
            row["elbokit"] = time_elbokit(cfg, data, args.warmup, args.steps, work)
            if not args.no_bf16:
                row["bf16"] = time_elbokit(cfg, data, args.warmup, args.steps, work, "bf16")
            if args.compiled:  # the learner's step, eager, compiled, eager (the machine drifts)
                row["step"] = time_learner(cfg, data, args.warmup, args.steps, False)
                row["compiled"] = time_learner(cfg, data, args.warmup, args.steps, True)
                row["step again"] = time_learner(cfg, data, args.warmup, args.steps, False)
            if have_sheeprl and cfg.image_size == 64:
                row["sheeprl"], row["sheeprl_params"] = time_sheeprl(
                    cfg, data, args.warmup, args.steps
                )
            torch.set_flush_denormal(False)
            for k in ("bare", "elbokit", "bf16", "step", "compiled", "step again", "sheeprl"):
                if k in row:
                    extra = f" ({row['sheeprl_params']:,} parameters)" if k == "sheeprl" else ""
                    print(f"  {k:<11} {row[k]:7.2f} steps/s{extra}")
            if "compiled" in row:
                eager = (row["step"] + row["step again"]) / 2
                print(f"  the learner's step compiled / eager {row['compiled'] / eager:.2f}x "
                      "(eager: the mean of the timings before and after)")  # fmt: skip
            rows.append(row)
    print(
        "\n| preset | elbokit steps/s | bare loop | elbokit / bare | elbokit bf16 / bare | sheeprl | elbokit / sheeprl |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        bf = f"{r['bf16'] / r['bare']:.2f}x" if "bf16" in r else "-"
        sh = (
            (f"{r['sheeprl']:.2f}", f"{r['elbokit'] / r['sheeprl']:.2f}x")
            if "sheeprl" in r
            else ("-", "-")
        )
        print(f"| {r['preset']} | {r['elbokit']:.2f} | {r['bare']:.2f} | {r['elbokit'] / r['bare']:.2f}x | {bf} | {sh[0]} | {sh[1]} |")  # fmt: skip


if __name__ == "__main__":
    main()
