"""Judging learned skills on fresh rollouts: accuracy, the MI bounds, coverage, collapse, planning.

    roll = rollout(env, policy, skills)        states (n, T+1, D) and which are real (valid)
    diayn_metrics(roll, logits_fn, K, bounds)  accuracy (all states, final states, per skill),
                                               the reverse MI bound with its standard error and as
                                               a fraction of log K, the effective number of skills
                                               exp(H(mean_s q(. | s))), coverage, the confusion
    collapse_findings(...)                     skill collapse named, not averaged away
    plan_to_goals(...)                         DADS's zero-shot goal reaching by model-predictive
                                               control over skills, against random skills

States scored are s_1 .. s_T (the start state is the same for every skill and says nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from elbokit.divergence.mutual_info import reverse_mi_bound

__all__ = [
    "Rollout",
    "collapse_findings",
    "coverage",
    "diayn_metrics",
    "plan_to_goals",
    "rollout",
]

GRID = 20  # coverage cells per axis over the first two state coordinates


@dataclass
class Rollout:
    states: torch.Tensor  # (n, T+1, D): s_0 .. s_T
    actions: torch.Tensor  # (n, T, A)
    valid: torch.Tensor  # (n, T+1) bool: the step belongs to the first episode
    skills: torch.Tensor  # (n, d) the skill each row ran
    returns: torch.Tensor  # (n,) the environment's own reward, summed

    def final_states(self) -> torch.Tensor:
        last = self.valid.long().cumsum(1).argmax(1)
        return self.states[torch.arange(len(self.states)), last]


@torch.no_grad()
def rollout(env, policy, skills: torch.Tensor, max_steps: int = 10_000) -> Rollout:
    """One episode per row of ``skills`` in ``env`` (a batch of len(skills) environments);
    ``policy(obs, skills) -> actions``. Stops when every episode has ended."""
    n = len(skills)
    if env.n != n:
        raise ValueError(f"the environment steps {env.n} copies for {n} skills")
    obs = env.reset()
    states, actions, valid = [obs], [], [torch.ones(n, dtype=torch.bool)]
    alive = torch.ones(n, dtype=torch.bool)
    ret = torch.zeros(n)
    for _ in range(max_steps):
        a = policy(obs, skills)
        tr = env.step(a)
        states.append(tr.next_obs)
        actions.append(a.cpu())
        valid.append(alive.clone())
        ret += tr.reward * alive
        alive &= ~tr.done
        obs = tr.obs
        if not alive.any():
            break
    return Rollout(torch.stack(states, 1), torch.stack(actions, 1), torch.stack(valid, 1),
                   skills.cpu(), ret)  # fmt: skip


def coverage(states: torch.Tensor, bounds, cells: int = GRID) -> float:
    """The fraction of a cells x cells grid over the first two coordinates' bounds that the
    states visit (bounds that are infinite are taken from the states themselves)."""
    pts = states.reshape(-1, states.shape[-1])[:, :2].double().numpy()
    lo, hi = (np.asarray(b, np.float64)[:2].copy() for b in bounds)
    for i in range(min(2, pts.shape[1])):
        if not (np.isfinite(lo[i]) and np.isfinite(hi[i])):
            lo[i], hi[i] = pts[:, i].min(), pts[:, i].max()
    if pts.shape[1] < 2:
        pts = np.concatenate([pts, np.zeros_like(pts)], 1)
        lo, hi = np.append(lo[:1], -1.0), np.append(hi[:1], 1.0)
    span = np.where(hi > lo, hi - lo, 1.0)
    idx = np.clip(((pts - lo) / span * cells).astype(int), 0, cells - 1)
    return len({(int(a), int(b)) for a, b in idx}) / cells**2


@torch.no_grad()
def diayn_metrics(roll: Rollout, logits_fn, k: int, bounds, score: str = "next") -> dict:
    """DIAYN's judgement of a rollout of every skill (see the module docstring)."""
    z = roll.skills.argmax(-1)  # (n,)
    # the states the discriminator scores: s_t+1 (next) or s_t (current), t = 0 .. T-1
    scored = roll.states[:, 1:] if score == "next" else roll.states[:, :-1]
    mask = roll.valid[:, 1:]
    s = scored[mask]
    zz = z[:, None].expand_as(mask)[mask]
    logits = logits_fn(s)
    log_q = torch.log_softmax(logits, -1)
    pred = logits.argmax(-1)
    final_logits = logits_fn(roll.final_states())
    marginal = log_q.exp().mean(0)
    h = float(-(marginal * marginal.clamp_min(1e-30).log()).sum())
    confusion = torch.zeros(k, k)
    confusion.index_put_((zz, pred), torch.ones(len(zz)), accumulate=True)
    confusion = confusion / confusion.sum(1, keepdim=True).clamp_min(1)
    bound, se = reverse_mi_bound(logits, zz)
    return {
        "accuracy": float((pred == zz).float().mean()),
        "accuracy_final": float((final_logits.argmax(-1) == z).float().mean()),
        "accuracy_per_skill": confusion.diagonal().tolist(),
        "mi_bound": bound,
        "mi_bound_se": se,
        "mi_fraction_of_log_k": bound / math.log(k),
        "log_k": math.log(k),
        "effective_skills": math.exp(h),
        "coverage": coverage(roll.states[roll.valid], bounds),
        "confusion": confusion.tolist(),
        "states_scored": len(zz),
    }


