"""The skills kind against stable-baselines3, and its SAC on Pendulum, measured in one run.

    python benchmarks/skills_bench.py speed [--threads 1] [--steps 1500] [--envs 8] [--rounds 1]
    python benchmarks/skills_bench.py bar [--threads 1] [--minutes 5]
    python benchmarks/skills_bench.py pendulum [--threads 1] [--steps 20000]

speed: environment steps and gradient steps per second on the 2-D point task, 8 environments,
one gradient step of batch 256 per step of all environments, actor and critics 128-128, after
the replay holds 2,000 transitions:

    elbokit   ``SkillLearner.train_step`` (DIAYN: the discriminator's update and the reward
              recomputed from it on every batch, then SAC's critic, actor); and again as
              ``--compile on`` runs it: the discriminator's, the critics' and the actor's
              losses each compiled with its backward (Adam, the checks, Polyak eager)
    sb3       stable-baselines3's SAC (same networks, batch, learning rate, update ratio: one
              gradient step per step of the 8 environments of a DummyVecEnv) on the same point
              task with a one-hot skill appended to the observation; and with 1 environment,
              its default (a gradient step per transition). stable-baselines3 cannot
              relabel rewards at update time without subclassing its replay buffer, so it runs
              plain SAC with the environment's zero reward: it does less work per step than ours

bar: trains the default DIAYN preset epoch by epoch, evaluating after each (4 fresh episodes per
skill, mean actions), and stops at the first epoch meeting the issue's bar (accuracy >= 0.98 on
all scored states, >= 0.99 on final states, bound >= 0.95 log K): prints the wall time and
transitions it took. With the sb3 rate from ``speed`` the same transitions would take
transitions / rate seconds (the same algorithm needs the same samples; an estimate, said so).

pendulum: the compact SAC alone (no skills: the environment's reward) on Pendulum-v1, one
environment, one gradient step per step, 256-256 networks, tuned alpha, random actions for the
first 1,000 steps; the mean return of 10 fresh episodes with the mean action every 2,000 steps.

Thread setting: ``--threads`` (default 1). With networks this small on a 2-core machine two
OpenMP threads can spin-wait each other to a near stop; one thread is the setting measured here.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from elbokit import recipes
from elbokit.recipes.skills import SkillLearner, judge
from elbokit.train.learner import StepContext
from elbokit.train.settings import describe_machine

KIND = recipes.get_recipe("skills")


def _learner(envs: int, overrides: dict | None = None, compile: bool = False) -> SkillLearner:
    cfg = KIND.preset("default", {"env": {"envs": envs}, **(overrides or {})})
    torch.manual_seed(0)
    learner = SkillLearner(cfg, seed=0)
    learner.setup(StepContext("cpu", compile=compile))
    return learner


def ours_rate(steps: int, envs: int, compiled: bool = False) -> tuple[float, float]:
    learner = _learner(envs, compile=compiled)
    warm = math.ceil(2000 / envs) + 20  # past random actions and learning_starts (and compiling)
    for s in range(warm):
        learner.train_step(None, s)
    t0 = time.perf_counter()
    for s in range(warm, warm + steps):
        learner.train_step(None, s)
    dt = time.perf_counter() - t0
    learner.close()
    return steps * envs / dt, steps / dt


def sb3_rate(steps: int, envs: int) -> tuple[float, float] | None:
    try:
        import gymnasium as gym
        from stable_baselines3 import SAC
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError as e:
        print(
            f"stable-baselines3 not measured: {e} (pip install --no-deps stable-baselines3 cloudpickle)"
        )
        return None
    from elbokit.models.envs import point_env_class

    point = point_env_class()

    class WithSkill(gym.Wrapper):
        def __init__(self, env, k=8, seed=0):
            super().__init__(env)
            self.k, self.rng = k, np.random.default_rng(seed)
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (2 + k,), np.float32)

        def _obs(self, o):
            z = np.zeros(self.k, np.float32)
            z[self.skill] = 1
            return np.concatenate([o, z]).astype(np.float32)

        def reset(self, **kw):
            self.skill = int(self.rng.integers(self.k))
            o, info = self.env.reset(**kw)
            return self._obs(o), info

        def step(self, a):
            o, r, te, tr, info = self.env.step(a)
            return self._obs(o), r, te, tr, info

    vec = DummyVecEnv([lambda i=i: WithSkill(point(), seed=i) for i in range(envs)])
    model = SAC("MlpPolicy", vec, learning_rate=3e-4, buffer_size=100_000, batch_size=256,
                learning_starts=2000, train_freq=1, gradient_steps=1, ent_coef=0.1,
                policy_kwargs={"net_arch": [128, 128]}, seed=0, device="cpu", verbose=0)  # fmt: skip
    warm = math.ceil(2000 / envs) + 20
    model.learn(total_timesteps=warm * envs)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps * envs, reset_num_timesteps=False)
    dt = time.perf_counter() - t0
    return steps * envs / dt, steps / dt


def speed(args) -> None:
    """Eager, compiled and sb3 in alternating rounds (this machine's speed drifts between
    minutes: only ratios within a round are worth comparing); medians of the per-round ratios."""
    rows = []
    for r in range(args.rounds):
        ours = ours_rate(args.steps, args.envs)
        t0 = time.perf_counter()
        comp = ours_rate(args.steps, args.envs, compiled=True)
        took = time.perf_counter() - t0
        theirs = sb3_rate(args.steps, args.envs)
        print(f"round {r + 1}: elbokit DIAYN {ours[0]:6.0f} env steps/s ({ours[1]:5.1f} gradient "
              f"steps/s); --compile on {comp[0]:6.0f} ({comp[0] / ours[0]:.2f}x eager; {took:.0f} s "
              "with compiling)" + (f"; sb3 SAC {theirs[0]:6.0f} ({theirs[1]:5.1f}): elbokit / "
              f"sb3 {ours[0] / theirs[0]:.2f}x eager, {comp[0] / theirs[0]:.2f}x compiled"
              if theirs else ""), flush=True)  # fmt: skip
        rows.append((ours[0], comp[0], theirs[0] if theirs else float("nan")))
    ours, comp, theirs = (np.array(c) for c in zip(*rows, strict=True))
    print(f"median over {args.rounds} rounds: compiled / eager {np.median(comp / ours):.2f}x "
          f"(rounds {', '.join(f'{v:.2f}' for v in comp / ours)})")  # fmt: skip
    if not np.isnan(theirs).any():
        print(f"median elbokit / sb3 (same update ratio): eager {np.median(ours / theirs):.2f}x "
              f"(rounds {', '.join(f'{v:.2f}' for v in ours / theirs)}), compiled "
              f"{np.median(comp / theirs):.2f}x")  # fmt: skip
        one = sb3_rate(args.steps, 1)
        print(
            f"sb3 SAC, 1 env: {one[0]:8.0f} env steps/s, {one[1]:7.1f} gradient steps/s "
            "(its default: a gradient step per transition)"
        )


def bar(args) -> None:
    cfg = KIND.preset("default", {"train": {"progress": False, "epochs": 1000},
                                  "evaluate": {"eval_episodes": 0}})  # fmt: skip
    a = cfg.agent
    torch.manual_seed(cfg.train.seed)
    learner = SkillLearner(cfg, seed=cfg.train.seed)
    learner.setup(StepContext("cpu"))
    k = cfg.skill.skills
    t0, step, train_time = time.perf_counter(), 0, 0.0
    while train_time < args.minutes * 60:
        t1 = time.perf_counter()
        for _ in range(a.steps_per_epoch):
            torch.manual_seed(step)
            learner.train_step(None, step)
            step += 1
        train_time += time.perf_counter() - t1
        r = judge(learner, episodes=4, policy="mean", seed=12345, goals=0)
        ok = (
            r["accuracy"] >= 0.98
            and r["accuracy_final"] >= 0.99
            and r["mi_bound"] >= 0.95 * math.log(k)
        )
        n = step * cfg.env.envs
        print(f"{n:7d} transitions, {train_time:6.1f} s training ({time.perf_counter() - t0:6.1f} s "
              f"with evaluations): accuracy {r['accuracy']:.4f}, final {r['accuracy_final']:.4f}, "
              f"bound {r['mi_bound']:.3f} nats = {r['mi_fraction_of_log_k']:.3f} log K, "
              f"coverage {r['coverage']:.3f}{'  <- bar met' if ok else ''}", flush=True)  # fmt: skip
        if ok:
            break
    learner.close()


def pendulum(args) -> None:
    from elbokit.models.envs import make_env
    from elbokit.models.sac import SAC, SACConfig
    from elbokit.train.learner import Learner, make_adam

    torch.manual_seed(0)
    env = make_env("Pendulum-v1", 1, seed=0)
    sac = SAC(
        SACConfig(hidden=(256, 256), lr=3e-4, alpha=1.0, tune_alpha=True), env.obs_dim, env.act_dim
    )

    class L(Learner):
        pass

    learner = L()
    learner.modules, learner.optimizers = sac.modules(), sac.optimizers(make_adam)
    from elbokit.data.replay import Replay

    buf = Replay(args.steps, {"x": 3, "action": 1, "next_x": 3, "reward": 1, "terminated": 1})
    obs = env.reset()
    t0 = time.perf_counter()

    def evaluate() -> float:
        test = make_env("Pendulum-v1", 10, seed=999)
        o, ret, alive = test.reset(), torch.zeros(10), torch.ones(10, dtype=torch.bool)
        while alive.any():
            with torch.no_grad():
                a, _ = sac.actor(o, deterministic=True)
            tr = test.step(a)
            ret += tr.reward * alive
            alive &= ~tr.done
            o = tr.obs
        return float(ret.mean())

    for step in range(args.steps):
        if step < 1000:
            a = 2 * torch.rand(1, 1) - 1
        else:
            with torch.no_grad():
                a, _ = sac.actor(obs)
        tr = env.step(a)
        buf.add(
            x=obs, action=a, next_x=tr.next_obs, reward=tr.reward, terminated=tr.terminated.float()
        )
        obs = tr.obs
        if step >= 1000:
            b = buf.sample(256)
            sac.update(b, b["reward"][:, 0], step, learner.update)
        if (step + 1) % 2000 == 0:
            print(f"{step + 1:6d} steps, {time.perf_counter() - t0:6.1f} s: mean return of 10 fresh "
                  f"episodes {evaluate():8.1f}", flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("speed", "bar", "pendulum"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1, help="speed: alternating rounds")
    p.add_argument("--minutes", type=float, default=5.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    if args.what == "speed":
        args.steps = args.steps or 1500
        speed(args)
    elif args.what == "bar":
        bar(args)
    else:
        args.steps = args.steps or 20000
        pendulum(args)


if __name__ == "__main__":
    main()
