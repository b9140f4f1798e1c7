"""A DreamerV2-style world model: a recurrent state-space model (RSSM) with a categorical latent.

At each step t, with a deterministic state h_t and a stochastic state z_t (G groups of K classes):

    h_t = GRU(h_{t-1}, f(z_{t-1}, a_t))               recurrent state (h_{-1}, z_{-1} = 0)
    p(z_t | h_t)       = Cat(prior_net(h_t))           prior: what the model expects
    q(z_t | h_t, x_t)  = Cat(post_net(h_t, enc(x_t)))  posterior: what the observation shows
    x_t ~ N(dec(h_t, z_t), I)    r_t ~ N(rew(h_t, z_t), 1)    gamma_t ~ Bern(sigmoid(disc(h_t, z_t)))

(a_t is the action that led to x_t, r_t the reward received on arriving there.) Training
observes sequences with the posterior (straight-through samples, ``CategoricalLatent``);
imagination runs the prior alone from the last observed state under given actions. The loss is
``WorldModelLoss``; images enter centred, x - 0.5, so the decoder's output is mean - 0.5.
Observations may also be vectors (``obs_shape`` of one dim, a state vector): the encoder and
decoder are then MLPs and the vector enters as symlog(x) = sign(x) log(1 + |x|) (DreamerV3), so
the decoder's output is the mean of symlog(x).

A sequence may span episodes: ``is_first`` (B, T) marks the steps where one starts, and there the
recurrent state, the latent and the action that led there are zeroed before the step, exactly as
at the start of a sequence (the reset mask). ``WorldModelConfig`` is saved with every run and
rebuilds the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from elbokit.config import Section, from_dict, opt, to_dict
from elbokit.latents import CategoricalLatent
from elbokit.nets import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder, activation_layer


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): the identity near 0, logarithmic far from it (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``symlog``."""
    return torch.sign(x) * torch.expm1(x.abs())


@dataclass(frozen=True)
class WorldModelConfig(Section):
    obs_shape: tuple[int, ...] = opt(
        (3, 64, 64), "observation shape: (C, H, W) images or (D,) vectors, from the data",
        derived=True, ge=1,
    )  # fmt: skip
    action_dim: int = opt(2, "action size, from the episodes", derived=True, ge=1)
    deter: int = opt(200, "GRU state size", ge=1)
    hidden: int = opt(200, "width of the RSSM's MLPs", ge=1)
    groups: int = opt(32, "categorical latent groups", ge=1)
    classes: int = opt(32, "classes per group", ge=2)
    unimix: float = opt(0.01, "uniform mix in the categoricals", ge=0, lt=1)
    channels: tuple[int, ...] = opt((16, 32, 64, 128), "conv channels per stride-2 layer", ge=1)
    embed: int = opt(256, "observation embedding size", ge=1)
    head_hidden: tuple[int, ...] = opt(
        (200, 200), "reward and discount MLP widths (and encoder/decoder for vectors)", ge=1
    )
    activation: str = opt("elu", "hidden activation", choices=ACTIVATIONS)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldModelConfig:
        return from_dict(cls, d, where="world-model config")


@dataclass
class RSSMState:
    """States along a sequence: h (B, T, D), z (B, T, G*K), and the log-probabilities
    (B, T, G, K) of the prior and (when observed) the posterior."""

    h: torch.Tensor
    z: torch.Tensor
    prior: torch.Tensor
    posterior: torch.Tensor | None = None

    @property
    def features(self) -> torch.Tensor:
        return torch.cat([self.h, self.z], -1)


