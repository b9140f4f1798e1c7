"""Soft actor-critic (Haarnoja et al. 2018), compact, for continuous actions in [-1, 1]^A.

Maximizes E[sum_t gamma^t (r_t + alpha H(pi(. | s_t)))]:

    critic   Q_j(s, a) -> r + gamma (1 - terminated) [min_j Q'_j(s', a') - alpha log pi(a' | s')],
             a' ~ pi(. | s'), Q' a Polyak-averaged copy (tau); mean squared error, summed over j
    actor    E_{a ~ pi}[alpha log pi(a | s) - min_j Q_j(s, a)]   (reparameterized)
    alpha    fixed (DIAYN's 0.1), or tuned so the policy's entropy tracks a target (-1 per
             action dimension by default): loss -log(alpha) (log pi + target), detached

The policy is a tanh-squashed Gaussian; log pi includes the change of variables
log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)). The two critics are one module whose weights
carry an ensemble dimension (one batched matmul per layer instead of two networks).

``SAC.update(batch, step, update)`` takes the learner's ``update`` (so every loss and gradient
passes the trainer's finite checks) and returns the named terms. The critics' and the actor's
losses are functions of the batch alone (``critic_loss``, ``actor_loss``), so a learner that
compiles its step (``--compile on``) compiles each with its backward
(``SAC.compile_losses``); the actor's loss reads the critics through detached weights
(``frozen``), not by switching their ``requires_grad``, which a compiled graph cannot follow.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.config import Section, opt
from elbokit.nets import MLP

__all__ = ["SAC", "Actor", "SACConfig", "TwinQ"]

LOG_STD = (-5.0, 2.0)


@dataclass(frozen=True)
class SACConfig(Section):
    hidden: tuple[int, ...] = opt((128, 128), "hidden sizes of the actor and of each critic", ge=1)
    gamma: float = opt(0.99, "discount", gt=0, le=1)
    tau: float = opt(0.005, "Polyak rate of the target critics", gt=0, le=1)
    lr: float = opt(3e-4, "Adam learning rate of actor, critics and alpha", gt=0)
    alpha: float = opt(0.1, "entropy coefficient (its start when tuned)", gt=0)
    tune_alpha: bool = opt(False, "tune alpha so the entropy tracks target_entropy")
    target_entropy: float = opt(
        -1.0, "target entropy per action dimension when tuning (the target: this times A)"
    )


class EnsembleLinear(nn.Module):
    """n independent linear maps applied at once: (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's initialization, per member
        self.weight = nn.Parameter(torch.empty(n, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, n_out).uniform_(-bound, bound))

    def forward(self, x, *, frozen: bool = False):
        if frozen:  # no gradient reaches the weights (the input's still flows)
            return torch.baddbmm(self.bias.detach(), x, self.weight.detach())
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two critics Q_j(s, a), j = 1, 2, as one ensemble: forward -> (2, B)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], members: int = 2):
        super().__init__()
        sizes = [n_in, *hidden, 1]
        self.layers = nn.ModuleList(
            EnsembleLinear(members, a, b) for a, b in itertools.pairwise(sizes)
        )
        self.members = members

    def forward(self, x, *, frozen: bool = False):
        """Q_j(s, a) for inputs x = [s, a]; ``frozen``: no gradient to the critics' weights."""
        h = x.unsqueeze(0).expand(self.members, *x.shape)
        for i, layer in enumerate(self.layers):
            h = layer(h, frozen=frozen)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h.squeeze(-1)


class Actor(nn.Module):
    """pi(a | s): a tanh-squashed diagonal Gaussian."""

    def __init__(self, n_in: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = MLP(n_in, hidden, 2 * act_dim)
        self.act_dim = act_dim

    def forward(self, x, *, deterministic: bool = False):
        """(action in [-1, 1], log pi(action | x)) of shapes (B, A) and (B,)."""
        mean, log_std = self.net(x).chunk(2, -1)
        if deterministic:
            return torch.tanh(mean), torch.zeros(len(x), device=x.device)
        log_std = log_std.clamp(*LOG_STD)
        u = mean + log_std.exp() * torch.randn_like(mean)
        gauss = (
            -0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)
        ).sum(-1)
        squash = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), gauss - squash


