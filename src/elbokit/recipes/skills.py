"""The ``skills`` kind: behaviours found with no reward, by maximizing I(skill; states).

    elbokit train skills                                 DIAYN, 8 skills, the 2-D point task
    elbokit train skills --method dads                   DADS, 2-D continuous skills
    elbokit train skills --env Pendulum-v1 --skills 8    any gymnasium task with Box spaces
    elbokit train skills --preset debug                  seconds
    elbokit eval RUN [--episodes 4] [--policy mean|sample]  /  elbokit report RUN

One learner (``SkillLearner``) steps ``envs`` environments at once, stores the transitions in a
replay buffer, and per step takes ``updates`` gradient steps of the method's model (DIAYN's
discriminator, DADS's skill dynamics) and of a skill-conditioned soft actor-critic whose reward
is recomputed from the current model on every replayed batch (``elbokit.models.skills``). The
buffer, the environments (the point task and classic-control tasks exactly; other gymnasium
tasks restart their episodes) and
the skills in progress are saved with each checkpoint: an interrupted run resumes.

Evaluation rolls every skill (DIAYN: each of the K; DADS: a grid of skills) in fresh environments
and reports the MI bound in nats and as a fraction of log K, the discriminator's accuracy on all
scored states and on final states, the effective number of skills, the state coverage, any
collapse by name, and for DADS the skill dynamics' log-likelihood on the fresh transitions, the
forward-MI bound and goal reaching by planning over skills against random skills.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.replay import Replay
from elbokit.data.stream import StepStream
from elbokit.evaluate.skills import (
    collapse_findings,
    coverage,
    diayn_metrics,
    plan_to_goals,
    rollout,
)
from elbokit.models.envs import make_env
from elbokit.models.sac import SAC, SACConfig
from elbokit.models.skills import SKILL_METHODS, SkillConfig
from elbokit.recipes.base import Built, Recipe, Run
from elbokit.recipes.loaded import ActingLoaded, as_batch, play_gymnasium
from elbokit.seeding import mix, seeded
from elbokit.train.acting import ActingLearner
from elbokit.train.learner import Evaluation, StepContext, make_adam
from elbokit.train.loop import StreamTrainConfig

# compiled step / eager step per device type (benchmarks/skills_bench.py speed, 1 thread, Zen 5
# EPYC, 2026-12-07: 0.71x, rounds 0.63-0.72): --compile auto keeps it eager. The update's 256 x 128
# multiplies are most of it; each compiled graph's entry costs more than the fusing saves
COMPILE_SPEEDUP = {"cpu": 0.71}


@dataclass(frozen=True)
class EnvConfig(Section):
    name: str = opt("point", "point (2-D navigation) or a gymnasium id with Box spaces",
                    flag="env")  # fmt: skip
    envs: int = opt(8, "environments stepped at once", ge=1)
    horizon: int = opt(0, "steps per episode (0: the environment's own; point: 30)", ge=0)
    step_size: float = opt(0.1, "how far one action moves the point (point)", gt=0)

    def make(self, n: int, seed: int):
        """n copies of the environment (``elbokit.models.envs.make_env``)."""
        return make_env(self.name, n, seed=seed, horizon=self.horizon, step_size=self.step_size)


@dataclass(frozen=True)
class SkillLoopConfig(Section):
    steps_per_epoch: int = opt(500, "environment steps (of all envs at once) per epoch", ge=1)
    updates: int = opt(1, "gradient steps per environment step (of all envs)", ge=1)
    batch_size: int = opt(256, "replayed transitions per update", ge=1)
    buffer: int = opt(100_000, "replay capacity in transitions", ge=1)
    random_steps: int = opt(2000, "transitions with uniform random actions at the start", ge=0)
    learning_starts: int = opt(1000, "transitions stored before the first update", ge=1)


@dataclass(frozen=True)
class SkillsAfterTraining(Section):
    eval_episodes: int = opt(4, "then evaluate with this many episodes per skill and write "
                             "the report (0: neither)", ge=0)  # fmt: skip


@dataclass(frozen=True)
class SkillsEvalOptions(Section):
    episodes: int = opt(4, "fresh episodes per skill", ge=1)
    policy: Literal["mean", "sample"] = opt("mean", "act with the policy's mean or sample it")
    goals: int = opt(50, "goal positions to reach by planning (dads)", ge=1)
    seed: int = opt(12345, "seeds the fresh environments, skills and goals", ge=0)


def _train_defaults() -> StreamTrainConfig:
    return StreamTrainConfig(epochs=20, log_every=100, checkpoint_every=2000, eval_every=2,
                             threads=1)  # fmt: skip


@dataclass(frozen=True)
class SkillsRunConfig(Section):
    env: EnvConfig = opt(default_factory=EnvConfig, help="the environment")
    skill: SkillConfig = opt(default_factory=SkillConfig, help="the method and its model")
    sac: SACConfig = opt(default_factory=SACConfig, help="the skill-conditioned policy")
    loop: SkillLoopConfig = opt(default_factory=SkillLoopConfig, help="acting, replay, updates")
    train: StreamTrainConfig = opt(default_factory=_train_defaults,
                                   help="the loop (an epoch: steps_per_epoch environment steps)")  # fmt: skip
    evaluate: SkillsAfterTraining = opt(default_factory=SkillsAfterTraining, help="after training")

    def validate(self):
        if self.loop.learning_starts > self.loop.buffer:
            raise ConfigError(f"learning_starts = {self.loop.learning_starts} is more than the "
                              f"buffer holds ({self.loop.buffer})")  # fmt: skip


class SkillLearner(ActingLearner):
    """Policy (SAC: actor, critic, critic_target, alpha) + the method's model, the environments
    and the replay buffer (see the module docstring)."""

    carried = ("skill", "ret")  # each environment's skill and return so far
    counters = ("transitions",)
    # --compile on: the method's loss (and DADS's reward), the critics' and the actor's losses
    # each compiled with its backward; optimizer steps, checks and Polyak averaging eager
    compilable = True
    compile_speedup = COMPILE_SPEEDUP

    def __init__(self, cfg: SkillsRunConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        e = cfg.env
        self.env = e.make(e.envs, seed)
        self.method = SKILL_METHODS[cfg.skill.method](cfg.skill, self.env.obs_dim)
        self.sac = SAC(cfg.sac, self.env.obs_dim + self.method.skill_dim, self.env.act_dim)
        self.modules = {**self.sac.modules(), **self.method.modules()}
        d, a = self.env.obs_dim, self.env.act_dim
        self.replay = Replay(cfg.loop.buffer, {"obs": d, "action": a, "next_obs": d,
                                                "skill": self.method.skill_dim, "terminated": 1})  # fmt: skip
        self.skill = self.method.sample_skills(e.envs)
        self.obs: torch.Tensor | None = None
        self.ret = torch.zeros(e.envs)
        self.transitions = 0

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)  # one process: the recipe's build refuses several
        if not ctx.training:
            return
        self.optimizers = self.sac.optimizers(make_adam)
        name, module = next(iter(self.method.modules().items()))
        self.optimizers[f"{name}_optim"] = make_adam(module.parameters(), self.cfg.skill.lr)
        if ctx.compile:
            self.sac.compile_losses(ctx.compiled)
            self.method.compile_losses(ctx.compiled)

    def policy_input(self, obs, skill):
        return torch.cat([obs, skill], -1).to(self.ctx.device)

    @torch.no_grad()
    def act(self, obs, skill, *, deterministic: bool = False):
        a, _ = self.sac.actor(self.policy_input(obs, skill), deterministic=deterministic)
        return a.cpu()

    def train_step(self, batch, step: int) -> dict[str, float]:
        cfg, n = self.cfg, self.env.n
        if self.obs is None:
            self.obs = self.env.reset()
        if self.transitions < cfg.loop.random_steps:
            action = 2 * torch.rand(n, self.env.act_dim) - 1
        else:
            action = self.act(self.obs, self.skill)
        tr = self.env.step(action)
        self.replay.add(obs=self.obs, action=action, next_obs=tr.next_obs, skill=self.skill,
                        terminated=tr.terminated.float())  # fmt: skip
        if hasattr(self.method, "observe"):
            self.method.observe(self.obs, tr.next_obs)
        self.transitions += n
        terms: dict[str, float] = {}
        self.ret += tr.reward
        done = tr.done
        if done.any():
            terms["env/episode_return"] = float(self.ret[done].mean())
            self.ret[done] = 0
            self.skill[done] = self.method.sample_skills(int(done.sum()))
        self.obs = tr.obs
        if len(self.replay) < cfg.loop.learning_starts:
            return terms
        sums: dict[str, float] = {}
        for _ in range(cfg.loop.updates):
            b = self.replay.sample(cfg.loop.batch_size, self.ctx.device)
            b["x"] = torch.cat([b["obs"], b["skill"]], -1)
            b["next_x"] = torch.cat([b["next_obs"], b["skill"]], -1)
            t = self.method.train(b, step, self.update)
            reward = self.method.reward(b)
            t.update(self.sac.update(b, reward, step, self.update))
            t["reward"] = float(reward.mean())
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        terms.update({k: v / cfg.loop.updates for k, v in sums.items()})
        return terms

    @torch.no_grad()
    def evaluate(self, data, step: int, *, seed: int) -> Evaluation:
        """A quick look for the curves: every skill once, the policy's mean actions."""
        with self.eval_mode():
            r = judge(self, episodes=1, policy="mean", seed=mix(seed, 0xE7A1), goals=0)
        keys = ("mi_bound", "mi_fraction_of_log_k", "accuracy", "accuracy_final", "effective_skills", "coverage",
                "dynamics_ll", "forward_mi_bound")  # fmt: skip
        return Evaluation({k: r[k] for k in keys if k in r})

    def restart(self) -> None:
        super().restart()
        self.ret.zero_()


