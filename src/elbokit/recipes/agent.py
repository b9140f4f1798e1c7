"""The ``agent`` kind: a Dreamer agent, behaviour learned in the imagination of a world model.

    elbokit train agent                                   CartPole-v1 from its state vector
    elbokit train agent --preset pixels                   CartPole-v1 from 64 x 64 frames
    elbokit train agent --env Pendulum-v1 --preset pendulum   continuous actions
    elbokit train agent --preset debug                    seconds
    elbokit eval RUN [--episodes 20] [--policy mode|sample]  /  elbokit report RUN

One learner (``AgentLearner``) acts in ``envs`` environments at once with its actor (sampled
actions explore), filtering each observation through the world model's RSSM as it goes, and
stores every step in a replay of sequences (``SequenceReplay``), one ring per environment: an
episode's end is followed by the next episode's first step (``is_first``), so a replayed sequence
may span episodes and the RSSM's reset mask handles it. Every ``train_every`` environment steps
(all environments together) it takes one gradient step of the world model (``WorldModelLoss``:
observation, reward, discount and balanced KL) on ``batch_size`` replayed sequences of
``seq_len`` steps, then one of the actor and one of the critic in imagination from every
posterior state of those sequences (``elbokit.models.dreamer``). The replay, the environments
(the classic-control tasks exactly), the recurrent state of the acting and the counters are saved
with each checkpoint: an interrupted run resumes where it stopped.

Each evaluation plays fresh episodes with the actor's most likely action and logs their mean
return with its standard error; ``--stop-return`` ends training once an evaluation reaches it.
``elbokit eval`` adds the critic's value error on the real episodes, and the report shows return
against environment steps and wall-clock time, the world-model loss terms, imagined against real
rollouts under the same actions, the policy acting (GIF), the actor's entropy and the critic's
error.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.replay import SequenceReplay
from elbokit.data.stream import StepStream
from elbokit.models.dreamer import ActorCritic, ActorCriticConfig
from elbokit.models.envs import make_env
from elbokit.models.world_model import WorldModel, WorldModelConfig
from elbokit.objectives import WorldModelObjectiveConfig
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import ActingLoaded, as_batch, play_gymnasium
from elbokit.seeding import mix, seeded
from elbokit.train.acting import ActingLearner
from elbokit.train.learner import Evaluation, StepContext, make_adam
from elbokit.train.loop import StreamTrainConfig

# compiled gradient step / eager per device type (benchmarks/agent_bench.py speed, default
# preset, 2 threads, Zen 5 EPYC, 2026-12-07: 1.58x in two runs of 3 alternating rounds, 1.47-1.70):
# --compile auto compiles runs of >= 20,000 steps (the kernels cost ~80 s cold, ~10 s from the
# cache, to Dynamo's tracing of the unrolled sequences; ~13 ms saved per gradient step)
COMPILE_SPEEDUP = {"cpu": 1.58}


@dataclass(frozen=True)
class AgentEnvConfig(Section):
    name: str = opt("CartPole-v1", "a gymnasium id (Discrete or 1-D Box actions)", flag="env")
    envs: int = opt(8, "environments stepped at once", ge=1)
    pixels: bool = opt(False, "observe rendered frames instead of the state vector (--preset "
                       "pixels: with the model sizes tuned for them)")  # fmt: skip
    size: int = opt(64, "frame size with --pixels", ge=16)
    horizon: int = opt(0, "steps per episode (0: the environment's own)", ge=0,
                       flag="episode-steps")  # fmt: skip

    def make(self, n: int, seed: int = 0, pixels: int | None = None):
        """n copies of the environment; ``pixels`` overrides the observed frame size (0: the
        state vector; None: as configured)."""
        size = (self.size if self.pixels else 0) if pixels is None else pixels
        return make_env(self.name, n, seed=seed, horizon=self.horizon, discrete=True, pixels=size)


@dataclass(frozen=True)
class AgentLoopConfig(Section):
    steps_per_epoch: int = opt(250, "environment steps (of all envs at once) per epoch", ge=1)
    train_every: int = opt(8, "environment steps (all envs together) per gradient step", ge=1)
    seq_len: int = opt(16, "steps per replayed sequence", ge=2)
    buffer: int = opt(200_000, "replay capacity in steps", ge=1)
    prefill: int = opt(2000, "steps with uniform random actions before learning", ge=0)
    batch_size: int = opt(16, "replayed sequences per gradient step", ge=1)
    wm_lr: float = opt(6e-4, "world-model Adam learning rate", gt=0)
    eval_episodes: int = opt(20, "fresh episodes per evaluation during training", ge=1,
                             flag="episodes-per-eval")  # fmt: skip
    stop_return: float = opt(
        math.inf, "stop once an evaluation's mean return reaches this (inf: never)", finite=False
    )


@dataclass(frozen=True)
class AgentAfterTraining(Section):
    eval_episodes: int = opt(20, "then evaluate with this many fresh episodes and write the "
                             "report (0: neither)", ge=0)  # fmt: skip


@dataclass(frozen=True)
class AgentEvalOptions(Section):
    episodes: int = opt(20, "fresh episodes", ge=1)
    policy: Literal["mode", "sample"] = opt("mode", "act with the most likely action or sample")
    seed: int = opt(12345, "seeds the fresh episodes", ge=0)


def _train_defaults() -> StreamTrainConfig:
    # threads auto: 2 on an idle 2-core machine (1.15-1.4x faster per gradient step than 1 on
    # the Zen 4 EPYC), 1 where other work holds a core (OpenMP threads would spin-wait)
    return StreamTrainConfig(epochs=100, log_every=100, checkpoint_every=2500, eval_every=1,
                             threads=-1, grad_clip=100.0)  # fmt: skip


def _model_defaults() -> WorldModelConfig:
    return WorldModelConfig(deter=64, hidden=64, groups=8, classes=8, embed=64,
                            head_hidden=(64, 64), channels=(16, 32, 64, 128))  # fmt: skip


@dataclass(frozen=True)
class AgentRunConfig(Section):
    env: AgentEnvConfig = opt(default_factory=AgentEnvConfig, help="the environment")
    model: WorldModelConfig = opt(default_factory=_model_defaults, help="the world model")
    objective: WorldModelObjectiveConfig = opt(
        default_factory=WorldModelObjectiveConfig, help="the world-model loss"
    )
    ac: ActorCriticConfig = opt(default_factory=ActorCriticConfig, help="actor and critic")
    agent: AgentLoopConfig = opt(default_factory=AgentLoopConfig, help="acting and replay")
    train: StreamTrainConfig = opt(default_factory=_train_defaults,
                                   help="the loop (an epoch: steps_per_epoch environment steps)")  # fmt: skip
    evaluate: AgentAfterTraining = opt(default_factory=AgentAfterTraining, help="after training")

    def validate(self):
        if math.isnan(self.agent.stop_return):
            raise ConfigError("stop_return = nan: expected a number (inf: never stop early)")
        if self.env.name == "point":
            raise ConfigError("env = point: the point task has no reward; the agent needs a "
                              "gymnasium task (CartPole-v1, Pendulum-v1, ...)")  # fmt: skip
        total = self.train.epochs * self.agent.steps_per_epoch * self.env.envs
        if self.agent.prefill >= total:
            raise ConfigError(
                f"prefill = {self.agent.prefill} random steps is the whole run ({total} "
                f"environment steps = epochs x steps_per_epoch x envs): nothing would be learned; "
                f"lower --prefill or train longer"
            )
        if self.agent.seq_len * 2 > self.agent.buffer // self.env.envs:
            raise ConfigError(
                f"buffer = {self.agent.buffer} steps over {self.env.envs} environments holds "
                f"{self.agent.buffer // self.env.envs} per environment; sequences of "
                f"{self.agent.seq_len} need at least twice that"
            )


class AgentLearner(ActingLearner):
    """World model, actor-critic, the environments and the replay (module docstring)."""

    # the recurrent state of the acting, the last action and episode flags and returns
    carried = ("h", "z", "prev_action", "first", "ret", "length")
    counters = ("transitions", "credit", "seconds", "updates")
    # bf16 / fp32 gradient step (world model and actor-critic under autocast), default preset:
    # 0.91x on avx512_bf16 (Zen 5 EPYC, 2 threads, benchmarks/precision_bench.py, 2026-12-07):
    # --precision auto keeps fp32 there
    bf16_speedup = {"avx512_bf16": 0.91}  # noqa: RUF012 -- read only
    # --compile on: the world model's loss (its sequence unrolled) and the actor's and critic's
    # losses (the imagined rollout unrolled), each one graph with its backward; optimizer steps,
    # checks, the slow critic's update and the acting eager
    compilable = True
    compile_speedup = COMPILE_SPEEDUP

    @property
    def stops_early(self) -> bool:
        return math.isfinite(self.cfg.agent.stop_return)

    def __init__(self, cfg: AgentRunConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        e = cfg.env
        self.env = e.make(e.envs, seed)
        self.wm = WorldModel(cfg.model)
        feat = cfg.model.deter + self.wm.latent.z_size
        self.ac = ActorCritic(cfg.ac, feat, self.env.act_dim, self.env.discrete)
        self.wm_loss = cfg.objective.build().loss
        self._world_model_loss = self.world_model_loss  # or compiled (setup)
        self.modules = {"world_model": self.wm, "actor_critic": self.ac}
        self.replay = SequenceReplay(
            cfg.agent.buffer, e.envs,
            {"obs": tuple(self.env.obs_shape), "action": (self.env.act_dim,), "reward": (),
             "cont": (), "is_first": ()},
            uint8=("obs",) if e.pixels else (),
        )  # fmt: skip
        n = e.envs
        self.obs: torch.Tensor | None = None
        self.h, self.z = self.wm.rssm.initial(n, torch.zeros(1))
        self.prev_action = torch.zeros(n, self.env.act_dim)
        self.first = torch.ones(n, dtype=torch.bool)
        self.ret, self.length = torch.zeros(n), torch.zeros(n)
        self.transitions = 0
        self.credit = 0.0
        self.seconds = 0.0
        self.updates = 0

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        if ctx.device.type != "cpu":
            self.h, self.z = self.h.to(ctx.device), self.z.to(ctx.device)
        c = self.cfg
        self.optimizers = (
            {}
            if not ctx.training
            else {
                "world_model_optim": make_adam(self.wm.parameters(), c.agent.wm_lr),
                "actor_optim": make_adam(self.ac.actor.parameters(), c.ac.actor_lr),
                "critic_optim": make_adam(self.ac.critic.parameters(), c.ac.critic_lr),
            }
        )
        if ctx.compile and ctx.training:
            self._world_model_loss = ctx.compiled(self.world_model_loss, "the world model's loss")
            self.ac.compile_losses(ctx.compiled)

    # ------------------------------------------------------------------------- acting
    def _store_first(self, envs: torch.Tensor, obs: torch.Tensor) -> None:
        k = len(envs)
        self.replay.add_batch(envs.tolist(), obs=obs, action=torch.zeros(k, self.env.act_dim),
                              reward=torch.zeros(k), cont=torch.ones(k), is_first=torch.ones(k))  # fmt: skip

    @torch.no_grad()
    def observe(self, obs, h, z, prev_action, first):
        """Filter one observation per environment: the new (h, z) and the features."""
        dev = self.ctx.device
        e = self.wm.embed(obs.to(dev)[:, None])[:, 0]
        h, z, _ = self.wm.rssm.obs_step(h, z, prev_action.to(dev), e, first.to(dev))
        return h, z, torch.cat([h, z], -1)

    @torch.no_grad()
    def policy(self, features, mode: bool = False) -> torch.Tensor:
        pi = self.ac.actor(features)
        return (pi.mode() if mode else pi.sample()).cpu()

    def _random_actions(self, n: int) -> torch.Tensor:
        if self.env.discrete:
            idx = torch.randint(self.env.act_dim, (n,))
            return torch.nn.functional.one_hot(idx, self.env.act_dim).float()
        return 2 * torch.rand(n, self.env.act_dim) - 1

    def train_step(self, batch, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        cfg, n = self.cfg, self.env.n
        if self.obs is None:  # a fresh start of every environment
            self.obs = self.env.reset()
            self.first = torch.ones(n, dtype=torch.bool)
            self.ret.zero_()
            self.length.zero_()
            self._store_first(torch.arange(n), self.obs)
        self.h, self.z, feat = self.observe(self.obs, self.h, self.z, self.prev_action, self.first)
        if self.transitions < cfg.agent.prefill:
            action = self._random_actions(n)
        else:
            action = self.policy(feat)
        tr = self.env.step(action)
        self.replay.add_batch(list(range(n)), obs=tr.next_obs, action=action, reward=tr.reward,
                              cont=(~tr.terminated).float(), is_first=torch.zeros(n))  # fmt: skip
        self.transitions += n
        self.ret += tr.reward
        self.length += 1
        terms: dict[str, float] = {}
        done = tr.done
        if done.any():
            terms["return"] = float(self.ret[done].mean())
            terms["env/length"] = float(self.length[done].mean())
            terms["env/steps"] = float(self.transitions)
            terms["env/seconds"] = self.seconds + time.perf_counter() - t0
            self.ret[done] = 0
            self.length[done] = 0
            self._store_first(done.nonzero()[:, 0], tr.obs[done])
        self.obs, self.prev_action, self.first = tr.obs, action, done.clone()
        self.credit += n / cfg.agent.train_every
        sums: dict[str, float] = {}
        k = 0
        while self.credit >= 1 and self.ready():
            self.credit -= 1
            for name, v in self.learn(step).items():
                sums[name] = sums.get(name, 0.0) + v
            k += 1
        if not self.ready():
            self.credit = 0.0  # no debt of updates from before learning starts
        terms.update({name: v / k for name, v in sums.items()})
        self.seconds += time.perf_counter() - t0
        return terms

    def ready(self) -> bool:
        return self.transitions >= self.cfg.agent.prefill and any(
            s >= self.cfg.agent.seq_len for s in self.replay.size
        )

    # ------------------------------------------------------------------------ learning
    def world_model_loss(self, b: dict[str, torch.Tensor], step: int = 0):
        """(loss, terms, h, z) of the world model on replayed sequences ``b``: its ELBO and
        the posterior states (B, T, .) the actor-critic imagines from."""
        cfg = self.cfg
        first = b["is_first"].bool()
        with self.ctx.autocast():
            state = self.wm.rssm.observe(self.wm.embed(b["obs"]), b["action"], is_first=first)
            heads = self.wm.heads(state)
        out = self.wm_loss(
            heads["obs_mean"].float(), self.wm.target(b["obs"]).float(),
            heads["reward_mean"].float(), b["reward"], heads["discount_logits"].float(),
            cfg.objective.gamma * b["cont"], state.posterior.float(), state.prior.float(),
        )  # fmt: skip
        return out.loss, {f"wm/{k}": v for k, v in out.terms.items()}, state.h, state.z

    def learn(self, step: int) -> dict[str, float]:
        """One gradient step of the world model, then of the actor and of the critic."""
        cfg, dev = self.cfg, self.ctx.device
        b = self.replay.sample(cfg.agent.batch_size, cfg.agent.seq_len, dev)
        loss, wm_terms, h, z = self._world_model_loss(b, step)
        values = self.update("world_model_optim", loss, wm_terms, step,
                             self.wm.named_parameters())  # fmt: skip
        with self.ctx.autocast():
            actor_loss, critic_loss, ac_terms = self.ac.losses(
                self.wm, h.flatten(0, 1), z.flatten(0, 1), b["cont"].flatten()
            )
        values.update(self.update("actor_optim", actor_loss, ac_terms, step,
                                  self.ac.actor.named_parameters()))  # fmt: skip
        values.update(self.update("critic_optim", critic_loss, {}, step,
                                  self.ac.critic.named_parameters()))  # fmt: skip
        self.ac.update_target()
        self.updates += 1
        values["entropy"] = values.pop("actor/entropy")
        return values

    # ---------------------------------------------------------------------- evaluating
    @torch.no_grad()
    def evaluate(self, data, step: int, *, seed: int) -> Evaluation:
        """Fresh episodes with the most likely actions (the curve's points); finished once their
        mean return reaches ``stop_return``."""
        with self.eval_mode():
            r = play(self, self.cfg.agent.eval_episodes, seed=mix(seed, 0xE7A1), mode=True)
        metrics = {"return": r["mean_return"], "return_se": r["return_se"],
                   "env_steps": float(self.transitions), "seconds": self.seconds,
                   "updates": float(self.updates)}  # fmt: skip
        return Evaluation(metrics, finished=r["mean_return"] >= self.cfg.agent.stop_return)

    def progress_terms(self, terms):
        shown = {"return": "return", "wm/kl": "kl", "entropy": "entropy"}
        return {shown[k]: v for k, v in terms.items() if k in shown}


@torch.no_grad()
def play(learner: AgentLearner, episodes: int, *, seed: int, mode: bool = True,
         record: int = 0, frames: bool = False) -> dict:  # fmt: skip
    """One fresh episode in each of ``episodes`` environments with the actor; returns the
    returns, lengths, their mean and standard error. ``record`` > 0 keeps the observations,
    actions, rewards, terminations and features of the first ``record`` episodes; ``frames``
    renders the first one (for the GIF)."""
    cfg = learner.cfg
    e = cfg.env
    env = e.make(episodes, seed)
    gif = e.make(1, seed, pixels=64) if frames else None
    with seeded(seed):
        obs = env.reset()
        if gif is not None:
            gif.reset()
            shown = [gif.render(0)]
        dev = learner.ctx.device
        h, z = learner.wm.rssm.initial(episodes, torch.zeros(1, device=dev))
        prev = torch.zeros(episodes, env.act_dim)
        first = torch.ones(episodes, dtype=torch.bool)
        alive = torch.ones(episodes, dtype=torch.bool)
        ret, length = torch.zeros(episodes), torch.zeros(episodes, dtype=torch.long)
        keep = {"obs": [obs[:record]], "action": [prev[:record]], "reward": [torch.zeros(record)],
                "terminated": [torch.zeros(record, dtype=torch.bool)], "features": []}  # fmt: skip
        final = torch.zeros(record, h.shape[-1] + z.shape[-1])
        while alive.any():
            h, z, feat = learner.observe(obs, h, z, prev, first)
            action = learner.policy(feat, mode=mode)
            tr = env.step(action)
            if gif is not None and alive[0]:
                gif.step(action[:1])
                shown.append(gif.render(0))
            ret += tr.reward * alive
            length += alive.long()
            if record:
                keep["features"].append(feat[:record].cpu())
                for k, v in (("obs", tr.next_obs), ("action", action), ("reward", tr.reward),
                             ("terminated", tr.terminated)):  # fmt: skip
                    keep[k].append(v[:record].clone())
                ending = (tr.done & alive)[:record]
                if ending.any():  # the features of the last observation, for bootstrapping
                    _, _, fn = learner.observe(tr.next_obs[:record], h[:record], z[:record],
                                               action[:record], torch.zeros(record, dtype=torch.bool))  # fmt: skip
                    final[ending] = fn[ending].cpu()
            alive &= ~tr.done
            obs, prev, first = tr.obs, action, torch.zeros(episodes, dtype=torch.bool)
            # an environment that finished restarts: its later steps are not counted
        env.close()
        out = {
            "returns": ret.tolist(),
            "lengths": length.tolist(),
            "mean_return": float(ret.mean()),
            "return_se": float(ret.std() / math.sqrt(episodes)) if episodes > 1 else 0.0,
        }
        if record:
            out["record"] = {k: torch.stack(v, 1) for k, v in keep.items()}
            out["record"]["length"] = length[:record].clone()
            out["record"]["final"] = final
        if gif is not None:
            out["frames"] = shown
            gif.close()
        return out


@torch.no_grad()
def value_error(learner: AgentLearner, record: dict, gamma: float) -> dict:
    """The critic's values on real episodes against their discounted returns (bootstrapped with
    the critic where an episode was cut by its time limit, not ended)."""
    errs, vals, rets = [], [], []
    for i in range(len(record["length"])):
        n = int(record["length"][i])
        f = torch.cat([record["features"][i, :n], record["final"][i : i + 1]])
        v = learner.ac.value(f.to(learner.ctx.device)).cpu()
        r = record["reward"][i, 1 : n + 1]
        ended = bool(record["terminated"][i, n])
        g = torch.zeros(n + 1)
        g[n] = 0.0 if ended else v[n]
        for t in reversed(range(n)):
            g[t] = r[t] + gamma * g[t + 1]
        errs.append((v[:n] - g[:n]).abs())
        vals.append(v[:n])
        rets.append(g[:n])
    e, v, g = torch.cat(errs), torch.cat(vals), torch.cat(rets)
    return {"value_error": float(e.mean()), "value_mean": float(v.mean()),
            "return_to_go_mean": float(g.mean()), "value_steps": len(e)}  # fmt: skip


class LoadedAgent(ActingLoaded):
    """A trained Dreamer agent (``elbokit.load``). ``act(obs, state)`` is stable-baselines3's
    ``predict`` for a recurrent policy: the world model filters each observation into its
    state, the actor picks the action; ``state`` carries (h, z, the last action) from one call
    to the next (None at an episode's start). ``play`` runs whole episodes."""

    @torch.no_grad()
    def act(self, obs, state=None, *, deterministic: bool = True, seed: int | None = None):
        """obs (obs_dim,) or a batch (N, obs_dim) -> (action(s) in the env's space, state).
        ``deterministic``: the policy's mode, else a draw. The world model draws its latent
        state (as Dreamer acts), from ``seed`` when given, else from torch's generator."""
        lr = self.learner
        x = as_batch(obs, "obs")
        single = x.dim() == len(self.env.obs_shape)
        x = x[None] if single else x
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        if tuple(x.shape[1:]) != tuple(self.env.obs_shape):
            raise ValueError(f"obs has shape {tuple(x.shape)}; this agent observes "
                             f"{tuple(self.env.obs_shape)} ({self.env.name})")  # fmt: skip
        n = len(x)
        if state is None:
            h, z = lr.wm.rssm.initial(n, torch.zeros(1, device=self.device))
            prev, first = torch.zeros(n, self.env.act_dim), torch.ones(n, dtype=torch.bool)
        else:
            h, z, prev = state
            first = torch.zeros(n, dtype=torch.bool)
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            h, z, feat = lr.observe(x, h, z, prev, first)  # z is drawn from q(z | h, obs)
            a = lr.policy(feat, mode=deterministic)
        action = self.env_action(a)
        return (action[0] if single else action), (h, z, a)

    def play(
        self, env=None, episodes: int = 10, *, seed: int = 0, deterministic: bool = True
    ) -> dict:
        """Whole episodes with the actor: in the run's own environment (``env`` None; fresh
        copies, as its evaluation plays) or in a gymnasium ``env`` of the same spaces.
        Returns the returns, lengths, mean return and its standard error."""
        if env is None:
            return play(self.learner, episodes, seed=seed, mode=deterministic)
        if self.config.env.pixels:
            raise ValueError("a pixels agent observes frames it renders itself: play() without "
                             "env plays its own environment")  # fmt: skip
        self.check_env(env)
        with seeded(seed):  # the latent draws, as the resets, from seed
            return play_gymnasium(env, lambda o, s: self.act(o, s, deterministic=deterministic),
                                  episodes, seed)  # fmt: skip


class AgentRecipe(Recipe):
    headline = "test/return:max"  # what a study optimizes by default
    name = "agent"
    help = "a Dreamer agent: a world model, and a policy learned in its imagination"
    config = AgentRunConfig
    eval_options = AgentEvalOptions
    loaded = LoadedAgent
    labels: ClassVar[dict[str, str]] = {
        "mean_return": "mean return",
        "return_se": "mean return, standard error",
        "value_error": "critic's error, mean |v - G| on real episodes",
        "value_mean": "critic's mean value v",
        "return_to_go_mean": "mean discounted return-to-go G",
        "value_steps": "steps the critic was judged on",
        "episodes": "fresh episodes",
        "policy": "policy (mode: its most likely action)",
        "env_steps": "environment steps",
        "updates": "gradient updates",
        "train_seconds": "training time (s)",
        "seed": "seed of the evaluation",
        "pixels": "observes pixels",
        "env": "environment",
    }
    renamed: ClassVar[dict[str, str | None]] = {
        "train.batch_size": "agent.batch_size", "model.image_shape": "model.obs_shape",
        "objective.image_scale": "objective.obs_scale",
    }  # fmt: skip
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "CartPole-v1 from states, 8 envs, until 20 fresh episodes return >= 475 "
        "(about a minute; at most 200k steps)",
        "pixels": "CartPole-v1 from 64 x 64 frames: RSSM 200 + 16x16, discount scale 5 "
        "(>= 400 after 34k steps, ~30 min on 2 cores)",
        "pendulum": "Pendulum-v1 from states: continuous actions, backprop through the model",
        "debug": "CartPole-v1 from states, a tiny model, episodes cut at 60 steps, 600 "
        "environment steps: seconds (a check that everything runs; it learns little)",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {"agent": {"stop_return": 475.0}},
        "pixels": {"env": {"pixels": True}, "agent": {"stop_return": 475.0},
                   "model": {"deter": 200, "hidden": 200, "groups": 16, "classes": 16,
                             "embed": 256},
                   "objective": {"discount_scale": 5.0}},
        "pendulum": {"env": {"name": "Pendulum-v1"}, "train": {"epochs": 25}},
        "debug": {"agent": {"steps_per_epoch": 50, "prefill": 200, "buffer": 4000, "seq_len": 8,
                            "eval_episodes": 2, "batch_size": 4},
                  "model": {"deter": 16, "hidden": 16, "groups": 4, "classes": 4, "embed": 16,
                            "head_hidden": (16,), "channels": (8, 16)},
                  "ac": {"hidden": (16,), "horizon": 5},
                  "env": {"horizon": 60, "size": 16, "envs": 4},
                  "train": {"epochs": 3, "log_every": 10, "checkpoint_every": 50},
                  "evaluate": {"eval_episodes": 2}},
    }  # fmt: skip

    def default_out(self, cfg):
        px = "-pixels" if cfg.env.pixels else ""
        return f"runs/agent-{cfg.env.name.lower()}{px}"

    def data(self, cfg, run_dir=None) -> StepStream:
        return StepStream(cfg.agent.steps_per_epoch, name=cfg.env.name)

    def learner(self, cfg, data) -> AgentLearner:
        return AgentLearner(cfg, seed=cfg.train.seed)

    def resolve(self, cfg: AgentRunConfig) -> AgentRunConfig:
        """The config with the world model's observation shape and action size filled in from
        the environment."""
        probe = cfg.env.make(1)
        try:
            return derive(cfg, model={"obs_shape": tuple(probe.obs_shape),
                                      "action_dim": probe.act_dim})  # fmt: skip
        finally:
            probe.close()

    def build(self, cfg, run_dir, *, world, say) -> Built:
        if world.size > 1:
            raise ConfigError("the agent runs in one process: the environments are stepped in it")
        cfg = self.resolve(cfg)
        e = cfg.env
        torch.manual_seed(cfg.train.seed)
        learner = self.learner(cfg, None)
        m, a, ac = cfg.model, cfg.agent, cfg.ac
        total = cfg.train.epochs * a.steps_per_epoch * e.envs
        grad = "reinforce" if learner.ac.reinforce else "backprop through the model"
        wm_params = sum(p.numel() for p in learner.wm.parameters())
        lines = [
            f"environment: {e.name}, {'pixels ' + str(e.size) + 'x' + str(e.size) if e.pixels else 'state vector'} "
            f"{tuple(learner.env.obs_shape)}, {learner.env.act_dim} "
            f"{'discrete actions' if learner.env.discrete else 'continuous action dimension(s)'}, "
            f"{e.envs} at once" + (f", episodes cut at {e.horizon} steps" if e.horizon else ""),
            f"world model: RSSM {m.deter} + {m.groups}x{m.classes} categorical, {wm_params:,} parameters",
            f"actor-critic: {list(ac.hidden)}, horizon {ac.horizon}, lambda {ac.lam}, actor by "
            f"{grad}, returns scaled {ac.return_norm}",
            f"one gradient step per {a.train_every} environment steps on {a.batch_size} x "
            f"{a.seq_len} replayed steps; {a.prefill} random steps first; at most {total:,} steps"
            + (f", stopping at an evaluation return >= {a.stop_return:g}" if math.isfinite(a.stop_return) else ""),
        ]  # fmt: skip
        return Built(cfg, self.data(cfg), learner, lines)

    def after_training(self, cfg):
        k = cfg.evaluate.eval_episodes
        return AgentEvalOptions(episodes=k) if k else None

    def thoroughness(self, result):
        # the report reads eval.json: a sampled-policy evaluation goes beside a mode one
        return {"n": result["episodes"], "mode": int(result.get("policy", "mode") == "mode")}

    def measure(self, run: Run, options) -> tuple[dict, list[str]]:
        learner, state = run.learner()
        cfg = run.config
        r = play(learner, options.episodes, seed=options.seed, mode=options.policy == "mode",
                 record=min(options.episodes, 5))  # fmt: skip
        ve = value_error(learner, r.pop("record"), cfg.objective.gamma)
        learner.close()
        r.update(ve)
        r.update({"step": state["step"], "episodes": options.episodes, "policy": options.policy,
                  "seed": options.seed,
                  "env": cfg.env.name, "pixels": cfg.env.pixels,
                  "env_steps": learner.transitions, "updates": learner.updates,
                  "train_seconds": learner.seconds})  # fmt: skip
        took = f"{learner.seconds:.0f}" if learner.seconds >= 10 else f"{learner.seconds:.1f}"
        lines = [
            f"{run.dir} at step {state['step']} ({learner.transitions:,} environment steps, "
            f"{learner.updates:,} gradient steps, {took} s of training): "
            f"{options.episodes} fresh episodes of {cfg.env.name}, policy {options.policy}",
            f"  return {r['mean_return']:.1f} +- {r['return_se']:.1f} (min {min(r['returns']):.1f}, "
            f"max {max(r['returns']):.1f})",
            f"  critic on the real episodes: mean |v - G| {ve['value_error']:.2f} against a mean "
            f"return-to-go G of {ve['return_to_go_mean']:.2f} ({ve['value_steps']} steps; G "
            f"discounted by gamma = {cfg.objective.gamma}, bootstrapped where a time limit cut it)",
        ]
        return r, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import agent as figures
        from elbokit.report import curves

        cfg = run.config
        r = play(learner, 1, seed=AgentEvalOptions().seed, mode=True, record=1, frames=True)
        rec = r["record"]
        pngs = [
            (figures.returns(run.dir / "metrics.jsonl", out / "returns.png"),
             "Return against environment steps and against wall-clock training time: training "
             "episodes (sampled actions, line) and evaluations (most likely actions, points with "
             "their standard error)."),
            (figures.open_loop(learner, rec, out / "open_loop.png", context=5),
             "A real episode (top / solid) and the world model's imagination from its first 5 "
             "steps under the same actions (bottom / dashed)."),
            (figures.frames_gif(r["frames"], out / "policy.gif"),
             f"The policy acting (most likely actions): return {r['mean_return']:.0f}."),
            (curves(run.dir / "metrics.jsonl", out / "world_model.png",
                    (("wm/obs", "observation NLL (nats)"), ("wm/reward", "reward NLL (nats)"),
                     ("wm/discount", "discount NLL (nats)"), ("wm/kl", "KL(posterior || prior) (nats)"))),
             "World-model loss terms over training."),
            (curves(run.dir / "metrics.jsonl", out / "actor_critic.png",
                    (("entropy", "actor entropy (nats)"), ("critic/value_error", "critic |v - R_lambda|"),
                     ("imagined/return", "imagined lambda-return"), ("return_scale", "return scale S"))),
             "The actor's entropy, the critic's error against its lambda-return targets, the "
             "imagined returns and their scale."),
        ]  # fmt: skip
        learner.close()
        skip = ("returns", "lengths")
        numbers = {k: (f"{v:.4g}" if isinstance(v, float) else str(v))
                   for k, v in result.items() if k not in skip}  # fmt: skip
        return f"elbokit agent: {run.dir.name} ({cfg.env.name})", numbers, pngs
