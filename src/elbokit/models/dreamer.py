"""Behaviour learned in imagination (DreamerV2, Hafner et al. 2021; DreamerV3's return scale).

From posterior states s_0 of replayed data, the world model's prior is rolled forward H steps
under the actor, a_t ~ pi(. | s_t), s_{t+1} ~ p(s_{t+1} | s_t, a_t); the reward head gives
r_{t+1} and the discount head d_{t+1} = gamma x P(continue) (it is trained on gamma x cont).
With v the slow (target) critic, the lambda-returns are

    R_{H-1} = r_H + d_H v(s_H)
    R_t     = r_{t+1} + d_{t+1} [(1 - lambda) v(s_{t+1}) + lambda R_{t+1}]

and every imagined step t is weighted by w_t = cont(s_0) d_1 ... d_t, how likely it is reached
(an imagined start that ended its episode weighs nothing). Then

    critic   mean_t w_t (v_online(s_t) - sg(R_t))^2 / 2, the slow critic an EMA of it
    actor    mean_t w_t [-(advantage term) - eta H(pi(. | s_t))], with the return scale
             S = max(1, P95(R) - P5(R)) tracked with decay 0.99 (DreamerV3; or S = 1):
               reinforce (discrete actions):  -log pi(a_t | s_t) sg((R_t - v(s_t)) / S)
               dynamics (continuous actions): -R_t / S, backpropagated through the model

(``auto`` chooses as DreamerV2 does). The world model is frozen while actor and critic learn:
its parameters receive no gradient from their losses, though the actor's gradient flows through
its computations. Discrete actions are one-hot, with 1% of the uniform mixed into the policy;
continuous ones a Normal with tanh mean and a standard deviation in [min_std, max_std].
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.config import Section, opt
from elbokit.divergence.categorical import softmax
from elbokit.nets import ACTIVATIONS, MLP

__all__ = [
    "Actor",
    "ActorCritic",
    "ActorCriticConfig",
    "ReturnNorm",
    "frozen",
    "imagine",
    "lambda_returns",
]


@dataclass(frozen=True)
class ActorCriticConfig(Section):
    horizon: int = opt(15, "imagined steps from each replayed state", ge=1,
                       flag="imagine-horizon")  # fmt: skip
    lam: float = opt(0.95, "lambda of the lambda-returns", ge=0, le=1)
    hidden: tuple[int, ...] = opt((64, 64), "actor and critic MLP widths", ge=1,
                                    flag="ac-hidden")  # fmt: skip
    activation: str = opt("elu", "actor and critic activation", choices=ACTIVATIONS,
                          flag="ac-activation")  # fmt: skip
    actor_lr: float = opt(3e-4, "actor Adam learning rate", gt=0)
    critic_lr: float = opt(3e-4, "critic Adam learning rate", gt=0)
    entropy: float = opt(1e-3, "entropy bonus scale eta", ge=0)
    return_norm: Literal["percentile", "none"] = opt(
        "percentile", "scale returns by max(1, P95 - P5) (DreamerV3) or not (DreamerV2)"
    )
    norm_decay: float = opt(0.99, "decay of the tracked percentiles", ge=0, lt=1)
    actor_grad: Literal["auto", "reinforce", "dynamics"] = opt(
        "auto", "auto: reinforce for discrete actions, dynamics for continuous ones"
    )
    target_tau: float = opt(0.02, "EMA rate of the slow critic per update", gt=0, le=1)
    min_std: float = opt(0.1, "smallest std of continuous actions", gt=0)
    max_std: float = opt(1.0, "largest std of continuous actions", gt=0)
    unimix: float = opt(0.01, "uniform mixed into discrete policies", ge=0, lt=1,
                         flag="actor-unimix")  # fmt: skip

    def validate(self):
        if self.min_std > self.max_std:
            from elbokit.config import ConfigError

            raise ConfigError(f"min_std = {self.min_std} > max_std = {self.max_std}")


def lambda_returns(
    reward: torch.Tensor, value: torch.Tensor, discount: torch.Tensor, lam: float
) -> torch.Tensor:
    """R_0..R_{H-1} (H, ...) from reward r_1..r_H and discount d_1..d_H (H, ...) and the values
    v_0..v_H (H + 1, ...), by the recursion in the module docstring (time first)."""
    h = reward.shape[0]
    if value.shape[0] != h + 1 or discount.shape != reward.shape:
        raise ValueError(
            f"reward {tuple(reward.shape)}, discount {tuple(discount.shape)}, value "
            f"{tuple(value.shape)}: expected H rewards and discounts and H + 1 values"
        )
    out = []
    ret = value[h]  # R_H = v_H, so R_{H-1} = r_H + d_H v_H
    for t in reversed(range(h)):
        ret = reward[t] + discount[t] * ((1 - lam) * value[t + 1] + lam * ret)
        out.append(ret)
    return torch.stack(out[::-1])


class ReturnNorm(nn.Module):
    """The 5th and 95th percentiles of the returns, each an EMA over batches (from 0), and the
    scale max(minimum, high - low) (DreamerV3). Saved with the module's state."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95,
                 minimum: float = 1.0):  # fmt: skip
        super().__init__()
        self.decay, self.q, self.minimum = decay, (low, high), minimum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        q = torch.quantile(x.detach().float().flatten(), torch.tensor(self.q, device=x.device))
        self.low.mul_(self.decay).add_((1 - self.decay) * q[0])
        self.high.mul_(self.decay).add_((1 - self.decay) * q[1])

    @property
    def scale(self) -> torch.Tensor:
        return (self.high - self.low).clamp_min(self.minimum)


