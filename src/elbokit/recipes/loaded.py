"""A trained run as a Python object, with the verbs of its kind: what ``elbokit.load(RUN)``
returns.

    m = elbokit.load("runs/vae-mnist5k-20261206-101500")   # reads config.json and the weights
    x = m.sample(16)                                         # (16, 1, 28, 28) in [0, 1]
    ll = m.log_prob(x, k=1000)                               # LogLikelihood: .value, .stderr
    m.evaluate("fashion-mnist")                              # the kind's evaluation, other data

A run is rebuilt from its saved config alone: what the model needs of its data (shapes,
normalization statistics, an environment's spaces) was saved with it, so the training data may
have moved. Each kind's recipe names its class (``Recipe.loaded``); ``Loaded`` holds what every
kind has (the run, its learner at the latest checkpoint, ``evaluate``), ``LatentLoaded`` the
verbs of a latent-variable model p(x, z) = p(z) p(x | z) with an encoder q(z | x).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from elbokit.config import merge
from elbokit.evaluate.likelihood import LogLikelihood, importance_log_likelihood
from elbokit.objectives import ELBO
from elbokit.seeding import seeded

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ActingLoaded",
    "LatentLoaded",
    "Loaded",
    "as_batch",
    "as_images",
    "as_pixels",
    "play_gymnasium",
]


def as_batch(x, what: str = "x", dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """``x`` (a tensor, a numpy array or nested lists) as a tensor of ``dtype`` on ``device``;
    uint8 stays uint8 (pixels are turned into floats by the kind, as in training).

    Raises:
        ValueError: not numbers, or no examples.
    """
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what} is a {type(x).__name__}; expected numbers ({err})") from None
    if t.dim() == 0 or len(t) == 0:
        raise ValueError(f"{what} has shape {tuple(t.shape)}; expected a batch of examples")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{what} is {t.dtype}; expected numbers")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        where = tuple(torch.nonzero(~torch.isfinite(t))[0].tolist())
        raise ValueError(f"{what}{list(where)} is {t[where].item()}; expected finite numbers")
    return t.to(device) if t.dtype == torch.uint8 else t.to(device=device, dtype=dtype)


def as_pixels(x, what: str, device="cpu") -> torch.Tensor:
    """Images given as 8-bit pixels (uint8, or integers 0..255), 0/1 integers, or floats in
    [0, 1], as floats in [0, 1] (training's scale).

    Raises:
        ValueError: values outside those ranges (naming the first), NaN or inf.
    """
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    integer = not t.is_floating_point() and t.dtype != torch.bool
    t = as_batch(t, what, device=device)
    if integer and t.dtype != torch.uint8:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{what} holds integers from {lo} to {hi}; expected 8-bit pixels "
                             "0..255 (or floats in [0, 1])")  # fmt: skip
        return t.float() if hi <= 1 else t.float() / 255.0
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    bad = (t < 0) | (t > 1)
    if bool(bad.any()):
        where = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{what}{list(where)} is {t[where].item():g}; expected images in [0, 1] "
                         "or 8-bit pixels (uint8)")  # fmt: skip
    return t


def as_images(x: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """A batch ``x`` as images of ``shape`` (C, H, W): given so, flattened (B, C*H*W), or, for
    one channel, without it (B, H, W).

    Raises:
        ValueError: any other shape, naming it and the one expected.
    """
    shape = tuple(shape)
    if x.dim() == 2 and x.shape[1] == math.prod(shape):  # flattened images
        x = x.reshape(len(x), *shape)
    elif x.dim() == len(shape) and shape[0] == 1 and tuple(x.shape[1:]) == shape[1:]:
        x = x.unsqueeze(1)  # grey images without their channel
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes images of shape "
                         f"(B, {', '.join(map(str, shape))})")  # fmt: skip
    return x


class Loaded:
    """A trained run: its ``learner`` with the weights of the latest checkpoint (in eval mode),
    on ``device``. ``evaluate`` runs the kind's evaluation as ``elbokit eval`` does."""

    def __init__(self, run, learner, state: dict, device: str = "cpu"):
        """``run``: the opened ``Run``; ``learner``: its learner with the checkpoint's weights;
        ``state``: the state.json they came from."""
        self.run, self.learner, self.state = run, learner, state
        self.device = torch.device(device)

    @property
    def kind(self) -> str:
        return self.run.recipe.name

    @property
    def config(self):
        """The run's resolved config (a frozen Section: ``m.config.model.latent_dim``)."""
        return self.run.config

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def step(self) -> int:
        """The training step of the checkpoint the weights came from."""
        return int(self.state["step"])

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        """The run's torch modules by name (the weights the checkpoint holds)."""
        return self.learner.modules

    def evaluate(self, data: str | None = None, *, say=None, **options) -> dict:
        """The kind's evaluation (``elbokit eval RUN``), on the run's own test data or, with
        ``data``, on another source the kind reads (written beside eval.json as
        eval-data-NAME.json). ``options`` are the kind's eval options (``k=100``, ``limit=500``).
        Returns what it wrote, a dict whose repr cuts the per-image lists short.

        Raises:
            ConfigError: an unknown option (naming the closest) or a bad value.
        """
        recipe = self.run.recipe
        opts = merge(recipe.eval_options(), options, where="evaluate()") if options else (
            recipe.eval_options())  # fmt: skip
        run = self.run if data is None else self.run.on(str(data))
        return EvalResult(recipe.evaluate(run, opts, say=say or (lambda *a, **k: None)))

    def __repr__(self) -> str:
        return f"<elbokit {self.kind} run {self.dir} at step {self.step}>"


class EvalResult(dict):
    """What an evaluation wrote (eval.json) as a dict, whose repr shows a long list (the
    per-image values) as its first values and its length rather than 10,000 numbers."""

    def __repr__(self) -> str:
        return _short(self)


def _short(v, keep: int = 3) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_short(x, keep)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        cut = len(v) > 2 * keep
        shown = ", ".join(_short(x, keep) for x in (v[:keep] if cut else v))
        return "[" + shown + (f", ... ({len(v)} values)]" if cut else "]")
    return repr(v)


class LatentLoaded(Loaded):
    """A latent-variable model p(z) p(x | z) with an encoder q(z | x) (``learner.model``).

    Inputs are batches (B, *data_shape) in the units the model was trained on; ``prepare``
    turns a kind's raw inputs (8-bit pixels) into them. Random verbs take a ``seed`` and give
    the same numbers for the same seed; none of them changes torch's global generator.
    """

    @property
    def model(self):
        return self.learner.model

    def prepare(self, x, what: str = "x") -> torch.Tensor:
        """A batch in the model's units (B, *data_shape), on the model's device."""
        return as_batch(x, what, device=self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(_seed(seed))

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """n draws z ~ p(z), decoded to the mean of p(x | z): (n, *data_shape)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n = {n!r}; expected a whole number of samples, at least 1")
        z = self.model.latent.sample_prior(n, generator=torch.Generator().manual_seed(_seed(seed)))
        return self.decode(z)

    @torch.no_grad()
    def encode(self, x) -> torch.distributions.Distribution:
        """q(z | x) of each example as a torch Distribution (batch shape (B,))."""
        return self.model.latent.distribution(self.model.encode(self.prepare(x)))

    @torch.no_grad()
    def decode(self, z) -> torch.Tensor:
        """E[x | z]: the mean of p(x | z) for codes z (B, z_size), in the data's units."""
        dtype = next(self.model.parameters()).dtype  # float64 for an exact linear model
        z = as_batch(z, "z", device=self.device, dtype=dtype)
        size = self.model.latent.z_size
        if z.dim() != 2 or z.shape[1] != size:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (B, {size})")
        data_dims = len(self.model.data_shape) if hasattr(self.model, "data_shape") else 1
        return self.model.likelihood.mean(self.model.decode(z), data_dims)

    @torch.no_grad()
    def reconstruct(self, x) -> torch.Tensor:
        """x decoded from its posterior mean E_q[z | x]: (B, *data_shape)."""
        params = self.model.encode(self.prepare(x))
        return self.decode(self.model.latent.posterior_mean(params))

    @torch.no_grad()
    def elbo(self, x, *, seed: int = 0) -> torch.Tensor:
        """The ELBO of each example, E_q[log p(x | z)] - KL(q(z | x) || p(z)), one sampled z
        (beta = 1): (B,) nats."""
        x = self.prepare(x)
        self.model.eval()
        with seeded(seed):
            return ELBO()(self.model, x).per_example["elbo"]

    def log_prob(self, x, k: int = 1000, *, seed: int = 0) -> LogLikelihood:
        """log p(x) of each example by importance sampling with k draws from q(z | x) (Burda et
        al. 2016): a LogLikelihood with ``value`` (B,) nats and its Monte Carlo ``stderr``."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"k = {k!r}; expected a whole number of samples >= 2 (one sample "
                             "has no standard error: elbo(x) is the one-sample bound)")  # fmt: skip
        x = self.prepare(x)
        return importance_log_likelihood(self.model, x, k, generator=self._generator(seed))

    def bits_per_dim(self, x, k: int = 1000, *, seed: int = 0) -> float:
        """-log2 p(x) per dimension, averaged over the examples (for discrete data)."""
        x = self.prepare(x)
        return self.log_prob(x, k, seed=seed).bits_per_dim(math.prod(x.shape[1:]))


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed = {seed!r}; expected a whole number >= 0")
    return seed


class ActingLoaded(Loaded):
    """A trained policy in an environment (the agent and skills kinds). ``env_action`` turns
    the policy's output into an action of the environment's own space: a Discrete index from a
    one-hot, or a Box action scaled from [-1, 1] to its bounds, as in training. ``play`` runs
    whole episodes, in the run's own environment or in any gymnasium env of the same spaces."""

    @property
    def env(self):
        """The run's environment (one batch of copies, as in training; its spaces)."""
        return self.learner.env

    def env_action(self, a: torch.Tensor):
        """(N, A) policy outputs -> (N,) indices (Discrete) or (N, A) numpy actions (Box)."""
        env = self.env
        if env.discrete:
            return a.argmax(-1).numpy()
        low, high = getattr(env, "low", -1.0), getattr(env, "high", 1.0)
        return (low + (a.clamp(-1, 1).numpy() + 1) * 0.5 * (high - low)).astype("float32")

    def check_env(self, env) -> None:
        """Refuse a gymnasium env whose spaces are not the run's (by name, before playing)."""
        if not hasattr(env, "observation_space") or not hasattr(env, "action_space"):
            raise ValueError(f"env = {env!r}: expected a gymnasium environment (gymnasium.make(...)) "
                             "of the run's spaces, or None for the run's own")  # fmt: skip
        obs_shape = tuple(getattr(env.observation_space, "shape", ()) or ())
        want = (self.env.obs_dim,)
        if obs_shape != want:
            raise ValueError(f"the env observes {env.observation_space}; this policy was trained "
                             f"on observations of shape {want} ({self.env.name})")  # fmt: skip
        space = env.action_space
        n = getattr(space, "n", None)
        if self.env.discrete != (n is not None):
            raise ValueError(f"the env acts in {space}; this policy acts in "
                             f"{'a Discrete' if self.env.discrete else 'a Box'} space ({self.env.name})")  # fmt: skip
        size = int(n) if n is not None else int(space.shape[0])
        if size != self.env.act_dim:
            raise ValueError(f"the env acts in {space}; this policy has {self.env.act_dim} "
                             "action dimensions")  # fmt: skip


def play_gymnasium(env, step, episodes: int, seed: int) -> dict:
    """``episodes`` episodes of a gymnasium ``env``, one after another, reset with seeds
    seed, seed + 1, ...; ``step(obs, state) -> (action, state)`` with state None at each start.
    Returns the returns, lengths, their mean and standard error (NaN from one episode), and each
    episode's final observation. A non-env is refused by name."""
    if not (hasattr(env, "reset") and hasattr(env, "step") and hasattr(env, "action_space")):
        raise ValueError(f"env = {env!r}: expected a gymnasium environment (gymnasium.make(...))")
    import numpy as np

    if episodes < 1:
        raise ValueError(f"episodes = {episodes}; expected at least 1")
    returns, lengths, finals = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        state, total, length, done = None, 0.0, 0, False
        while not done:
            action, state = step(np.asarray(obs, np.float32), state)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, length = total + float(reward), length + 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        finals.append(np.asarray(obs, np.float64).tolist())
    r = torch.tensor(returns, dtype=torch.float64)
    return {"returns": returns, "lengths": lengths, "mean_return": float(r.mean()),
            "return_se": float(r.std() / math.sqrt(episodes)) if episodes > 1 else math.nan,
            "final_states": finals}  # fmt: skip