def eval_skills(learner: SkillLearner, episodes: int) -> torch.Tensor:
    """The skills to judge, ``episodes`` rows each: DIAYN's K one-hots; DADS's a grid of
    2^d corners and the centre of [-1, 1]^d scaled by 0.9 (at most 16 skills)."""
    m = learner.method
    if m.name == "diayn":
        base = torch.eye(m.k)
    else:
        d = m.skill_dim
        corners = torch.cartesian_prod(*[torch.tensor([-0.9, 0.9])] * d).reshape(-1, d)[:15]
        base = torch.cat([corners, torch.zeros(1, d)])
    return base.repeat_interleave(episodes, 0)


@torch.no_grad()
def judge(learner: SkillLearner, *, episodes: int, policy: str, seed: int, goals: int) -> dict:
    """Roll every skill ``episodes`` times in fresh environments and measure (module docstring)."""
    cfg, m = learner.cfg, learner.method
    skills = eval_skills(learner, episodes)
    e = cfg.env

    def fresh(n):
        return e.make(n, seed)

    def act(obs, z):
        return learner.act(obs, z, deterministic=policy == "mean")

    env = fresh(len(skills))
    with seeded(seed):
        roll = rollout(env, act, skills)
        bounds = env.bounds
        env.close()
        finals = roll.final_states().reshape(-1, episodes, roll.states.shape[-1]).mean(1)
        span = torch.as_tensor([b for b in (bounds[1] - bounds[0]) if math.isfinite(b)] or [1.0])
        scale = float(span.square().sum().sqrt())
        dev = learner.ctx.device
        if m.name == "diayn":
            r = diayn_metrics(roll, lambda s: m.disc(s.to(dev)).cpu(), m.k, bounds, cfg.skill.score)
            r["collapse"] = collapse_findings(
                confusion=r["confusion"], k=m.k, accuracy=r["accuracy"]
            )
        else:
            mask = roll.valid[:, 1:]
            s = roll.states[:, :-1][mask]
            sn = roll.states[:, 1:][mask]
            z = skills[:, None].expand(-1, mask.shape[1], -1)[mask]
            b = {"obs": s.to(dev), "next_obs": sn.to(dev), "skill": z.to(dev)}
            ll = m.dynamics.log_prob(b["obs"], b["skill"], b["next_obs"]).cpu()
            rew = m.scores(b).cpu()  # eager: the rows here are not the training batch's
            r = {
                "dynamics_ll": float(ll.mean()),
                "dynamics_ll_se": float(ll.std()) / math.sqrt(len(ll)),
                "forward_mi_bound": float(rew.mean()),
                "forward_mi_bound_se": float(rew.std()) / math.sqrt(len(rew)),
                "prior_samples": m.cfg.prior_samples,
                "include_true": m.cfg.include_true,
                "coverage": coverage(roll.states[roll.valid], bounds),
                "states_scored": len(ll),
            }
            r["collapse"] = collapse_findings(finals=finals, scale=scale)
            if goals and e.name == "point":
                g = torch.Generator().manual_seed(seed)
                target = (2 * torch.rand(goals, 2, generator=g) - 1) * 0.8
                horizon = e.horizon or 30
                r["planning"] = plan_to_goals(fresh, act, m.dynamics, target, skill_dim=m.skill_dim,
                                              horizon=horizon, plan_every=1, generator=g)  # fmt: skip
        r.update({"skills_judged": len(skills) // episodes, "episodes": episodes, "policy": policy,
                  "mean_return": float(roll.returns.mean()),
                  "final_states": finals.tolist()})  # fmt: skip
        r["_rollout"] = roll
        return r