class _Policy:
    """The action distribution at a batch of states."""

    def __init__(self, out: torch.Tensor, discrete: bool, cfg: ActorCriticConfig):
        self.discrete = discrete
        if discrete:
            probs = softmax(out.float())
            if cfg.unimix:
                probs = (1 - cfg.unimix) * probs + cfg.unimix / probs.shape[-1]
            self.log_p = probs.log()
            self.probs = probs
        else:
            mean, std = out.float().chunk(2, -1)
            self.mean = torch.tanh(mean)
            self.std = (cfg.max_std - cfg.min_std) * torch.sigmoid(std + 2.0) + cfg.min_std

    def sample(self) -> torch.Tensor:
        """A one-hot action (discrete) or a reparameterized Normal draw clipped to [-1, 1] with
        the straight-through gradient of the draw (continuous)."""
        if self.discrete:
            idx = torch.multinomial(self.probs.reshape(-1, self.probs.shape[-1]), 1)
            return F.one_hot(idx.reshape(self.probs.shape[:-1]), self.probs.shape[-1]).float()
        a = self.mean + self.std * torch.randn_like(self.mean)
        return a + (a.clamp(-1, 1) - a).detach()

    def mode(self) -> torch.Tensor:
        if self.discrete:
            return F.one_hot(self.probs.argmax(-1), self.probs.shape[-1]).float()
        return self.mean

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return (a * self.log_p).sum(-1)
        return torch.distributions.Normal(self.mean, self.std).log_prob(a).sum(-1)

    def entropy(self) -> torch.Tensor:
        if self.discrete:
            return -(self.probs * self.log_p).sum(-1)
        return torch.distributions.Normal(self.mean, self.std).entropy().sum(-1)


class Actor(nn.Module):
    def __init__(self, features: int, actions: int, discrete: bool, cfg: ActorCriticConfig):
        super().__init__()
        self.discrete, self.cfg = discrete, cfg
        self.net = MLP(features, cfg.hidden, actions if discrete else 2 * actions, cfg.activation)

    def forward(self, features: torch.Tensor) -> _Policy:
        return _Policy(self.net(features), self.discrete, self.cfg)


