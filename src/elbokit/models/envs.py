"""Environments for agents that learn from their own experience, stepped as a batch.

    env = make_env("point", n=8, seed=0)          # or any gymnasium id with Box spaces
    obs = env.reset()                              # (n, obs_dim) float32 tensor
    out = env.step(actions)                        # actions (n, act_dim) in [-1, 1]

``step`` returns a ``Transition``: ``next_obs`` is the state each action led to (the true s',
also where an episode ended), ``obs`` what to act on next (a fresh start where an episode ended:
the reset is immediate), ``terminated`` (a real end, no bootstrapping past it) and ``truncated``
(a time limit, not an end) per environment, and the environment's ``reward``. Actions are given in
[-1, 1] and scaled to the action space's bounds.

``point``: a point in the box [-1, 1]^2 that starts at the origin and moves by ``step_size`` times
the action (clipped to the box) for ``horizon`` steps, with no reward of its own: the 2-D
navigation task of skill discovery. ``PointEnv`` is the same task as one ``gymnasium.Env``; the
batch version steps all n points in one tensor operation and saves its whole state, so a resumed
run continues the very episodes it left.

Any other name is a gymnasium id (``Pendulum-v1``, ``MountainCarContinuous-v0``, a MuJoCo task
where ``mujoco`` installs): n copies stepped in turn, each reset with a seed derived from (seed,
copy, episode). ``discrete=True`` admits Discrete action spaces (CartPole): actions are then given
one-hot, (n, number of actions), and the index of the largest is taken. ``pixels=N`` observes the
rendered frame, area-averaged to N x N, as (n, 3, N, N) floats in [0, 1] instead of the state.
A simulator's internal state cannot be saved in general; for the classic-control tasks (CartPole,
Pendulum, ...: a ``state`` array, a random generator and a step count) it is, so a resumed run
continues the very episodes it left (``exact``); other tasks restart their episodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from elbokit.seeding import mix

__all__ = ["GymBatch", "PointBatch", "Transition", "make_env", "point_env_class"]


@dataclass
class Transition:
    obs: torch.Tensor  # (n, obs_dim) what to act on next
    next_obs: torch.Tensor  # (n, obs_dim) where each action led
    reward: torch.Tensor  # (n,)
    terminated: torch.Tensor  # (n,) bool
    truncated: torch.Tensor  # (n,) bool

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


def _point_move(pos: torch.Tensor, action: torch.Tensor, step_size: float) -> torch.Tensor:
    return (pos + step_size * action.clamp(-1, 1)).clamp(-1, 1)


class PointBatch:
    """n points in [-1, 1]^2 from the origin (see the module docstring)."""

    name = "point"
    obs_dim = 2
    obs_shape = (2,)
    act_dim = 2
    discrete = False
    exact = True  # its whole state is saved

    def __init__(self, n: int, *, horizon: int = 30, step_size: float = 0.1):
        if n < 1 or horizon < 1 or not step_size > 0:
            raise ValueError(
                f"n = {n}, horizon = {horizon}, step_size = {step_size}; expected n >= 1, "
                "horizon >= 1, step_size > 0"
            )
        self.n, self.horizon, self.step_size = n, horizon, step_size
        self.pos = torch.zeros(n, 2)
        self.t = torch.zeros(n, dtype=torch.long)
        self.episodes = 0
        self.continues = False  # load_state restored the episodes in progress

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(2, -1.0), np.full(2, 1.0)

    def reset(self) -> torch.Tensor:
        self.pos.zero_()
        self.t.zero_()
        return self.pos.clone()

    def step(self, action: torch.Tensor) -> Transition:
        _check_actions(action, self.n, self.act_dim)
        nxt = _point_move(self.pos, action.float().cpu(), self.step_size)
        self.t += 1
        truncated = self.t >= self.horizon
        self.episodes += int(truncated.sum())
        self.pos = torch.where(truncated[:, None], torch.zeros_like(nxt), nxt)
        self.t = torch.where(truncated, torch.zeros_like(self.t), self.t)
        return Transition(
            self.pos.clone(), nxt, torch.zeros(self.n), torch.zeros(self.n, dtype=torch.bool),
            truncated,
        )  # fmt: skip

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {"pos": self.pos.clone(), "t": self.t.clone()}, {"episodes": self.episodes}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if tensors["pos"].shape != self.pos.shape:
            raise ValueError(
                f"the saved point environments hold {tuple(tensors['pos'].shape)} positions; "
                f"this run steps {self.n} environments"
            )
        self.pos, self.t = tensors["pos"].float().clone(), tensors["t"].long().clone()
        self.episodes = int(meta.get("episodes", 0))
        self.continues = True

    def close(self) -> None:
        pass


def _check_actions(action: torch.Tensor, n: int, dim: int) -> None:
    if tuple(action.shape) != (n, dim):
        raise ValueError(f"actions have shape {tuple(action.shape)}; expected ({n}, {dim})")


def gymnasium_module():
    """gymnasium, rendering with SDL's dummy video driver (no display); ImportError saying how to
    install it."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gymnasium
    except ImportError:
        raise ImportError(
            "gymnasium environments need gymnasium with pygame: pip install 'elbokit[rl]'"
        ) from None
    return gymnasium


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, size, size) uint8 by area averaging."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()[None]
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="area")[0]
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()