class RSSM(nn.Module):
    """The recurrent state-space model. The input layers are split by source so that the parts
    that do not depend on the recurrence (actions, observation embeddings) run once for all steps."""

    def __init__(self, c: WorldModelConfig):
        super().__init__()
        self.latent = CategoricalLatent(c.groups, c.classes, c.unimix)
        zs = self.latent.z_size
        act = activation_layer(c.activation)
        self.deter = c.deter
        self.in_z = nn.Linear(zs, c.hidden, bias=False)
        self.in_a = nn.Linear(c.action_dim, c.hidden)
        self.in_act = act()
        self.gru = nn.GRUCell(c.hidden, c.deter)
        self.prior_net = MLP(c.deter, (c.hidden,), zs, c.activation)
        self.post_h = nn.Linear(c.deter, c.hidden, bias=False)
        self.post_e = nn.Linear(c.embed, c.hidden)
        self.post_act = act()
        self.post_out = nn.Linear(c.hidden, zs)

    def initial(self, batch: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = ref.new_zeros
        return zeros(batch, self.deter), zeros(batch, self.latent.z_size)

    def _step(self, h, z, a_in):
        return self.gru(self.in_act(self.in_z(z) + a_in), h)

    def prior_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        return self.latent.log_probs(self.prior_net(h))

    def obs_step(self, h, z, action, embed, is_first=None, generator=None):
        """One filtering step (acting in an environment): h, z (B, .) the last state, action
        (B, A) the one that led to the observation embedded in embed (B, E); is_first (B,) bool
        zeroes h, z and the action first. Returns the new (h, z, posterior params)."""
        if is_first is not None:
            keep = (~is_first).to(h.dtype)[:, None]
            h, z, action = h * keep, z * keep, action * keep
        h = self._step(h, z, self.in_a(action))
        params = self.post_out(self.post_act(self.post_h(h) + self.post_e(embed)))
        return h, self.latent.rsample(params, generator=generator), params

    def observe(self, embed, action, start=None, generator=None, is_first=None) -> RSSMState:
        """Filter a sequence: embed (B, T, E), action (B, T, A); start (h, z) or zeros;
        is_first (B, T) bool: where an episode starts, h, z and the action are zeroed."""
        b, t = embed.shape[:2]
        h, z = start if start is not None else self.initial(b, embed)
        if is_first is not None:
            keep = (~is_first.bool()).to(action.dtype)
            action = action * keep[..., None]  # the action that led to a first step: none
            keep = keep[..., None].unbind(1)
        a_in = self.in_a(action)  # (B, T, H) for all steps at once
        e_in = self.post_e(embed)
        hs, zs, posts = [], [], []
        for i in range(t):
            if is_first is not None:
                h, z = h * keep[i], z * keep[i]
            h = self._step(h, z, a_in[:, i])
            params = self.post_out(self.post_act(self.post_h(h) + e_in[:, i]))
            z = self.latent.rsample(params, generator=generator)
            hs.append(h)
            zs.append(z)
            posts.append(params)
        h_seq = torch.stack(hs, 1)
        return RSSMState(
            h_seq,
            torch.stack(zs, 1),
            self.prior_log_probs(h_seq),  # the prior depends on h alone: one batched call
            self.latent.log_probs(torch.stack(posts, 1)),
        )

    def imagine(self, start, action, generator=None, sample: bool = True) -> RSSMState:
        """Run the prior alone from ``start`` (h, z), each (B, .), under action (B, T, A):
        z_t is drawn from p(z_t | h_t) (``sample=False``: its most likely classes)."""
        h, z = start
        a_in = self.in_a(action)
        hs, zs, priors = [], [], []
        for i in range(action.shape[1]):
            h = self._step(h, z, a_in[:, i])
            log_p = self.prior_log_probs(h)
            if sample:
                z = self.latent.rsample(log_p.flatten(-2), generator=generator)
            else:
                z = nn.functional.one_hot(log_p.argmax(-1), log_p.shape[-1]).to(h.dtype).flatten(-2)
            hs.append(h)
            zs.append(z)
            priors.append(log_p)
        return RSSMState(torch.stack(hs, 1), torch.stack(zs, 1), torch.stack(priors, 1))


class WorldModel(nn.Module):
    """Encoder, RSSM and heads (observation decoder, reward, discount), as in DreamerV2."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.config = c = config
        self.obs_shape = tuple(c.obs_shape)
        self.vector = len(self.obs_shape) == 1
        if len(self.obs_shape) not in (1, 3):
            raise ValueError(
                f"observation shape {self.obs_shape}; expected (C, H, W) images or (D,) vectors"
            )
        if self.vector:
            self.encoder = MLP(self.obs_shape[0], c.head_hidden, c.embed, c.activation)
        else:
            self.encoder = ConvEncoder(self.obs_shape, c.channels, c.embed, c.activation)
        self.rssm = RSSM(c)
        feat = c.deter + self.rssm.latent.z_size
        if self.vector:
            self.decoder = MLP(feat, c.head_hidden, self.obs_shape[0], c.activation)
        else:
            self.decoder = ConvDecoder(
                feat, c.channels, self.obs_shape[0], self.obs_shape[1:], c.activation
            )
        self.reward_head = MLP(feat, c.head_hidden, 1, c.activation)
        self.discount_head = MLP(feat, c.head_hidden, 1, c.activation)

    @property
    def latent(self) -> CategoricalLatent:
        return self.rssm.latent

    def check_batch(self, batch) -> None:
        shape = tuple(batch.image.shape[2:])
        if shape != self.obs_shape:
            raise ValueError(f"observations of shape {shape}; this model takes {self.obs_shape}")
        if batch.action.shape[-1] != self.config.action_dim:
            raise ValueError(
                f"actions of size {batch.action.shape[-1]}; this model takes {self.config.action_dim}"
            )

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        """What the decoder predicts the mean of: images centred (x - 0.5), vectors symlog(x)."""
        return symlog(obs) if self.vector else obs - 0.5

    def decoded(self, mean: torch.Tensor) -> torch.Tensor:
        """The decoder's output back in observation space: images in [0, 1], vectors symexp."""
        return symexp(mean) if self.vector else (mean + 0.5).clamp(0, 1)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B, T, C, H, W) in [0, 1] or (B, T, D) -> (B, T, E)."""
        x = self.target(obs)
        if self.vector:
            return self.encoder(x)
        return self.encoder(x.flatten(0, 1)).unflatten(0, obs.shape[:2])

    def heads(self, state: RSSMState) -> dict[str, torch.Tensor]:
        """Observation mean (``target`` space, B, T, ...), reward mean and discount logit (B, T)."""
        f = state.features
        return {
            "obs_mean": self.decoder(f)
            if self.vector
            else self.decoder(f.flatten(0, 1)).unflatten(0, f.shape[:2]),
            "reward_mean": self.reward_head(f).squeeze(-1),
            "discount_logits": self.discount_head(f).squeeze(-1),
        }

    def forward(self, batch, generator=None) -> dict[str, torch.Tensor]:
        """Observe a SequenceBatch; returns the loss inputs: the heads' outputs, the centred
        observation target (``obs``), and the posterior and prior log-probabilities (B, T, G, K)."""
        self.check_batch(batch)
        first = getattr(batch, "is_first", None)
        state = self.rssm.observe(
            self.embed(batch.image), batch.action, generator=generator, is_first=first
        )
        out = self.heads(state)
        out.update(obs=self.target(batch.image), posterior=state.posterior, prior=state.prior)
        return out

    @torch.no_grad()
    def open_loop(
        self, batch, context: int, generator=None, sample: bool = True
    ) -> dict[str, torch.Tensor]:
        """Observe the first ``context`` steps, then imagine the rest under the recorded actions.

        Returns obs (B, T - context, ...) in observation space, reward and discount probability
        (B, T - context), and the imagined prior log-probabilities.
        """
        self.check_batch(batch)
        t = batch.image.shape[1]
        if not 1 <= context < t:
            raise ValueError(f"context={context}; expected 1 <= context < sequence length {t}")
        seen = self.rssm.observe(
            self.embed(batch.image[:, :context]), batch.action[:, :context], generator=generator,
            is_first=None if getattr(batch, "is_first", None) is None else batch.is_first[:, :context],
        )  # fmt: skip
        start = (seen.h[:, -1], seen.z[:, -1])
        dream = self.rssm.imagine(start, batch.action[:, context:], generator, sample)
        out = self.heads(dream)
        return {
            "obs": self.decoded(out["obs_mean"].float()),
            "reward": out["reward_mean"].float(),
            "discount": torch.sigmoid(out["discount_logits"].float()),
            "prior": dream.prior,
        }
