"""Skill discovery by mutual information: what DIAYN and DADS learn beside the policy.

A method owns the skill prior, how a skill enters the policy, the model that scores skills and
the intrinsic reward (``elbokit.divergence.mutual_info``), recomputed from the *current* model
every time a replayed batch is used, never frozen at collection time.

``DIAYN`` (reverse MI): K discrete skills, uniform; a discriminator q(z | s) trained by
cross-entropy; reward log q(z | s) + log K (``with_log_k``) on s_{t+1} as in the paper
(``score="next"``; the reference code scores s_t: ``score="current"``).

``DADS`` (forward MI): continuous skills uniform on [-1, 1]^d; skill dynamics q(s' | s, z)
predicting the change s' - s as a mixture of Gaussians, inputs and targets normalized by running
statistics; reward log q(s' | s, z) - log (1/L) sum_i q(s' | s, z_i) over L prior samples (the
true z among them when ``include_true``, as the reference code does). The normalization is a
change of variables of the target shared by every z, so it cancels in the reward; log-likelihoods
reported are of the raw change (nats, the Jacobian subtracted).

Each method's training loss is a function of the batch (``loss``), and DADS's reward too, so a
learner that compiles its step takes them through its compiler (``compile_losses``); DIAYN's
reward, one forward pass of the discriminator, stays eager.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.config import Section, opt
from elbokit.divergence.mutual_info import forward_mi_reward, reverse_mi_reward
from elbokit.nets import MLP

__all__ = ["DADS", "DIAYN", "SKILL_METHODS", "RunningNorm", "SkillConfig", "SkillDynamics"]


@dataclass(frozen=True)
class SkillConfig(Section):
    method: str = opt("diayn", "diayn (discrete skills, reverse MI) or dads (continuous, forward MI)",
                      choices=("diayn", "dads"))  # fmt: skip
    skills: int = opt(8, "K, the number of discrete skills (diayn)", ge=2, le=1024)
    skill_dim: int = opt(2, "d, the size of a continuous skill on [-1, 1]^d (dads)", ge=1, le=64)
    hidden: tuple[int, ...] = opt(
        (128, 128), "hidden sizes of the discriminator / skill dynamics", ge=1, flag="skill-hidden"
    )
    lr: float = opt(
        3e-4, "Adam learning rate of the discriminator / skill dynamics", gt=0, flag="skill-lr"
    )
    score: Literal["next", "current"] = opt(
        "next", "the state the discriminator scores: next (s_t+1, the paper) or current (s_t, "
        "the reference code)"
    )  # fmt: skip
    log_k_bonus: bool = opt(
        True, "add -log p(z) = log K to the reward (positive whenever the discriminator beats "
        "chance: it rewards staying alive where episodes end early)"
    )  # fmt: skip
    components: int = opt(4, "mixture components of the skill dynamics (dads)", ge=1)
    prior_samples: int = opt(100, "L, prior skills in the forward-MI reward (dads)", ge=1)
    include_true: bool = opt(True, "score the true skill beside the L prior ones, L + 1 terms "
                             "(dads; the reference code does, the paper does not)")  # fmt: skip


class RunningNorm(nn.Module):
    """Running mean and variance of rows (buffers: saved with the module, exact on resume)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("m2", torch.zeros(dim))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        n = len(x)
        if n == 0:
            return
        mean_b = x.mean(0)
        m2_b = (x - mean_b).square().sum(0)
        total = self.count + n
        delta = mean_b - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2_b + delta.square() * (self.count * n / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        var = self.m2 / self.count.clamp(min=1)
        return var.sqrt().clamp(min=1e-3)

    def forward(self, x):
        return (x - self.mean) / self.std


class SkillDynamics(nn.Module):
    """q(s' - s | s, z): a mixture of M diagonal Gaussians over the normalized change."""

    def __init__(self, obs_dim: int, skill_dim: int, hidden, components: int):
        super().__init__()
        self.obs_norm, self.delta_norm = RunningNorm(obs_dim), RunningNorm(obs_dim)
        self.m, self.d = components, obs_dim
        self.net = MLP(obs_dim + skill_dim, tuple(hidden), components * (1 + 2 * obs_dim))

    def _params(self, s, z):
        out = self.net(torch.cat([self.obs_norm(s), z], -1))
        logits, mean, log_std = out.split([self.m, self.m * self.d, self.m * self.d], -1)
        shape = (*out.shape[:-1], self.m, self.d)
        return logits, mean.reshape(shape), log_std.reshape(shape).clamp(-5, 2)

    def log_prob(self, s, z, s_next) -> torch.Tensor:
        """log q(s' - s | s, z) of the raw change, in nats; broadcasts over leading dims."""
        logits, mean, log_std = self._params(s, z)
        y = self.delta_norm(s_next - s).unsqueeze(-2)  # (..., 1, D)
        comp = (-0.5 * ((y - mean) / log_std.exp()).square() - log_std
                - 0.5 * math.log(2 * math.pi)).sum(-1)  # fmt: skip
        ll = torch.logsumexp(F.log_softmax(logits, -1) + comp, -1)
        return ll - self.delta_norm.std.log().sum()

    @torch.no_grad()
    def predict(self, s, z) -> torch.Tensor:
        """The mean of s' under q: s + the mixture's mean change (for planning)."""
        logits, mean, _ = self._params(s, z)
        change = (logits.softmax(-1).unsqueeze(-1) * mean).sum(-2)
        return s + change * self.delta_norm.std + self.delta_norm.mean


class DIAYN:
    name = "diayn"

    def __init__(self, cfg: SkillConfig, obs_dim: int):
        self.cfg, self.k = cfg, cfg.skills
        self.skill_dim = self.k  # one-hot into the policy
        self.disc = MLP(obs_dim, tuple(cfg.hidden), self.k)
        self._loss = self.loss  # or compiled

    def modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.disc}

    def sample_skills(self, n: int) -> torch.Tensor:
        return F.one_hot(torch.randint(self.k, (n,)), self.k).float()

    def scored(self, batch) -> torch.Tensor:
        return batch["next_obs"] if self.cfg.score == "next" else batch["obs"]

    @torch.no_grad()
    def reward(self, batch) -> torch.Tensor:
        z = batch["skill"].argmax(-1)
        return reverse_mi_reward(self.disc(self.scored(batch)), z, with_log_k=self.cfg.log_k_bonus)

    def compile_losses(self, compiled) -> None:
        self._loss = compiled(self.loss, "the discriminator's loss")

    def loss(self, batch, step: int = 0):
        """(cross-entropy of the discriminator, terms) on ``batch``."""
        z = batch["skill"].argmax(-1)
        logits = self.disc(self.scored(batch))
        loss = F.cross_entropy(logits, z)
        acc = (logits.argmax(-1) == z).float().mean()
        # the bound at this batch: E[log q(z | s)] + log K = log K - cross-entropy
        return loss, {"mi_bound": math.log(self.k) - loss.detach(), "accuracy": acc}

    def train(self, batch, step: int, update) -> dict[str, float]:
        loss, terms = self._loss(batch, step)
        return update("discriminator_optim", loss, terms, step, self.disc.named_parameters())