class LoadedSkills(ActingLoaded):
    """Trained skills (``elbokit.load``): ``act(obs, skill)`` the SAC policy's action for a
    skill, ``skill_policy(skill)`` a function of the observation alone, ``play`` whole
    episodes of one skill. A skill is an index 0..K-1 (DIAYN) or a vector in [-1, 1]^d (DADS)."""

    @property
    def skills(self) -> int:
        """DIAYN's K (0 for DADS, whose skills are continuous)."""
        return self.learner.method.k if self.learner.method.name == "diayn" else 0

    def skill_vector(self, skill) -> torch.Tensor:
        """The policy's skill input: a one-hot of K (DIAYN) or the vector itself (DADS)."""
        m = self.learner.method
        if m.name == "diayn":
            if isinstance(skill, bool) or not isinstance(skill, int) or not 0 <= skill < m.k:
                raise ValueError(f"skill = {skill!r}; expected an index 0..{m.k - 1}")
            return torch.nn.functional.one_hot(torch.tensor(skill), m.k).float()
        z = as_batch([skill] if not hasattr(skill, "__len__") else skill, "skill")
        if z.shape != (m.skill_dim,) or bool((z.abs() > 1).any()):
            raise ValueError(f"skill = {skill!r}; expected a vector of {m.skill_dim} values in "
                             "[-1, 1]")  # fmt: skip
        return z

    @torch.no_grad()
    def act(self, obs, skill, *, deterministic: bool = True, seed: int | None = None):
        """obs (obs_dim,) or a batch (N, obs_dim) -> action(s) in the env's space."""
        x = as_batch(obs, "obs")
        single = x.dim() == 1
        x = x[None] if single else x
        if x.shape[1:] != (self.env.obs_dim,):
            raise ValueError(f"obs has shape {tuple(x.shape)}; these skills observe "
                             f"({self.env.obs_dim},) ({self.env.name})")  # fmt: skip
        z = self.skill_vector(skill).expand(len(x), -1)
        with seeded(seed) if seed is not None and not deterministic else contextlib.nullcontext():
            a = self.learner.act(x, z, deterministic=deterministic)
        action = self.env_action(a)
        return action[0] if single else action

    def skill_policy(self, skill, *, deterministic: bool = True):
        """The policy of one skill: a function obs -> action."""
        self.skill_vector(skill)  # checked now, not at the first call
        return lambda obs: self.act(obs, skill, deterministic=deterministic)

    def play(self, skill, env=None, episodes: int = 1, *, seed: int = 0,
             deterministic: bool = True) -> dict:  # fmt: skip
        """Episodes of one skill, in the run's own environment (``env`` None: a fresh copy of
        it, ``point`` included) or in a gymnasium ``env`` of the same spaces; with the
        final states reached ("final_states", (episodes, obs_dim))."""
        policy = self.skill_policy(skill, deterministic=deterministic)
        if env is not None:
            self.check_env(env)
            return play_gymnasium(env, lambda o, s: (policy(o), s), episodes, seed)
        if episodes < 1:
            raise ValueError(f"episodes = {episodes}; expected at least 1")
        z = self.skill_vector(skill)[None]
        own = self.config.env.make(1, seed)  # takes the policy's [-1, 1] actions as they are
        returns, lengths, finals = [], [], []
        try:
            with seeded(seed):
                for _ in range(episodes):
                    obs, total, length = own.reset(), 0.0, 0
                    while True:
                        tr = own.step(self.learner.act(obs, z, deterministic=deterministic))
                        total, length = total + float(tr.reward[0]), length + 1
                        if bool(tr.done[0]):
                            finals.append(tr.next_obs[0].tolist())
                            break
                        obs = tr.obs
                    returns.append(total)
                    lengths.append(length)
        finally:
            own.close()
        r = torch.tensor(returns, dtype=torch.float64)
        return {"returns": returns, "lengths": lengths, "mean_return": float(r.mean()),
                "return_se": float(r.std() / math.sqrt(episodes)) if episodes > 1 else math.nan,
                "final_states": finals}  # fmt: skip