class GymBatch:
    """n copies of a gymnasium environment with Box observations and Box (or, with
    ``discrete``, Discrete) actions; ``pixels`` > 0 observes rendered frames of that size."""

    def __init__(self, env_id: str, n: int, *, seed: int = 0, horizon: int | None = None,
                 discrete: bool = False, pixels: int = 0):  # fmt: skip
        gym = gymnasium_module()
        if env_id not in gym.registry:
            from elbokit.config import closest

            hint = closest(env_id, ["point", *gym.registry])
            raise ValueError(
                f"no environment {env_id!r}: expected 'point' or a gymnasium id"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        kw = {"max_episode_steps": horizon} if horizon else {}
        if pixels:
            kw["render_mode"] = "rgb_array"
        try:
            self.envs = [gym.make(env_id, **kw) for _ in range(n)]
        except (gym.error.Error, ImportError) as e:  # a missing extra (mujoco, box2d)
            raise ValueError(f"gymnasium cannot make {env_id!r}: {e}") from None
        space, act = self.envs[0].observation_space, self.envs[0].action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"{env_id} observes {space}; this needs a 1-D Box observation (a vector of states)"
            )
        self.discrete = isinstance(act, gym.spaces.Discrete)
        if self.discrete and not discrete:
            raise ValueError(f"{env_id} acts in {act}; this agent needs a 1-D Box action space")
        if not self.discrete and (not isinstance(act, gym.spaces.Box) or len(act.shape) != 1):
            raise ValueError(f"{env_id} acts in {act}; expected a 1-D Box or a Discrete space")
        self.name, self.n, self.seed, self.pixels = env_id, n, seed, pixels
        self.obs_dim = int(space.shape[0])
        self.obs_shape = (3, pixels, pixels) if pixels else (self.obs_dim,)
        if self.discrete:
            self.act_dim = int(act.n)
        else:
            self.act_dim = int(act.shape[0])
            self.low, self.high = act.low.astype(np.float32), act.high.astype(np.float32)
        self.space = space
        self.episodes = 0
        self.current = None
        self.continues = False  # load_state restored the episodes in progress

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.space.low.astype(np.float64), self.space.high.astype(np.float64)

    def _observe(self, i: int, state) -> np.ndarray:
        if not self.pixels:
            return np.asarray(state, np.float32)

        return resize_frame(self.envs[i].render(), self.pixels).astype(np.float32) / 255.0

    def _reset_one(self, i: int) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=mix(self.seed, i, self.episodes) % 2**31)
        self.episodes += 1
        return self._observe(i, obs)

    def reset(self) -> torch.Tensor:
        self.current = np.stack([self._reset_one(i) for i in range(self.n)])
        return torch.from_numpy(self.current.copy())

    def render(self, i: int = 0) -> np.ndarray:
        """The frame of copy i, (H, W, 3) uint8 (pixel observations only)."""
        return self.envs[i].render()

    def step(self, action: torch.Tensor) -> Transition:
        _check_actions(action, self.n, self.act_dim)
        a = action.detach().float().cpu()
        if self.discrete:
            scaled = a.argmax(-1).numpy()
        else:
            a = a.clamp(-1, 1).numpy()
            scaled = self.low + (a + 1) * 0.5 * (self.high - self.low)
        nxt, obs = np.empty_like(self.current), np.empty_like(self.current)
        rew = np.zeros(self.n, np.float32)
        term, trunc = np.zeros(self.n, bool), np.zeros(self.n, bool)
        for i, env in enumerate(self.envs):
            o, r, te, tr, _ = env.step(scaled[i].item() if self.discrete else scaled[i])
            nxt[i], rew[i], term[i], trunc[i] = self._observe(i, o), r, te, tr
            obs[i] = self._reset_one(i) if te or tr else nxt[i]
        self.current = obs
        return Transition(*(torch.from_numpy(v.copy()) for v in (obs, nxt, rew, term, trunc)))

    @property
    def exact(self) -> bool:
        """Whether ``state`` saves the simulators whole (the classic-control tasks)."""
        return all(hasattr(e.unwrapped, "state") for e in self.envs)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        meta: dict = {"episodes": self.episodes}
        if not self.exact or self.current is None:
            return {}, meta
        sims = []
        for e in self.envs:
            u = e.unwrapped
            sims.append({
                "state": np.asarray(u.state).tolist(),
                "dtype": str(np.asarray(u.state).dtype),
                "rng": u.np_random.bit_generator.state,
                "elapsed": _time_limit(e),
                "attrs": {k: float(getattr(u, k)) if k == "last_u" else getattr(u, k)
                          for k in ("steps_beyond_terminated", "last_u")
                          if isinstance(getattr(u, k, None), (int, float, np.floating))},
            })  # fmt: skip
        meta["simulators"] = sims
        return {"current": torch.from_numpy(self.current.copy())}, meta

    def load_state(self, tensors, meta) -> None:
        """Restore the episodes in progress where ``exact`` (else they start again)."""
        self.episodes = int(meta.get("episodes", 0))
        sims = meta.get("simulators")
        if sims:
            for e in self.envs:  # creates the state and passes the wrappers' order checks;
                e.reset(seed=0)  # everything is overwritten below
        self.continues = bool(sims) and self.exact and len(sims) == self.n
        if not self.continues:
            self.current = None
            return
        for e, sim in zip(self.envs, sims, strict=True):
            u = e.unwrapped
            u.state = np.asarray(sim["state"], dtype=sim.get("dtype", "float64"))
            u.np_random.bit_generator.state = sim["rng"]
            for k, v in sim["attrs"].items():
                setattr(u, k, v)
            _set_time_limit(e, sim["elapsed"])
        self.current = tensors["current"].numpy().copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _time_limits(env):
    while env is not None and hasattr(env, "env"):
        if hasattr(env, "_elapsed_steps"):
            yield env
        env = env.env