class DADS:
    name = "dads"

    def __init__(self, cfg: SkillConfig, obs_dim: int):
        self.cfg = cfg
        self.skill_dim = cfg.skill_dim
        self.dynamics = SkillDynamics(obs_dim, cfg.skill_dim, cfg.hidden, cfg.components)
        self._loss, self._reward = self.loss, self.scores  # or compiled

    def modules(self) -> dict[str, nn.Module]:
        return {"dynamics": self.dynamics}

    def sample_skills(self, n: int) -> torch.Tensor:
        return 2 * torch.rand(n, self.skill_dim) - 1

    def observe(self, obs, next_obs) -> None:
        self.dynamics.obs_norm.observe(obs)
        self.dynamics.delta_norm.observe(next_obs - obs)

    def compile_losses(self, compiled) -> None:
        self._loss = compiled(self.loss, "the skill dynamics' loss")
        self._reward = compiled(self.scores, "the skill dynamics' reward")

    def reward(self, batch, prior_samples: int | None = None) -> torch.Tensor:
        if prior_samples is None or prior_samples == self.cfg.prior_samples:
            return self._reward(batch, 0)
        return self.scores(batch, 0, prior_samples)

    @torch.no_grad()
    def scores(self, batch, step: int = 0, prior_samples: int | None = None) -> torch.Tensor:
        """The forward-MI reward of each transition in ``batch`` against ``prior_samples`` (L)
        skills drawn from the prior."""
        s, z, sn = batch["obs"], batch["skill"], batch["next_obs"]
        L = prior_samples or self.cfg.prior_samples
        alt = 2 * torch.rand(len(s), L, self.skill_dim, device=s.device) - 1
        lq = self.dynamics.log_prob(s, z, sn)
        lq_alt = self.dynamics.log_prob(s[:, None].expand(-1, L, -1), alt,
                                        sn[:, None].expand(-1, L, -1))  # fmt: skip
        return forward_mi_reward(lq, lq_alt, include_true=self.cfg.include_true)

    def loss(self, batch, step: int = 0):
        """(minus the mean log-likelihood of the skill dynamics, terms) on ``batch``."""
        ll = self.dynamics.log_prob(batch["obs"], batch["skill"], batch["next_obs"]).mean()
        return -ll, {"dynamics_ll": ll.detach()}

    def train(self, batch, step: int, update) -> dict[str, float]:
        loss, terms = self._loss(batch, step)
        return update("dynamics_optim", loss, terms, step, self.dynamics.named_parameters())


SKILL_METHODS = {"diayn": DIAYN, "dads": DADS}
