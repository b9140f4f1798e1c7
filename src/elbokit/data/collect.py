"""Collect episodes with pixel observations from a gymnasium environment, with no display.

    collect_episodes("CartPole-v1", out="runs/cartpole", episodes=100, policy="scripted")

The environment renders (``render_mode="rgb_array"``, SDL's dummy video driver) and each frame is
area-averaged to ``size`` x ``size``. Policies: ``random`` (uniform over the action space) and,
for CartPole, ``scripted``: push towards the side the pole falls to (angle + 0.5 * angular
velocity), with probability ``epsilon`` a random action instead, so episodes are long and varied.
Discrete actions are stored one-hot, Box actions as they are. Everything is seeded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from elbokit.config import Section, opt
from elbokit.data.episode_files import save_episode
from elbokit.files import atomic_write_text
from elbokit.models.envs import gymnasium_module, resize_frame
from elbokit.seeding import mix

POLICIES = ("random", "scripted")
SCRIPTED = ("CartPole-v0", "CartPole-v1")


@dataclass(frozen=True)
class CollectSettings(Section):
    """What to collect: the environment, how many episodes, the policy and the frames."""

    env: str = opt("CartPole-v1", "a gymnasium environment id")
    episodes: int = opt(100, "episodes to collect", ge=1)
    policy: Literal["scripted", "random"] = opt(
        "scripted", "scripted (CartPole: balance, with epsilon random actions) or random"
    )
    epsilon: float = opt(0.5, "random-action probability (scripted)", ge=0, le=1)
    image_size: int = opt(64, "frames are resized to this square", ge=8)
    max_steps: int = opt(200, "steps before an episode is cut", ge=1)

    def run(self, out, *, seed: int, progress: bool) -> dict:
        return collect_episodes(
            self.env, out=out, episodes=self.episodes, policy=self.policy, epsilon=self.epsilon,
            size=self.image_size, max_steps=self.max_steps, seed=seed, progress=progress,
        )  # fmt: skip


@dataclass(frozen=True)
class CollectConfig(Section):
    """``elbokit collect``: the settings, the seed, where the episodes go."""

    collect: CollectSettings = opt(default_factory=CollectSettings, help="what to collect")
    seed: int = opt(0, "seeds the environment and the policy", ge=0)
    out: str = opt("data/episodes", "folder for the episode files")
    progress: bool = opt(True, "progress bar")


def _encode_action(space, action) -> np.ndarray:
    if hasattr(space, "n"):
        out = np.zeros(int(space.n), np.float32)
        out[int(action)] = 1.0
        return out
    return np.asarray(action, np.float32).reshape(-1)


def _action_size(space) -> int:
    if hasattr(space, "n"):
        return int(space.n)
    if getattr(space, "shape", None) is not None and len(space.shape) == 1:
        return int(space.shape[0])
    raise ValueError(f"action space {space} is not Discrete or a 1-D Box")


def summary(meta: dict, seconds: float, out) -> str:
    """One line about a collection (its meta.json) for the console."""
    return (
        f"collected {meta['episodes']} episodes, {meta['steps']} steps (mean length "
        f"{meta['mean_length']:.1f}, mean return {meta['mean_return']:.1f}) of {meta['env']} in "
        f"{seconds:.1f} s into {out}"
    )


def collect_episodes(
    env_id: str = "CartPole-v1",
    *,
    out: str | os.PathLike,
    episodes: int = 100,
    policy: str = "scripted",
    epsilon: float = 0.5,
    size: int = 64,
    max_steps: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run ``episodes`` episodes and write them to ``out`` (with meta.json); returns the meta.

    Raises:
        ValueError: an unknown policy, a scripted policy for an environment that has none, bad
            sizes, or a folder that already holds episodes. ImportError: gymnasium is missing.
    """

    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r}; expected one of {', '.join(POLICIES)}")
    gym = gymnasium_module()
    if env_id not in gym.registry:
        from elbokit.config import closest

        hint = closest(env_id, list(gym.registry))
        raise ValueError(
            f"gymnasium has no environment {env_id!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
        )
    if policy == "scripted" and env_id not in SCRIPTED:
        raise ValueError(
            f"no scripted policy for {env_id}; it exists for {', '.join(SCRIPTED)}: use --policy random"
        )
    for name, v, lo in (("episodes", episodes, 1), ("size", size, 8), ("max_steps", max_steps, 1)):
        if v < lo:
            raise ValueError(f"{name}={v}; expected >= {lo}")
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon={epsilon}; expected 0 <= epsilon <= 1")
    folder = Path(out)
    existing = sorted(folder.glob("episode-*.npz")) if folder.is_dir() else []
    if existing:
        raise ValueError(
            f"{folder} already holds {len(existing)} episode files; collect into another --out "
            "(episodes of two collections would mix)"
        )
    try:
        env = gym.make(env_id, render_mode="rgb_array", max_episode_steps=max_steps)
    except gym.error.Error as e:
        raise ValueError(f"gymnasium cannot make {env_id!r}: {e}") from None
    space = env.action_space
    _action_size(space)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(mix(seed, 0xC011))
    space.seed(mix(seed, 0xAC7))
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=episodes, desc=f"collect {env_id}", unit="episode")
        except ImportError:
            pass
    lengths, returns = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=mix(seed, i) % 2**31)
            frames = [resize_frame(env.render(), size)]
            actions = [np.zeros(_action_size(space), np.float32)]
            rewards, discounts = [0.0], [1.0]
            done = False
            while not done:
                if policy == "scripted" and rng.random() >= epsilon:
                    action = int(obs[2] + 0.5 * obs[3] > 0)
                else:
                    action = space.sample()
                obs, reward, terminated, truncated, _ = env.step(action)
                frames.append(resize_frame(env.render(), size))
                actions.append(_encode_action(space, action))
                rewards.append(float(reward))
                discounts.append(0.0 if terminated else 1.0)
                done = terminated or truncated
            save_episode(
                folder / f"episode-{i:06d}.npz",
                {
                    "image": np.stack(frames),
                    "action": np.stack(actions),
                    "reward": np.asarray(rewards, np.float32),
                    "discount": np.asarray(discounts, np.float32),
                },
            )
            lengths.append(len(frames))
            returns.append(sum(rewards))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(length=len(frames), refresh=False)
    finally:
        env.close()
        if bar is not None:
            bar.close()
    meta = {
        "env": env_id,
        "policy": policy,
        "epsilon": epsilon if policy == "scripted" else None,
        "size": size,
        "max_steps": max_steps,
        "seed": seed,
        "episodes": episodes,
        "steps": int(sum(lengths)),
        "mean_length": float(np.mean(lengths)),
        "mean_return": float(np.mean(returns)),
    }
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2))
    return meta