def _time_limit(env) -> int | None:
    limit = next(_time_limits(env), None)
    return None if limit is None else int(limit._elapsed_steps or 0)


def _set_time_limit(env, elapsed) -> None:
    limit = next(_time_limits(env), None)
    if limit is not None and elapsed is not None:
        limit._elapsed_steps = int(elapsed)


def make_env(name: str, n: int, *, seed: int = 0, horizon: int = 0, step_size: float = 0.1,
             discrete: bool = False, pixels: int = 0):  # fmt: skip
    """``point`` or a gymnasium id (see the module docstring); ``horizon`` 0 keeps the
    environment's own time limit (30 steps for ``point``)."""
    if name == "point":
        if pixels:
            raise ValueError("the point task has no pixel observations")
        return PointBatch(n, horizon=horizon or 30, step_size=step_size)  # deterministic: no seed
    return GymBatch(name, n, seed=seed, horizon=horizon or None, discrete=discrete, pixels=pixels)


def point_env_class():
    """``PointEnv``: the point task as one gymnasium.Env (built on demand: gymnasium is optional)."""
    gym = gymnasium_module()

    class PointEnv(gym.Env):
        """A point in [-1, 1]^2 from the origin; action in [-1, 1]^2 moves it by step_size times
        the action; no reward; truncated after ``horizon`` steps."""

        metadata = {"render_modes": []}  # noqa: RUF012

        def __init__(self, horizon: int = 30, step_size: float = 0.1):
            self.horizon, self.step_size = horizon, step_size
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
            self.pos = torch.zeros(2)
            self.t = 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos, self.t = torch.zeros(2), 0
            return self.pos.numpy().copy(), {}

        def step(self, action):
            a = torch.as_tensor(np.asarray(action, np.float32))
            self.pos = _point_move(self.pos, a, self.step_size)
            self.t += 1
            return self.pos.numpy().copy(), 0.0, False, self.t >= self.horizon, {}

    return PointEnv
