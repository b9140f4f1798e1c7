"""Time sheeprl's DreamerV3 gradient step on CartPole-v1 state vectors, on CPU.

One gradient step is what sheeprl's own `main` (sheeprl.algos.dreamer_v3.dreamer_v3) does per sampled batch:
the soft update of the target critic, then its `train` function (world-model update, imagination of
`horizon` steps from every posterior, actor update, critic update). The models, optimizers, `Moments` and
metric aggregator are built as `main` builds them, from the hydra config that sheeprl's CLI composes
(`exp=dreamer_v3 env=gym env.id=CartPole-v1`, no image keys), with the sizes given on the command line.
The batches are synthetic but shaped as sheeprl's replay buffer gives them: (seq, batch, ...) float tensors.

sheeprl lives in its own virtual environment, so this runs as a script there and prints one JSON line:

    /work/speer/bin/python benchmarks/_sheeprl_v3.py --threads 2 --steps 20 --warmup 3 --deter 64 \
        --hidden 64 --groups 8 --classes 8 --dense 64 --layers 2 --batch 16 --seq 16 --horizon 15
    -> {"sheeprl": "0.8.4", "steps_per_s": ..., "parameters": ..., "seconds": ..., "config": {...}, ...}

`parameters` counts the trained weights (world model incl. its learnable initial recurrent state, actor,
critic); the target critic (a copy of the critic) is not counted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time


def time_sheeprl_v3(a: argparse.Namespace) -> dict:
    import gymnasium as gym
    import hydra
    import numpy as np
    import torch
    from hydra import compose, initialize_config_module
    from lightning.fabric import Fabric
    from omegaconf import OmegaConf
    from sheeprl.algos.dreamer_v3 import utils as v3_utils
    from sheeprl.algos.dreamer_v3.agent import build_agent
    from sheeprl.algos.dreamer_v3.dreamer_v3 import train
    from sheeprl.algos.dreamer_v3.utils import Moments
    from sheeprl.utils.metric import MetricAggregator
    from sheeprl.utils.utils import dotdict
    from torch.distributions import Distribution

    torch.set_num_threads(a.threads)
    if a.flush_denormal:  # as world_model_bench.py does for every contestant
        torch.set_flush_denormal(True)
    overrides = [
        "exp=dreamer_v3", "env=gym", "env.id=CartPole-v1", "fabric.accelerator=cpu",
        # exp=dreamer_v3 sets the image decoder keys to [rgb] explicitly: cleared with the encoder's
        "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]", "algo.mlp_keys.encoder=[state]",
        # encoder, decoder, reward, continue, actor and critic MLPs all follow these two (checked in the yaml)
        f"algo.dense_units={a.dense}", f"algo.mlp_layers={a.layers}",
        f"algo.world_model.recurrent_model.recurrent_state_size={a.deter}",
        # the MLP in front of the GRU (sheeprl: algo.dense_units by default; elbokit: its `hidden`)
        f"algo.world_model.recurrent_model.dense_units={a.rnn_units or a.hidden}",
        f"algo.world_model.transition_model.hidden_size={a.hidden}",
        f"algo.world_model.representation_model.hidden_size={a.hidden}",
        f"algo.world_model.stochastic_size={a.groups}", f"algo.world_model.discrete_size={a.classes}",
        f"algo.horizon={a.horizon}", f"algo.per_rank_batch_size={a.batch}",
        f"algo.per_rank_sequence_length={a.seq}", f"metric.log_level={a.log_level}",
    ]  # fmt: skip
    with initialize_config_module(version_base="1.3", config_module="sheeprl.configs"):
        cfg = compose(config_name="config", overrides=overrides)
    cfg = dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))

    # The global settings of sheeprl's CLI (cli.run_algorithm): distribution validation off by default
    # (its Bernoulli continue head gets soft targets), matmul precision, metrics on with log_level > 0
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(cfg.distribution.validate_args)
    metrics = {
        k: v for k, v in cfg.metric.aggregator.metrics.items() if k in v3_utils.AGGREGATOR_KEYS
    }
    cfg.metric.aggregator.metrics = metrics
    MetricAggregator.disabled = cfg.metric.log_level == 0 or len(metrics) == 0

    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.seed_everything(cfg.seed)
    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    actions_dim = (2,)  # CartPole: one discrete action of 2 choices
    world_model, actor, critic, target_critic, _player = build_agent(
        fabric, actions_dim, False, cfg, obs_space
    )

    # Optimizers, Moments and aggregator exactly as `main` makes them
    world_opt = hydra.utils.instantiate(
        cfg.algo.world_model.optimizer, params=world_model.parameters(), _convert_="all"
    )
    actor_opt = hydra.utils.instantiate(
        cfg.algo.actor.optimizer, params=actor.parameters(), _convert_="all"
    )
    critic_opt = hydra.utils.instantiate(
        cfg.algo.critic.optimizer, params=critic.parameters(), _convert_="all"
    )
    world_opt, actor_opt, critic_opt = fabric.setup_optimizers(world_opt, actor_opt, critic_opt)
    m = cfg.algo.actor.moments
    moments = Moments(m.decay, m.max, m.percentile.low, m.percentile.high)
    aggregator = None
    if not MetricAggregator.disabled:
        aggregator = hydra.utils.instantiate(cfg.metric.aggregator, _convert_="all").to(
            fabric.device
        )

    # Synthetic replay batches, (seq, batch, ...) float32 as `sample_batches` yields them
    gen = torch.Generator().manual_seed(0)
    T, B = a.seq, a.batch

    def batch() -> dict:
        terminated = (torch.rand(T, B, 1, generator=gen) < 0.02).float()  # a few episode ends
        is_first = torch.zeros(T, B, 1)
        is_first[0] = 1
        is_first[1:] = terminated[:-1]  # after an end the replay holds the reset observation
        return {
            "state": torch.randn(T, B, 4, generator=gen) * torch.tensor([1.0, 1.0, 0.1, 1.0]),
            "actions": torch.nn.functional.one_hot(
                torch.randint(0, 2, (T, B), generator=gen), 2
            ).float(),
            "rewards": torch.ones(T, B, 1),
            "terminated": terminated,
            "truncated": torch.zeros(T, B, 1),
            "is_first": is_first,
        }

    batches = [batch() for _ in range(a.warmup + a.steps)]
    try:
        for i, data in enumerate(batches):
            if i == a.warmup:
                t0 = time.perf_counter()
            # the target-critic update `main` runs before every `train` (freq 1 by default)
            if i % cfg.algo.critic.per_rank_target_network_update_freq == 0:
                tau = 1 if i == 0 else cfg.algo.critic.tau
                for cp, tcp in zip(
                    critic.module.parameters(), target_critic.parameters(), strict=True
                ):
                    tcp.data.copy_(tau * cp.data + (1 - tau) * tcp.data)
            train(fabric, world_model, actor, critic, target_critic, world_opt, actor_opt, critic_opt,
                  data, aggregator, cfg, False, actions_dim, moments)  # fmt: skip
        seconds = time.perf_counter() - t0
    finally:
        Distribution.set_default_validate_args(validate)

    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    parts = {"world_model": count(world_model), "actor": count(actor), "critic": count(critic)}
    return {
        "sheeprl": importlib.metadata.version("sheeprl"),
        "steps_per_s": a.steps / seconds,
        "parameters": sum(parts.values()),
        "seconds": seconds,
        "config": vars(a),
        "parameters_by_part": parts,
        "overrides": overrides,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("threads", 2), ("steps", 20), ("warmup", 3), ("deter", 64), ("hidden", 64),
                          ("groups", 8), ("classes", 8), ("dense", 64), ("layers", 2), ("batch", 16),
                          ("seq", 16), ("horizon", 15)]:  # fmt: skip
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--rnn-units", type=int, default=0, help="MLP before the GRU; 0: --hidden")
    ap.add_argument(
        "--log-level", type=int, default=1, help="sheeprl metric.log_level; 0: no metrics"
    )
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    a = ap.parse_args()
    if a.steps < 1:
        ap.error("--steps must be at least 1")
    print(json.dumps(time_sheeprl_v3(a)))


if __name__ == "__main__":
    main()
