"""A denoising diffusion model (DDPM) read as a hierarchical VAE, and its variational bound.

The encoder q(x_{1:T} | x_0) is fixed: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),
so q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with abar_t = prod_{s<=t} (1 - beta_s). The
decoder is p(x_T) = N(0, I) and p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I). The
negative ELBO of one x_0 (Ho et al. 2020, eq. 5), in nats, every term what it is:

    L = L_T + sum_{t=2..T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                       (no parameters)
    L_{t-1} = E_q(x_t|x_0) KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
    L_0     = -E_q(x_1|x_0) log p_theta(x_0 | x_1)             (discretized Gaussian: a mass)

The KLs between Gaussians are the divergence core's closed form (``normal_kl``), summed over
pixels; L_0 is the mass of x_0's bin (``discretized_gaussian_log_prob``, bins of width 2/255 on
[-1, 1] for 8-bit data, open edge bins), or, for continuous data (the 2-D toys), a Gaussian
density. The posterior q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, beta~_t I) with
beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).

The network predicts the noise eps of x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; then
x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) and mu_theta = c0_t x0_hat + ct_t x_t.
sigma_t^2 is beta_t ("fixed-large"; at t = 1, beta~_2 as in Nichol and Dhariwal's code, so the
decoder is not sharper than the data's bins), beta~_t ("fixed-small"; at t = 1, beta~_2 too: beta~_1
is 0) or learned as log sigma_t^2 = f log beta_t + (1 - f) log beta~_t with f = (v + 1) / 2 from a
second output channel ("learned", Nichol and Dhariwal 2021; at t = 1, between beta~_2 and beta_1).

Timesteps are 1..T in the math and in every argument named ``t`` here; arrays of the schedule are
indexed t - 1. The schedule is computed and kept in float64 (whatever the model is cast to) and
cast to the data's dtype where it is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from elbokit.config import ConfigError, Section, opt
from elbokit.divergence import normal_kl
from elbokit.likelihoods import discretized_gaussian_log_prob
from elbokit.nets import TimeMLP, UNet

__all__ = ["Diffusion", "DiffusionConfig", "Schedule", "make_betas"]

SCHEDULES = ("linear", "cosine")
VARIANCES = ("fixed-large", "fixed-small", "learned")
LOSSES = ("simple", "vlb", "hybrid")


def make_betas(name: str, steps: int, s: float = 0.008) -> torch.Tensor:
    """beta_1..beta_T (float64). "linear": Ho et al.'s 1e-4 to 0.02 at T = 1000, both ends scaled
    by 1000 / T for other T (as Nichol and Dhariwal do), clipped at 0.999; "cosine": abar_t = f(t) / f(0),
    f(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), s = 0.008 by default, beta_t = 1 - abar_t /
    abar_{t-1} clipped at 0.999 (Nichol and Dhariwal 2021, eq. 17). A smaller s starts the
    noise lower (sqrt(beta_1) = 0.0064 at s = 0.008, T = 1000; 0.0028 at s = 0.001)."""
    if steps < 2:
        raise ConfigError(f"steps = {steps}; a diffusion needs at least 2 timesteps")
    if name == "linear":
        scale = 1000.0 / steps
        # clipped as the cosine schedule is: below T = 21 the scaled end would reach 1, where
        # abar_T = 0 and x_0 cannot be predicted from x_T at all
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).clamp(
            max=0.999
        )
    if name == "cosine":
        if not 0 < s < 1:
            raise ConfigError(f"cosine offset s = {s}: expected 0 < s < 1")
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ConfigError(f"schedule = {name!r}; expected one of {', '.join(SCHEDULES)}")


class Schedule(nn.Module):
    """The forward process's constants, (T,) each, indexed t - 1 (see the module docstring)."""

    def __init__(self, betas: torch.Tensor):
        super().__init__()
        b = betas.double()
        alphas = 1 - b
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=b.dtype), abar[:-1]])
        post_var = b * (1 - abar_prev) / (1 - abar)  # beta~_t; 0 at t = 1
        post_var_floor = torch.cat([post_var[1:2], post_var[1:]])  # t = 1 takes beta~_2
        consts = {
            "betas": b,
            "abar": abar,
            "sqrt_abar": abar.sqrt(),
            "sqrt_1m_abar": (1 - abar).sqrt(),
            "post_var": post_var,
            "log_post_var": post_var_floor.log(),
            "log_betas": b.log(),
            "log_betas_large": torch.cat([post_var[1:2], b[1:]]).log(),
            "post_c0": b * abar_prev.sqrt() / (1 - abar),
            "post_ct": (1 - abar_prev) * alphas.sqrt() / (1 - abar),
        }
        self.steps = len(b)
        self.names = tuple(consts)
        for name, v in consts.items():
            self.register_buffer(name, v, persistent=False)

    @property
    def float64(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).double() for name in self.names}

    def _apply(self, fn, recurse=True):
        # the constants stay float64 whatever the model is cast to; ``at`` casts per use
        keep = {name: getattr(self, name) for name in self.names}
        out = super()._apply(fn, recurse)
        for name, v in keep.items():
            setattr(self, name, v.to(getattr(self, name).device))
        return out

    def at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The constant ``name`` at timesteps t (B,) in ``like``'s dtype, shaped (B, 1, ...) to
        broadcast over ``like``."""
        return getattr(self, name)[t - 1].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @staticmethod
    def at_one(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """t == 1 shaped (B, 1, ...) to broadcast over ``like``."""
        return (t == 1).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        return self.at("sqrt_abar", t, x0) * x0 + self.at("sqrt_1m_abar", t, x0) * noise

    def posterior(self, x0, xt, t):
        """Mean and log-variance of q(x_{t-1} | x_t, x_0) (t >= 2; at t = 1 the variance is 0)."""
        mean = self.at("post_c0", t, x0) * x0 + self.at("post_ct", t, x0) * xt
        return mean, self.at("log_post_var", t, x0)


@dataclass(frozen=True)
class DiffusionConfig(Section):
    schedule: str = opt("linear", "the noise schedule", choices=SCHEDULES)
    steps: int = opt(1000, "T, the number of diffusion steps (latent layers)", ge=2)
    cosine_s: float = opt(0.008, "cosine schedule: the offset s (smaller: less noise at t = 1, "
                          "sqrt(beta_1) 0.0064 at 0.008, 0.0028 at 0.001, T = 1000)", gt=0, lt=1)  # fmt: skip
    variance: str = opt("fixed-large", "sigma_t^2 of p(x_{t-1} | x_t): beta_t, beta~_t, or learned "
                        "between them", choices=VARIANCES)  # fmt: skip
    loss: str = opt("simple", "simple (Ho et al.'s epsilon MSE), vlb (the bound), or hybrid "
                    "(simple + lambda vlb, the mean stopped in vlb)", choices=LOSSES)  # fmt: skip
    vlb_weight: float = opt(0.001, "lambda of the hybrid loss", ge=0)
    importance_t: bool = opt(False, "vlb: sample t with probability ~ sqrt(E[L_t^2]) "
                             "(Nichol and Dhariwal), after 10 losses per t are seen")  # fmt: skip
    clip_x0: bool = opt(False, "clip the predicted x_0 to [-1, 1] at t >= 2 (in sampling and in "
                        "the bound alike; at t = 1 the decoder's mean is left free)")  # fmt: skip
    net: str = opt("unet", "the denoiser: unet (images) or mlp (vectors)", choices=("unet", "mlp"))
    channels: int = opt(32, "unet: base channels; mlp: hidden width", ge=1)
    mults: tuple[int, ...] = opt((1, 2, 2), "unet: channel multiple per resolution")
    blocks: int = opt(3, "mlp: residual blocks", ge=1)
    dropout: float = opt(0.0, "dropout in the residual blocks", ge=0, lt=1)
    data_shape: tuple[int, ...] = opt((1, 28, 28), "set from the data", derived=True, ge=1)
    discrete: bool = opt(True, "8-bit data: L_0 is a discretized Gaussian (a mass); else a density")
    levels: int = opt(256, "grey levels of discrete data, evenly spaced on [-1, 1]", ge=2)

    def validate(self):
        if self.loss == "simple" and self.variance == "learned":
            raise ConfigError(
                "variance = learned with loss = simple: the epsilon MSE does not train the "
                "variance; use loss = hybrid or vlb"
            )
        if self.importance_t and self.loss == "simple":
            raise ConfigError("importance_t samples t for the bound: use loss = vlb or hybrid")


# evaluation (the model in eval mode): the bound's first terms L_0 .. L_{EVAL_HEAD-1}, its largest,
# computed for every example, the rest sampled (Diffusion.loss)
EVAL_HEAD = 10


class Diffusion(nn.Module):
    """The DDPM of ``cfg``; data x_0 in [-1, 1], shape (B, *data_shape).

    ``terms(x0, t, noise)`` gives, per example, L_{t-1} (t >= 2) or L_0 (t = 1) and the epsilon
    MSE; ``bound(x0)`` the whole L over every t; ``loss(x0)`` the training loss of the config.
    """

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        self.schedule = Schedule(make_betas(cfg.schedule, cfg.steps, cfg.cosine_s))
        shape = tuple(cfg.data_shape)
        self.learned = cfg.variance == "learned"
        k = 2 if self.learned else 1
        if cfg.net == "unet":
            if len(shape) != 3:
                raise ConfigError(f"net = unet needs images (C, H, W); the data are {shape}")
            self.net = UNet(shape[0], cfg.channels, tuple(cfg.mults), k * shape[0], cfg.dropout)
        else:
            if len(shape) != 1:
                raise ConfigError(f"net = mlp needs vectors (D,); the data are {shape}: use unet")
            self.net = TimeMLP(shape[0], cfg.channels, cfg.blocks, k * shape[0])
        self.dims = math.prod(shape)
        # importance sampling of t: running E[L_t^2] from the last 10 losses seen at each t
        self.register_buffer("loss_history", torch.zeros(cfg.steps, 10, dtype=torch.float64))
        self.register_buffer("loss_counts", torch.zeros(cfg.steps, dtype=torch.long))

    @property
    def steps(self) -> int:
        return self.cfg.steps

    # ---------------------------------------------------------------------------- the reverse step
    def p_mean_var(self, xt, t):
        """(mean, log variance, predicted eps, v) of p_theta(x_{t-1} | x_t); v is None unless learned."""
        out = self.net(xt, t)
        sch = self.schedule
        if self.learned:
            eps, v = out.chunk(2, dim=1)
            frac = (v + 1) / 2
            log_var = frac * sch.at("log_betas", t, xt) + (1 - frac) * sch.at("log_post_var", t, xt)
        else:
            eps, v = out, None
            name = "log_betas_large" if self.cfg.variance == "fixed-large" else "log_post_var"
            log_var = sch.at(name, t, xt).expand_as(xt)
        x0_hat = (xt - sch.at("sqrt_1m_abar", t, xt) * eps) / sch.at("sqrt_abar", t, xt)
        if self.cfg.clip_x0:  # not at t = 1: the decoder's mean may sit beyond an edge bin
            x0_hat = torch.where(self.schedule.at_one(t, xt), x0_hat, x0_hat.clamp(-1, 1))
        mean, _ = sch.posterior(x0_hat, xt, t)
        return mean, log_var, eps, v

    def _sum(self, v):
        return v.flatten(1).sum(1)

    def terms(self, x0, t, noise) -> dict[str, torch.Tensor]:
        """Per example (B,), for timesteps t (B,) and the noise eps of x_t:
        "vlb": L_{t-1} where t >= 2, L_0 where t = 1 (nats), with the mean's gradient stopped
        under the hybrid loss (only the variance learns from it there); "mse": the mean squared
        error of eps (per element)."""
        xt = self.schedule.q_sample(x0, t, noise)
        mean, log_var, eps, _ = self.p_mean_var(xt, t)
        mse = (eps - noise).square().flatten(1).mean(1)
        if self.cfg.loss == "hybrid":
            mean = mean.detach()
        return {"vlb": self._vlb(x0, xt, t, mean, log_var), "mse": mse}

    def _vlb(self, x0, xt, t, mean, log_var):
        post_mean, post_log_var = self.schedule.posterior(x0, xt, t)
        kl = self._sum(
            normal_kl(post_mean, (0.5 * post_log_var).exp(), mean, (0.5 * log_var).exp())
        )
        first = t == 1  # L_0, the decoder's term, only where it is used
        if torch.compiler.is_compiling():  # a compiled step: no branch on the data, one graph
            nll = -self._sum(self._decoder_log_prob(x0, mean, 0.5 * log_var))
            return torch.where(first, nll, kl)
        if not bool(first.any()):
            return kl
        nll = -self._sum(self._decoder_log_prob(x0[first], mean[first], 0.5 * log_var[first]))
        return kl.index_put((first,), nll)

    def _decoder_log_prob(self, x0, mean, log_scale):
        if self.cfg.discrete:
            return discretized_gaussian_log_prob(x0, mean, log_scale, levels=self.cfg.levels)
        return (
            -0.5 * ((x0 - mean) * torch.exp(-log_scale)).square()
            - log_scale
            - 0.5 * math.log(2 * math.pi)
        )

    def prior_term(self, x0) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per example (B,), nats (float64 constants)."""
        sch = self.schedule.float64
        m = sch["sqrt_abar"][-1].to(x0.device) * x0.double()
        s = sch["sqrt_1m_abar"][-1].to(x0.device)
        return self._sum(normal_kl(m, s.expand_as(m), torch.zeros_like(m), torch.ones_like(m))).to(
            x0.dtype
        )

    # --------------------------------------------------------------------------------- the bound
    @torch.no_grad()
    def bound(
        self,
        x0,
        *,
        batch: int = 256,
        generator: torch.Generator | None = None,
        noise=None,
        timesteps=None,
        vlb=None,
        progress=None,
    ):
        """The whole bound of each image: (L_T (B,), L_{t-1} for t = 1..T (B, T), nats), every t
        for every image, batched over images and timesteps together (``batch`` rows per network
        call, whatever the number of images: on a CPU a few hundred rows run fastest per row);
        one x_t ~ q(x_t | x_0) per (image, t), its noise drawn from ``generator`` or taken from
        ``noise`` (B, K, *data_shape), for comparisons. Sum both for L. With ``timesteps`` (K,)
        only those t (1..T) are computed: per_t is (B, K) and its sum is not the whole bound.
        ``vlb(x0, t, eps)``, if given, computes the rows' L_(t-1) in place of ``terms`` (the same
        function compiled: ``elbokit.train.compiled.CompiledInference``). ``progress``, if given, is
        told of each image whose every t is done (``progress.update(n)``: a tqdm bar)."""
        b = len(x0)
        ts = (
            torch.arange(1, self.steps + 1, device=x0.device)
            if timesteps is None
            else torch.as_tensor(timesteps, device=x0.device).long()
        )
        if ts.dim() != 1 or len(ts) == 0 or bool(((ts < 1) | (ts > self.steps)).any()):
            raise ValueError(f"timesteps must be a non-empty 1-D list of t in 1..{self.steps}")
        k = len(ts)
        if noise is not None and tuple(noise.shape) != (b, k, *x0.shape[1:]):
            raise ValueError(
                f"noise has shape {tuple(noise.shape)}; expected {(b, k, *x0.shape[1:])}"
            )
        per_t = torch.empty(b, k, dtype=x0.dtype, device=x0.device)
        pairs = b * k
        shown = 0
        for start in range(0, pairs, max(1, batch)):
            idx = torch.arange(start, min(pairs, start + batch), device=x0.device)
            i, j = idx // k, idx % k
            if noise is None:
                eps = torch.randn(len(idx), *x0.shape[1:], generator=generator, device=x0.device)
            else:
                eps = noise[i, j]
            rows = (x0[i], ts[j], eps)
            per_t[i, j] = self.terms(*rows)["vlb"] if vlb is None else vlb(*rows)
            if progress is not None:  # images whose every t is done
                upto = (start + len(idx)) // k
                progress.update(upto - shown)
                shown = upto
        return self.prior_term(x0), per_t

    @torch.no_grad()
    def bound_estimate(self, x0, samples: int, *, generator: torch.Generator | None = None):
        """An unbiased Monte Carlo estimate of L per image, L_T + T * mean over ``samples`` uniform
        t of L_{t-1}: (estimate (B,), its standard error (B,)), nats."""
        b = len(x0)
        t = torch.randint(1, self.steps + 1, (samples, b), generator=generator, device=x0.device)
        vals = torch.empty(samples, b, dtype=x0.dtype, device=x0.device)
        for s in range(samples):
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            vals[s] = self.terms(x0, t[s], noise)["vlb"]
        scaled = self.steps * vals
        se = (
            scaled.std(0) / math.sqrt(samples)
            if samples > 1
            else torch.full_like(scaled[0], math.nan)
        )
        return self.prior_term(x0) + scaled.mean(0), se

    # ------------------------------------------------------------------------------- training
    def sample_t(self, b: int, device, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (B,) for a training batch and the weight of each (1 / (T p_t)); uniform, or
        by importance (p_t ~ sqrt(E[L_t^2])) once every t has 10 losses recorded."""
        if self.cfg.importance_t and bool((self.loss_counts >= 10).all()):
            w = self.loss_history.square().mean(1).sqrt()
            p = (w / w.sum()).float().to(device)
            p = 0.999 * p + 0.001 / self.steps  # never zero
            t = torch.multinomial(p, b, replacement=True, generator=generator) + 1
            return t, 1.0 / (self.steps * p[t - 1])
        t = torch.randint(1, self.steps + 1, (b,), device=device, generator=generator)
        return t, torch.ones(b, device=device)

    def _record(self, t, losses):
        for ti, li in zip(t.tolist(), losses.detach().double().tolist(), strict=True):
            k = int(self.loss_counts[ti - 1]) % 10
            self.loss_history[ti - 1, k] = li
            self.loss_counts[ti - 1] += 1

    def loss(self, x0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of the config (a batch mean) and named terms (batch means): "mse",
        "vlb_t" (L_{t-1} at the sampled t, nats), and "bound", an unbiased single-sample estimate
        of the whole bound in bits/dim for discrete (8-bit) data and in nats per example for a
        density. Training: L_T + T L_{t-1} at the drawn t (L_0 in it where t = 1). Evaluation
        (the model in eval mode): L_T + L_0 + ... + L_{H-1} for every example (H =
        ``EVAL_HEAD`` network calls) + (T - H) L_{t-1} with t uniform on H+1..T: the same mean
        with far less variance. The first terms are the bound's largest (a trained mnist5k
        model: L_0 131, L_1 151, L_2 82, L_3 54 nats, the first ten 567 of 933) and one t in T
        draws each, so a uniform t left a 500-image test set's estimate anywhere from 1.1 to 2.6
        bits/dim around a bound of ~1.75, and a 2-D density's at 8.2 nats/point against 2.0."""
        cfg = self.cfg
        evaluating = not self.training
        head = min(EVAL_HEAD, self.steps)  # evaluating: L_0 .. L_{head-1} exact per example
        if evaluating:  # the sampled t beyond the head (none where T <= the head: then unused)
            t = torch.randint(
                min(head + 1, self.steps), self.steps + 1, (len(x0),), device=x0.device
            )
            weight = torch.ones(len(x0), device=x0.device)
        else:
            t, weight = self.sample_t(len(x0), x0.device)
        noise = torch.randn_like(x0)
        terms = self.terms(x0, t, noise)
        bits = self.dims * math.log(2)
        vlb_bits = terms["vlb"] / bits  # L_{t-1} in bits per dim
        prior_bits = self.prior_term(x0) / bits
        if cfg.importance_t and not evaluating:  # the test set's draws do not steer training's
            self._record(t, vlb_bits)
        if cfg.loss == "simple":
            loss = terms["mse"]
        elif cfg.loss == "vlb":
            loss = self.steps * weight * vlb_bits + prior_bits
        else:
            loss = terms["mse"] + cfg.vlb_weight * self.steps * weight * vlb_bits  # mean stopped
        if evaluating:
            exact = sum(self.terms(x0, torch.full_like(t, k), torch.randn_like(x0))["vlb"]
                        for k in range(1, head + 1)) / bits  # fmt: skip
            tail = (self.steps - head) * vlb_bits if head < self.steps else 0.0
            bound = prior_bits + exact + tail
        else:
            bound = prior_bits + self.steps * weight * vlb_bits
        named = {
            "mse": terms["mse"].mean().detach(),
            "vlb_t": terms["vlb"].mean().detach(),
            # in the unit its evaluation reports: bits/dim for 8-bit images, nats per example
            # for a density (2-D points)
            "bound": bound.mean().detach() * (1.0 if cfg.discrete else bits),
        }
        return loss.mean(), named

    # -------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, *, generator=None, keep: int = 0, times=None, device="cpu"):
        """Ancestral samples x_0 (n, *data_shape) from x_T ~ N(0, I) through all T steps (no noise
        added at the last); with keep >= 2 also snapshots of the chain (about keep, n, ...), from
        x_T to x_0, evenly spaced in t; or with ``times`` (t values in 2..T) the snapshots x_t at
        those t, from the largest down, then x_0."""
        x = torch.randn(n, *self.cfg.data_shape, generator=generator, device=device)
        if keep == 1:
            raise ValueError("keep = 1: a chain needs at least its two ends (keep >= 2)")
        if times is not None:
            marks = {int(t) for t in times}
            if not marks or not all(2 <= t <= self.steps for t in marks):
                raise ValueError(f"times must be t values in 2..{self.steps}; got {times}")
            keep = len(marks) + 1
        else:
            marks = (
                set(torch.linspace(self.steps, 2, keep - 1).round().long().tolist())
                if keep
                else set()
            )
        chain = []
        for step in range(self.steps, 0, -1):
            if step in marks:
                chain.append(x.clone())
            t = torch.full((n,), step, dtype=torch.long, device=device)
            mean, log_var, _, _ = self.p_mean_var(x, t)
            if step > 1:
                noise = torch.randn(x.shape, generator=generator, device=device)
                x = mean + (0.5 * log_var).exp() * noise
            else:
                x = mean
        if keep:
            chain.append(x.clone())
            return x, torch.stack(chain)
        return x