class LogAlpha(nn.Module):
    def __init__(self, alpha: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(math.log(alpha)))


class SAC:
    """Actor, twin critics, their targets and alpha (modules) for inputs of size ``n_in``."""

    def __init__(self, cfg: SACConfig, n_in: int, act_dim: int):
        self.cfg = cfg
        self.actor = Actor(n_in, act_dim, cfg.hidden)
        self.critic = TwinQ(n_in + act_dim, cfg.hidden)
        self.critic_target = TwinQ(n_in + act_dim, cfg.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = LogAlpha(cfg.alpha)
        self.log_alpha.requires_grad_(cfg.tune_alpha)
        self.target_entropy = cfg.target_entropy * act_dim
        self._critic_loss, self._actor_loss = self.critic_loss, self.actor_loss  # or compiled

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "alpha": self.log_alpha,
        }

    def optimizers(self, make) -> dict[str, torch.optim.Optimizer]:
        opts = {
            "actor_optim": make(self.actor.parameters(), self.cfg.lr),
            "critic_optim": make(self.critic.parameters(), self.cfg.lr),
        }
        if self.cfg.tune_alpha:
            opts["alpha_optim"] = make(self.log_alpha.parameters(), self.cfg.lr)
        return opts

    def compile_losses(self, compiled) -> None:
        """Take the critics' and actor's losses through ``compiled(fn, what)`` (the step
        context's: ``elbokit.train.compiled.CompiledStep`` when the run compiles)."""
        self._critic_loss = compiled(self.critic_loss, "the critics' loss")
        self._actor_loss = compiled(self.actor_loss, "the actor's loss")

    def critic_loss(self, batch: dict[str, torch.Tensor], step: int = 0):
        """(loss, terms) of the twin critics on ``batch`` (``x``, ``action``, ``next_x``,
        ``terminated``, ``reward``): squared errors against the soft target, summed over the
        two critics."""
        cfg = self.cfg
        alpha = self.log_alpha.value.exp().detach()
        x, a, nx = batch["x"], batch["action"], batch["next_x"]
        not_done = 1.0 - batch["terminated"].reshape(-1)
        with torch.no_grad():
            na, nlogp = self.actor(nx)
            q_next = self.critic_target(torch.cat([nx, na], -1)).min(0).values
            target = batch["reward"] + cfg.gamma * not_done * (q_next - alpha * nlogp)
        q = self.critic(torch.cat([x, a], -1))
        loss = (q - target).square().mean(1).sum()
        return loss, {"sac/critic_loss": loss.detach(), "sac/q": q.detach().mean()}

    def actor_loss(self, batch: dict[str, torch.Tensor], step: int = 0):
        """(loss, terms, log pi) of the actor on ``batch["x"]``, through the critics' current
        weights with no gradient to them."""
        alpha = self.log_alpha.value.exp().detach()
        x = batch["x"]
        pa, logp = self.actor(x)
        q_pi = self.critic(torch.cat([x, pa], -1), frozen=True).min(0).values
        loss = (alpha * logp - q_pi).mean()
        return loss, {"sac/actor_loss": loss.detach(), "sac/entropy": -logp.detach().mean()}, logp

    def update(self, batch: dict[str, torch.Tensor], reward: torch.Tensor, step: int, update):
        """One step of critic, actor (and alpha) on ``batch`` (inputs ``x``, ``action``,
        ``next_x``, ``terminated``) with ``reward`` (B,). Returns the named terms."""
        cfg = self.cfg
        loss, named = self._critic_loss({**batch, "reward": reward}, step)
        terms = update("critic_optim", loss, named, step, self.critic.named_parameters())
        loss, named, logp = self._actor_loss(batch, step)
        terms.update(update("actor_optim", loss, named, step, self.actor.named_parameters()))
        if cfg.tune_alpha:
            alpha_loss = -(self.log_alpha.value * (logp.detach() + self.target_entropy)).mean()
            update("alpha_optim", alpha_loss, {}, step, self.log_alpha.named_parameters())
        terms["sac/alpha"] = float(self.log_alpha.value.detach().exp())
        with torch.no_grad():
            for p, tp in zip(
                self.critic.parameters(), self.critic_target.parameters(), strict=True
            ):
                tp.lerp_(p, cfg.tau)
        return terms
