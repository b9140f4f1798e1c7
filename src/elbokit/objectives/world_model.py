"""The world-model loss of DreamerV2 (Hafner et al. 2021, eq. 2), from the heads' outputs.

    L = obs + reward + discount + kl, each term scaled from config:
      obs       -log N(x_t; mean, I), summed over the observation's elements (pixels, or a
                state vector's entries; 0.5 log 2 pi each included; the plain MSE per element
                is reported beside it as ``obs_mse``)
      reward    -log N(r_t; mean, 1)
      discount  -[g log s(l) + (1 - g) log s(-l)]: a Bernoulli cross-entropy that takes soft
                targets g such as 0.99 (torch's Bernoulli with validation rejects them)
      kl        KL balancing with free nats (``KLBalance``) between the posterior and prior
                logits of the factorized categorical latent
averaged over the batch and time dims. The set of scales must equal the set of these four
parts, so a misspelled or forgotten scale is an error, not a silent default.

Logged terms: ``obs``, ``reward``, ``discount`` (the NLLs), ``kl`` (the true KL(posterior ||
prior), batch mean), ``kl/balanced`` (the balanced, clipped value the ``kl`` scale multiplies),
``kl/dyn`` and ``kl/rep`` (its two clipped parts before alpha) and ``obs_mse``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import torch
import torch.nn.functional as F

from elbokit.config import Section, opt
from elbokit.objectives.balance import KLBalance
from elbokit.objectives.base import ObjectiveOutput

TERMS = ("obs", "reward", "discount", "kl")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _frozen(d: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class WorldModelObjectiveConfig(Section):
    """The world-model objective's settings, the one place their defaults live: every scale 1,
    balance 0.8 and 1 free nat (DreamerV2's continuous-control settings; its Atari ones are
    discount 5, kl 0.1, no free nats)."""

    obs_scale: float = opt(1.0, "scale of the observation NLL (images or state vectors)", ge=0)
    reward_scale: float = opt(1.0, "scale of the reward NLL", ge=0)
    discount_scale: float = opt(1.0, "scale of the discount NLL", ge=0)
    kl_scale: float = opt(1.0, "scale of the balanced KL", ge=0)
    kl_balance: float = opt(0.8, "alpha: the prior's share of the KL", ge=0, le=1)
    free_nats: float = opt(1.0, "free nats (0: off)", ge=0)
    free_mode: Literal["mean", "elementwise"] = opt(
        "mean", "clip the mean KL (DreamerV2) or each one (DreamerV3)"
    )
    gamma: float = opt(0.99, "discount target on non-terminal steps", gt=0, le=1)

    def scales(self) -> dict[str, float]:
        return {"obs": self.obs_scale, "reward": self.reward_scale,
                "discount": self.discount_scale, "kl": self.kl_scale}  # fmt: skip

    def balance(self) -> KLBalance:
        return KLBalance(alpha=self.kl_balance, free_nats=self.free_nats, free_mode=self.free_mode)

    def build(self) -> WorldModelObjective:
        return WorldModelObjective(WorldModelLoss(self.scales(), self.balance()), gamma=self.gamma)


@dataclass(frozen=True)
class WorldModelLoss:
    """Defaults: those of ``WorldModelObjectiveConfig``."""

    scales: Mapping[str, float] = field(
        default_factory=lambda: _frozen(WorldModelObjectiveConfig().scales())
    )
    kl: KLBalance = field(default_factory=lambda: WorldModelObjectiveConfig().balance())

    def __post_init__(self):
        object.__setattr__(self, "scales", _frozen(self.scales))
        if set(self.scales) != set(TERMS):
            missing, extra = set(TERMS) - set(self.scales), set(self.scales) - set(TERMS)
            raise ValueError(
                f"loss scales must name exactly the terms {list(TERMS)}; "
                f"missing {sorted(missing)}, unknown {sorted(extra)}"
            )

    def __call__(
        self,
        obs_mean: torch.Tensor,
        obs: torch.Tensor,
        reward_mean: torch.Tensor,
        reward: torch.Tensor,
        discount_logits: torch.Tensor,
        discount: torch.Tensor,
        posterior_logits: torch.Tensor,
        prior_logits: torch.Tensor,
    ) -> ObjectiveOutput:
        """Shapes: obs (..., C, H, W) images or (..., D) vectors; reward, discount (...); logits (..., G, K); `...` is
        (batch, time) or any leading dims, the same for all.

        Raises:
            ValueError: shapes that do not match, or discount targets outside [0, 1].
        """
        lead = reward.shape
        event = max(obs.dim() - len(lead), 0)  # 3 for images (C, H, W), 1 for vectors
        if obs_mean.shape != obs.shape:
            raise ValueError(
                f"obs_mean has shape {tuple(obs_mean.shape)}; expected the observation's {tuple(obs.shape)}"
            )
        for name, t, extra in (("obs", obs, event), ("obs_mean", obs_mean, event), ("reward_mean", reward_mean, 0),
                               ("discount", discount, 0), ("discount_logits", discount_logits, 0),
                               ("posterior_logits", posterior_logits, 2), ("prior_logits", prior_logits, 2)):  # fmt: skip
            if t.shape[: len(t.shape) - extra] != lead:
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)}; its leading dims must be the reward's {tuple(lead)}"
                )
        # (a data-dependent branch, left out of a compiled step, whose targets are gamma * cont)
        if not torch.compiler.is_compiling() and ((discount < 0) | (discount > 1)).any():
            raise ValueError("discount targets must be in [0, 1]")
        sq = (obs - obs_mean).pow(2)
        obs_nll = (0.5 * sq + _HALF_LOG_2PI).flatten(len(lead)).sum(-1)
        reward_nll = 0.5 * (reward - reward_mean).pow(2) + _HALF_LOG_2PI
        discount_nll = F.binary_cross_entropy_with_logits(
            discount_logits, discount, reduction="none"
        )
        kl_out = self.kl.from_logits(posterior_logits, prior_logits)
        parts = {
            "obs": obs_nll.mean(),
            "reward": reward_nll.mean(),
            "discount": discount_nll.mean(),
            "kl": kl_out.loss,  # balanced and clipped: what the loss weighs, not the KL itself
        }
        loss = sum(self.scales[k] * v for k, v in parts.items())
        logged = {
            "obs": parts["obs"].detach(),
            "reward": parts["reward"].detach(),
            "discount": parts["discount"].detach(),
            "kl": kl_out.terms["kl"],
            "kl/balanced": kl_out.loss.detach(),
            "kl/dyn": kl_out.terms["kl/dyn"],
            "kl/rep": kl_out.terms["kl/rep"],
            "obs_mse": sq.detach().mean(),
        }
        return ObjectiveOutput(loss, logged, "analytic")


@dataclass(frozen=True)
class WorldModelObjective:
    """``objective(model, batch, step)`` for the trainer: any model whose ``model(batch)`` returns
    the loss inputs (``obs_mean``, ``obs``, ``reward_mean``, ``discount_logits``,
    ``posterior``, ``prior``) and a batch with ``reward`` and ``discount`` (1 - terminal).
    The discount target is ``gamma * discount``: soft, 0.99 on non-terminal steps (DreamerV2)."""

    loss: WorldModelLoss = field(default_factory=WorldModelLoss)
    gamma: float = 0.99

    def __post_init__(self):
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma={self.gamma}; expected 0 < gamma <= 1")

    def __call__(self, model, batch, step: int = 0) -> ObjectiveOutput:
        out = model(batch)
        return self.loss(
            out["obs_mean"].float(),
            out["obs"].float(),
            out["reward_mean"].float(),
            batch.reward,
            out["discount_logits"].float(),
            self.gamma * batch.discount,
            out["posterior"].float(),
            out["prior"].float(),
        )