def collapse_findings(
    *, confusion=None, k: int | None = None, accuracy: float | None = None, finals=None,
    scale: float = 1.0, tol: float = 0.05,
) -> list[str]:  # fmt: skip
    """What went wrong, by name: a discriminator at chance, pairs of skills it confuses (more than
    a fifth of a skill's states taken for another), pairs of skills that end in the same place
    (final states within ``tol`` of the state scale)."""
    out = []
    if accuracy is not None and k is not None and accuracy < 2.0 / k:
        out.append(
            f"the discriminator is near chance: accuracy {accuracy:.3f} against 1/K = {1 / k:.3f}"
        )
    if confusion is not None:
        c = torch.as_tensor(confusion)
        for j in range(len(c)):
            taken = [i for i in range(len(c)) if i != j and float(c[i, j]) > 0.2]
            if taken:
                share = ", ".join(f"{float(c[i, j]):.0%}" for i in taken)
                out.append(f"skill{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} "
                           f"alike with skill {j}: {share} of their states are taken for it")  # fmt: skip
    if finals is not None:
        f = torch.as_tensor(finals, dtype=torch.float64)
        d = torch.cdist(f, f)
        for i in range(len(f)):
            for j in range(i + 1, len(f)):
                if float(d[i, j]) < tol * scale:
                    out.append(f"skills {i} and {j} end in the same place (final states "
                               f"{float(d[i, j]):.3g} apart)")  # fmt: skip
    return out


@torch.no_grad()
def plan_to_goals(make_env, policy, dynamics, goals: torch.Tensor, *, skill_dim: int,
                  horizon: int, plan_every: int = 10, candidates: int = 256, generator=None,
                  success: float = 0.1) -> dict:  # fmt: skip
    """Reach each goal (first two state coordinates) with skills chosen by planning and with
    skills chosen at random, from the same start.

    Planning (model-predictive control, as in DADS): every ``plan_every`` steps draw
    ``candidates`` skills from the prior, predict with the skill dynamics' mean where each leads
    after ``plan_every`` steps, run the one predicted closest to the goal (the recipe replans
    every step: with skills that move the point 0.1 a step, holding one for 10 steps overshoots,
    0.00 success against 0.94 replanning every step on the same trained run). Random: a prior draw
    every ``plan_every`` steps. Success: the final state within ``success`` of the goal.
    """
    n = len(goals)
    out = {}
    for mode in ("planned", "random"):
        env = make_env(n)
        obs = env.reset()
        alive = torch.ones(n, dtype=torch.bool)
        final = obs.clone()
        for t in range(horizon):
            if t % plan_every == 0:
                if mode == "random":
                    z = 2 * torch.rand(n, skill_dim, generator=generator) - 1
                else:
                    cand = 2 * torch.rand(n, candidates, skill_dim, generator=generator) - 1
                    s = obs[:, None].expand(-1, candidates, -1)
                    for _ in range(plan_every):
                        s = dynamics.predict(s, cand)
                    dist = (s[..., :2] - goals[:, None]).norm(dim=-1)
                    z = cand[torch.arange(n), dist.argmin(1)]
            tr = env.step(policy(obs, z))
            final = torch.where(alive[:, None], tr.next_obs, final)
            alive &= ~tr.done
            obs = tr.obs
            if not alive.any():
                break
        env.close()
        dist = (final[:, :2] - goals).norm(dim=-1)
        out[mode] = {
            "success_rate": float((dist < success).float().mean()),
            "mean_final_distance": float(dist.mean()),
            "final_states": final[:, :2].tolist(),
        }
    out["goals"] = goals.tolist()
    out["success_radius"] = success
    return out