@contextlib.contextmanager
def frozen(*modules: nn.Module):
    """Parameters of ``modules`` take no gradient inside the block (computations through them
    still pass gradients on to their inputs); restored after."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


def imagine(world_model, actor: Actor, h: torch.Tensor, z: torch.Tensor, horizon: int):
    """Roll the prior from states (h, z) (N, .) under the actor for ``horizon`` steps.

    Returns features (H + 1, N, F) of s_0..s_H, the actions a_0..a_{H-1} (H, N, A) and the
    policies at s_0..s_{H-1} (a list). Gradients flow where the caller allows them."""
    rssm = world_model.rssm
    feats, actions, policies = [torch.cat([h, z], -1)], [], []
    for _ in range(horizon):
        pi = actor(feats[-1])
        a = pi.sample()
        h = rssm._step(h, z, rssm.in_a(a))
        z = rssm.latent.rsample(rssm.prior_net(h))
        feats.append(torch.cat([h, z], -1))
        actions.append(a)
        policies.append(pi)
    return torch.stack(feats), torch.stack(actions), policies


class ActorCritic(nn.Module):
    """Actor, critic, slow critic and return scale (see the module docstring)."""

    def __init__(self, cfg: ActorCriticConfig, features: int, actions: int, discrete: bool):
        super().__init__()
        self.cfg, self.discrete = cfg, discrete
        self.actor = Actor(features, actions, discrete, cfg)
        self.critic = MLP(features, cfg.hidden, 1, cfg.activation)
        self.target = MLP(features, cfg.hidden, 1, cfg.activation)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.norm = ReturnNorm(cfg.norm_decay)
        self._actor_loss, self._critic_loss = self.actor_loss, self.critic_loss  # or compiled
        mode = cfg.actor_grad
        self.reinforce = discrete if mode == "auto" else mode == "reinforce"
        if discrete and not self.reinforce:
            raise ValueError("actor_grad = dynamics needs continuous actions")

    def losses(self, world_model, h: torch.Tensor, z: torch.Tensor, cont: torch.Tensor):
        """The actor's and the critic's loss from start states h, z (N, .) with their
        continuation cont (N,), and the terms to log. The world model is frozen here. Two
        graphs: the critic's loss reads the imagined rollout detached, so each loss is
        backpropagated on its own (and, compiled, each is its own graph)."""
        with frozen(world_model, self.target):
            actor_loss, terms, rollout = self._actor_loss((world_model, h, z, cont), 0)
        critic_loss, more = self._critic_loss(rollout, 0)
        return actor_loss, critic_loss, {**terms, **more}

    def compile_losses(self, compiled) -> None:
        """Take both losses through ``compiled(fn, what)``, the step context's
        (``elbokit.train.compiled``); the freezing, which a graph cannot follow, stays out."""
        self._actor_loss = compiled(self.actor_loss, "the actor's loss")
        self._critic_loss = compiled(self.critic_loss, "the critic's loss")

    def actor_loss(self, inputs, step: int = 0):
        """(loss, terms, rollout) of the actor for ``inputs`` = (world model, h, z, cont), the
        world model and the slow critic frozen; rollout: the imagined features, lambda-returns
        and weights, detached, for ``critic_loss``."""
        world_model, h, z, cont = inputs
        cfg = self.cfg
        h, z = h.detach(), z.detach()
        if self.reinforce:  # no gradient through the dynamics: imagine without a graph
            with torch.no_grad():
                feats, actions, _ = imagine(world_model, self.actor, h, z, cfg.horizon)
            policies = self.actor(feats[:-1])
            logp, ent = policies.log_prob(actions), policies.entropy()
        else:
            feats, actions, pols = imagine(world_model, self.actor, h, z, cfg.horizon)
            ent = torch.stack([p.entropy() for p in pols])
            logp = None
        reward = world_model.reward_head(feats[1:]).squeeze(-1).float()
        disc = torch.sigmoid(world_model.discount_head(feats[1:]).squeeze(-1).float())
        value = self.target(feats).squeeze(-1).float()
        ret = lambda_returns(reward, value, disc, cfg.lam)
        with torch.no_grad():
            w = torch.cumprod(torch.cat([cont[None].float(), disc[:-1]]), 0)
        if cfg.return_norm == "percentile":
            self.norm.update(ret)
            scale = self.norm.scale
        else:
            scale = torch.ones(())
        if self.reinforce:
            adv = ((ret - value[:-1]) / scale).detach()
            objective = logp * adv
        else:
            objective = ret / scale
        actor_loss = -(w * (objective + cfg.entropy * ent)).mean()
        terms = {
            "actor/entropy": ent.detach().mean(),
            "imagined/return": ret.detach().mean(),
            "imagined/reward": reward.detach().mean(),
            "imagined/continue": disc.detach().mean(),
            "return_scale": scale.detach().reshape(()),
        }
        return actor_loss, terms, (feats[:-1].detach(), ret.detach(), w)

    def critic_loss(self, rollout, step: int = 0):
        """(loss, terms) of the online critic against the lambda-returns of a rollout
        (features, returns, weights: ``actor_loss``'s)."""
        feats, ret, w = rollout
        v = self.critic(feats).squeeze(-1).float()
        loss = (w * 0.5 * (v - ret).pow(2)).mean()
        error = (w * (v.detach() - ret).abs()).sum() / w.sum().clamp_min(1e-8)
        return loss, {"critic/value_error": error}

    @torch.no_grad()
    def update_target(self) -> None:
        tau = self.cfg.target_tau
        for t, p in zip(self.target.parameters(), self.critic.parameters(), strict=True):
            t.lerp_(p, tau)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features).squeeze(-1)