class SkillsRecipe(Recipe):
    headline = "test/mi_bound:max"  # what a study optimizes by default
    name = "skills"
    help = "skills discovered by mutual information with no reward (DIAYN, DADS) and a SAC policy"
    config = SkillsRunConfig
    eval_options = SkillsEvalOptions
    loaded = LoadedSkills
    labels: ClassVar[dict[str, str]] = {
        "mi_bound": "I(s; z) lower bound (nats)",
        "mi_bound_se": "I(s; z) bound, standard error",
        "mi_fraction_of_log_k": "I(s; z) bound as a fraction of log K",
        "log_k": "log K, the most I(s; z) can be (nats)",
        "accuracy": "discriminator accuracy",
        "accuracy_final": "discriminator accuracy on final states",
        "effective_skills": "effective number of skills",
        "coverage": "state coverage (fraction of grid cells visited)",
        "skills_judged": "skills judged",
        "episodes": "fresh episodes per skill",
        "policy": "policy (mean: its deterministic action)",
        "mean_return": "mean return",
        "dynamics_ll": "skill dynamics log-likelihood (nats per step)",
        "dynamics_ll_se": "skill dynamics log-likelihood, standard error",
        "forward_mi_bound": "I(s'; z | s) lower bound (nats per step)",
        "forward_mi_bound_se": "I(s'; z | s) bound, standard error",
        "prior_samples": "prior skills per reward (L)",
        "include_true": "the true skill among them",
        "states_scored": "states scored",
        "env": "environment",
    }
    renamed: ClassVar[dict[str, str | None]] = {
        "agent": "loop",
        "train.batch_size": "loop.batch_size",
    }
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "DIAYN, 8 skills, 2-D point task, 8 envs, 80k transitions (about a minute)",
        "dads": "DADS, 2-D skills on the point task, 40k transitions, planning to goals",
        "debug": "DIAYN on the point task, 1,200 transitions: seconds",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "dads": {"skill": {"method": "dads"}, "train": {"epochs": 10}},
        "debug": {"loop": {"steps_per_epoch": 50, "random_steps": 200, "learning_starts": 200,
                           "buffer": 5000, "batch_size": 64},
                  "sac": {"hidden": (32, 32)}, "skill": {"hidden": (32, 32)},
                  "train": {"epochs": 3, "log_every": 10, "checkpoint_every": 50,
                            "eval_every": 1},
                  "evaluate": {"eval_episodes": 1}},
    }  # fmt: skip

    def default_out(self, cfg):
        return f"runs/skills-{cfg.skill.method}-{cfg.env.name.lower()}"

    def data(self, cfg, run_dir=None) -> StepStream:
        return StepStream(cfg.loop.steps_per_epoch, name=cfg.env.name)

    def learner(self, cfg, data) -> SkillLearner:
        return SkillLearner(cfg, seed=cfg.train.seed)

    def build(self, cfg, run_dir, *, world, say) -> Built:
        if world.size > 1:
            raise ConfigError("skills run in one process: the environments are stepped in it")
        torch.manual_seed(cfg.train.seed)
        learner = self.learner(cfg, None)
        s, e, a = cfg.skill, cfg.env, cfg.loop
        what = (f"DIAYN, K = {s.skills} skills, reward log q(z | s_{'t+1' if s.score == 'next' else 't'})"
                + (" + log K" if s.log_k_bonus else "") if s.method == "diayn" else
                f"DADS, skills uniform on [-1, 1]^{s.skill_dim}, skill dynamics a mixture of "
                f"{s.components} Gaussians, reward over L = {s.prior_samples} prior skills"
                + (" and the true one" if s.include_true else ""))  # fmt: skip
        alpha = "tuned" if cfg.sac.tune_alpha else f"{cfg.sac.alpha:g}"
        total = cfg.train.epochs * a.steps_per_epoch * e.envs
        lines = [
            f"environment: {e.name} ({learner.env.obs_dim}-D states, {learner.env.act_dim}-D "
            f"actions), {e.envs} at once",
            f"skills: {what}",
            f"policy: SAC, hidden {list(cfg.sac.hidden)}, alpha {alpha}; {a.updates} update(s) of "
            f"{a.batch_size} replayed transitions per step of {e.envs} environments; "
            f"{total:,} transitions in all",
        ]
        return Built(cfg, self.data(cfg), learner, lines)

    def after_training(self, cfg):
        k = cfg.evaluate.eval_episodes
        return SkillsEvalOptions(episodes=k) if k else None

    def thoroughness(self, result):
        return {"n": result["episodes"]}

    def measure(self, run: Run, options) -> tuple[dict, list[str]]:
        learner, state = run.learner()
        r = judge(learner, episodes=options.episodes, policy=options.policy, seed=options.seed,
                  goals=options.goals)  # fmt: skip
        r.pop("_rollout")
        learner.close()
        cfg = run.config
        r.update({"step": state["step"], "method": cfg.skill.method, "env": cfg.env.name})
        which = "" if cfg.skill.method == "diayn" else (
            f" (the corners of [-1, 1]^{cfg.skill.skill_dim} at 0.9 and the centre)")  # fmt: skip
        lines = [f"{run.dir} at step {state['step']}: {cfg.skill.method} on {cfg.env.name}, "
                 f"{r['skills_judged']} skills{which} x {options.episodes} fresh episodes, "
                 f"policy {options.policy}"]  # fmt: skip
        if cfg.skill.method == "diayn":
            lines += [
                f"  MI bound E[log q(z|s)] + log K = {r['mi_bound']:.3f} +- {r['mi_bound_se']:.3f} "
                f"nats = {r['mi_fraction_of_log_k']:.3f} log K (log K = {r['log_k']:.3f})",
                f"  discriminator accuracy: {r['accuracy']:.4f} on all {r['states_scored']} scored "
                f"states, {r['accuracy_final']:.4f} on final states; lowest skill "
                f"{min(r['accuracy_per_skill']):.3f}",
                f"  effective skills exp(H) = {r['effective_skills']:.2f} of {cfg.skill.skills}; "
                f"coverage {r['coverage']:.3f} of a 20 x 20 grid",
            ]
        else:
            lines += [
                f"  skill dynamics log-likelihood on fresh transitions: {r['dynamics_ll']:.3f} +- "
                f"{r['dynamics_ll_se']:.3f} nats",
                f"  forward MI bound (L = {r['prior_samples']}"
                f"{', true z included' if r['include_true'] else ''}): {r['forward_mi_bound']:.3f} +- "
                f"{r['forward_mi_bound_se']:.3f} nats; coverage {r['coverage']:.3f}",
            ]
            if "planning" in r:
                p = r["planning"]
                lines.append(
                    f"  goal reaching ({len(p['goals'])} goals, success within "
                    f"{p['success_radius']}): planned {p['planned']['success_rate']:.2f} (mean "
                    f"distance {p['planned']['mean_final_distance']:.3f}) against random skills "
                    f"{p['random']['success_rate']:.2f} ({p['random']['mean_final_distance']:.3f})"
                )
        lines += [f"  COLLAPSE: {c}" for c in r["collapse"]] or ["  no skill collapse found"]
        return r, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves
        from elbokit.report import skills as figures

        eo = SkillsEvalOptions(episodes=result["episodes"], policy=result["policy"])
        r = judge(learner, episodes=eo.episodes, policy=eo.policy, seed=eo.seed, goals=0)
        roll = r["_rollout"]
        method = run.config.skill.method
        pngs = [(figures.trajectories(roll, learner.env.bounds, out / "trajectories.png", method),
                 "Fresh rollouts of every skill, coloured by skill (start: black dot).")]  # fmt: skip
        gif = figures.animation(roll, learner.env.bounds, out / "skills.gif", method)
        pngs.append((gif, "The skills running (GIF)."))
        if "planning" in result:
            pngs.append((figures.planning(result["planning"], out / "planning.png"),
                         "Goal reaching: final positions with skills chosen by planning over the "
                         "skill dynamics, and with random skills."))  # fmt: skip
        keys = (("mi_bound", "MI bound (nats)"), ("accuracy", "discriminator accuracy")) \
            if method == "diayn" else (("reward", "forward-MI reward (nats)"),
                                       ("dynamics_ll", "skill dynamics log-lik (nats)"))  # fmt: skip
        pngs.append((curves(run.dir / "metrics.jsonl", out / "curves.png", keys),
                     "Training (line, replayed batches) and fresh rollouts (points)."))  # fmt: skip
        skip = (
            "confusion",
            "final_states",
            "planning",
            "accuracy_per_skill",
            "collapse",
            *(("mean_return",) if run.config.env.name == "point" else ()),
        )  # the point task pays nothing
        numbers = {k: (f"{v:.4g}" if isinstance(v, float) else str(v))
                   for k, v in result.items() if k not in skip}  # fmt: skip
        numbers["collapse"] = "; ".join(result["collapse"]) or "none found"
        if "planning" in result:
            p = result["planning"]
            numbers["goal success (planned / random)"] = (
                f"{p['planned']['success_rate']:.2f} / {p['random']['success_rate']:.2f}"
            )
        learner.close()
        return f"elbokit skills ({method}): {run.dir.name}", numbers, pngs
