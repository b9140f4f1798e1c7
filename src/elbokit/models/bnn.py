"""Bayes by backprop: networks whose weights have a mean-field Gaussian posterior q(w).

Each weight w_j has q(w_j) = N(mu_j, sigma_j^2) with sigma_j = softplus(rho_j); the network is
trained by the ELBO over its weights (Blundell et al. 2015),

    ELBO = sum_i E_q[log p(y_i | x_i, w)] - KL(q(w) || p(w)),

with the KL summed over every weight and bias of every layer. Priors (``PRIORS``):

    gaussian        p(w) = N(0, sigma^2): the KL in closed form (the divergence core's)
    scale-mixture   p(w) = pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2) (Blundell et al.): no
                    closed form, so a one-sample Monte Carlo estimate log q(w) - log p(w) at a
                    reparameterized draw w ~ q; ``kl`` returns its method, "sampled", and
                    ``kl_estimate`` the value with its standard error

Sampling in the forward pass (``sampling``):

    local     the local reparameterization trick (Kingma, Salimans & Welling 2015): the
              pre-activations are Gaussian given the input, b_m = x mu^T, b_v = x^2 (sigma^2)^T,
              and are drawn per example, b = b_m + sqrt(b_v) eps: independent weights per
              example at the cost of a second matrix multiply (convolutions alike)
    weights   one draw of every weight per forward pass, shared by the batch (Blundell et al.)
    mean      the posterior means: a deterministic network

``network`` builds the same architecture from Bayesian, plain or dropout layers, so the
deterministic and MC-dropout baselines are the Bayesian network's size exactly.

The prior's variance can be the empirical-Bayes one (``prior_variance = "empirical-bayes"``): for
each tensor (a layer's weights, a layer's biases) of n entries the KL is minimized over the prior
variance v in closed form, v = sum(mu^2 + sigma^2) / n, or with an inverse-gamma hyperprior
IG(alpha, beta) on v its mode v = (beta + sum(mu^2 + sigma^2) / 2) / (alpha + n / 2 + 1) and the
hyperprior's log-density subtracted (Wu et al. 2019). Without a hyperprior the optimum follows the
weights down: shrinking every mean shrinks v, which strengthens the pull of the KL's mu^2 / (2 v)
towards zero, and a network whose likelihood gain per weight is small (few examples, many
weights: the digits net) collapses onto the prior, a constant function, at a KL of zero.

Other networks of the ``methods`` (``elbokit.models.bnn_methods``): deterministic variational
inference (moments through the network in closed form), MC dropout on Gal's protocol (a grid of
rates and noise precisions, batched), a deep ensemble (networks with a mean and a variance).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

from elbokit.config import ConfigError, Section, opt

__all__ = [
    "PRIORS",
    "SAMPLING",
    "BNNConfig",
    "BayesConv2d",
    "BayesLinear",
    "Predictor",
    "WeightPrior",
    "kl_to_prior",
    "network",
]

SAMPLING = ("local", "weights", "mean")
SIGMA_FLOOR = 1e-8  # softplus underflows to 0 for rho < -100 or so


@dataclass(frozen=True)
class WeightPrior:
    """p(w) for every weight; ``closed``: whether KL(N(mu, s^2) || p) has a closed form."""

    name: str
    sigma: float = 1.0
    pi: float = 0.5
    sigma2: float = math.exp(-6)
    empirical: bool = False  # gaussian: each tensor's variance by empirical Bayes
    alpha: float = 0.0  # its inverse-gamma hyperprior (0, 0: none)
    beta: float = 0.0

    @property
    def closed(self) -> bool:
        return self.name == "gaussian"

    def distribution(self, like: torch.Tensor) -> Distribution:
        t = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device)  # noqa: E731
        if self.name == "gaussian":
            return Normal(t(0.0), t(self.sigma))
        mix = Categorical(probs=torch.stack([t(self.pi), t(1.0 - self.pi)]))
        return MixtureSameFamily(
            mix, Normal(t([0.0, 0.0]), torch.stack([t(self.sigma), t(self.sigma2)]))
        )

    def describe(self) -> str:
        if self.empirical:
            hyper = (f" under an IG({self.alpha:g}, {self.beta:g}) hyperprior"
                     if self.alpha or self.beta else "")  # fmt: skip
            return ("N(0, v) with v per layer's weights and biases by empirical Bayes (closed form"
                    f"{hyper}), KL in closed form")  # fmt: skip
        if self.name == "gaussian":
            return f"N(0, {self.sigma:g}^2), KL in closed form"
        return (f"{self.pi:g} N(0, {self.sigma:g}^2) + {1 - self.pi:g} N(0, {self.sigma2:.3g}^2), "
                "KL by a one-sample Monte Carlo estimate per step (no closed form)")  # fmt: skip


PRIORS = ("gaussian", "scale-mixture")
METHODS = ("bnn", "dvi", "det", "dropout", "ensemble")
VARIATIONAL = ("bnn", "dvi")
REGRESSION_ONLY = ("dvi", "ensemble")


class _Bayes(nn.Module):
    """Means and rho of a weight tensor and a bias; subclasses say how they are applied."""

    def __init__(
        self, weight_shape: tuple[int, ...], fan_in: int, init_sigma: float, sampling: str
    ):
        super().__init__()
        if sampling not in SAMPLING:
            raise ValueError(f"sampling = {sampling!r}; expected one of {', '.join(SAMPLING)}")
        bound = 1.0 / math.sqrt(fan_in)
        rho = math.log(math.expm1(init_sigma))  # softplus^-1
        self.weight_mu = nn.Parameter(torch.empty(weight_shape).uniform_(-bound, bound))
        self.weight_rho = nn.Parameter(torch.full(weight_shape, rho))
        self.bias_mu = nn.Parameter(torch.zeros(weight_shape[0]))
        self.bias_rho = nn.Parameter(torch.full((weight_shape[0],), rho))
        self.sampling = sampling

    def moments(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mean, sigma) of the weights and of the biases under q."""
        return [
            (self.weight_mu, F.softplus(self.weight_rho) + SIGMA_FLOOR),
            (self.bias_mu, F.softplus(self.bias_rho) + SIGMA_FLOOR),
        ]

    def posteriors(self) -> list[Normal]:
        """q of the weights and of the biases."""
        return [Normal(m, s, validate_args=False) for m, s in self.moments()]

    def _map(self, x, weight, bias):
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (wm, ws), (bm, bs) = self.moments()
        if self.sampling == "mean":
            return self._map(x, wm, bm)
        if self.sampling == "weights":
            return self._map(x, wm + ws * torch.randn_like(ws), bm + bs * torch.randn_like(bs))
        mean = self._map(x, wm, bm)
        var = self._map(x * x, ws.square(), bs.square())
        return mean + var.clamp_min(0).sqrt() * torch.randn_like(mean)


class BayesLinear(_Bayes):
    """y = x W^T + b with W, b ~ q; x (B, in) -> (B, out)."""

    def __init__(self, n_in: int, n_out: int, *, init_sigma: float = 1e-3, sampling: str = "local"):
        super().__init__((n_out, n_in), n_in, init_sigma, sampling)

    def _map(self, x, weight, bias):
        return F.linear(x, weight, bias)


class BayesConv2d(_Bayes):
    """A 2-D convolution (stride 1, 'same' padding) with W, b ~ q; (B, C, H, W) -> (B, out, H, W)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, init_sigma: float = 1e-3,
                 sampling: str = "local"):  # fmt: skip
        super().__init__(
            (c_out, c_in, kernel, kernel), c_in * kernel * kernel, init_sigma, sampling
        )
        self.padding = kernel // 2

    def _map(self, x, weight, bias):
        return F.conv2d(x, weight, bias, padding=self.padding)


def bayes_layers(module: nn.Module) -> list[_Bayes]:
    return [m for m in module.modules() if isinstance(m, _Bayes)]


@contextmanager
def whole_functions(module: nn.Module, *, draw_means: bool = False):
    """Within: every Bayesian layer of ``module`` draws its weights once per forward pass (one
    draw of the weights serves every input: a whole function), where it drew pre-activations per
    example ("local"); a layer set to its means keeps them unless ``draw_means``."""
    layers = bayes_layers(module)
    modes = [layer.sampling for layer in layers]
    for layer in layers:
        if layer.sampling == "local" or draw_means:
            layer.sampling = "weights"
    try:
        yield
    finally:
        for layer, mode in zip(layers, modes, strict=True):
            layer.sampling = mode


def prior_variance(mu: torch.Tensor, sigma: torch.Tensor, prior: WeightPrior) -> torch.Tensor:
    """The empirical-Bayes prior variance of one tensor of q: the v minimizing
    KL(N(mu, sigma^2) || N(0, v)) summed over its entries (with the hyperprior: its mode)."""
    total = mu.square().sum() + sigma.square().sum()
    if prior.alpha == 0 and prior.beta == 0:
        return total / mu.numel()
    return (prior.beta + total / 2) / (prior.alpha + mu.numel() / 2 + 1)


def layer_priors(module: nn.Module, prior: WeightPrior):
    """(mu, sigma, prior distribution) of every weight and bias tensor of ``module``'s Bayesian
    layers; with empirical Bayes each tensor's N(0, v) at its own optimal v."""
    out = []
    for layer in bayes_layers(module):
        for mu, sigma in layer.moments():
            if prior.empirical:
                v = prior_variance(mu, sigma, prior)
                out.append((mu, sigma, Normal(torch.zeros_like(v), v.sqrt(), validate_args=False)))
            else:
                out.append((mu, sigma, prior.distribution(mu)))
    return out


def kl_to_prior(module: nn.Module, prior: WeightPrior) -> tuple[torch.Tensor, str]:
    """KL(q(w) || p(w)) summed over every Bayesian weight and bias of ``module``, in nats, and
    how: "analytic" (closed form) or "sampled" (log q(w) - log p(w) at one draw w ~ q, an
    unbiased estimate whose gradient is reparameterized). With empirical Bayes, the KL at each
    tensor's optimal prior variance minus the log-density of its hyperprior, if any (the ELBO
    maximized over the prior variances)."""
    total, p = None, None
    for layer in bayes_layers(module):
        for mu, sigma in layer.moments():
            if prior.closed:  # log(s_p / s) + (s^2 + mu^2) / (2 s_p^2) - 1/2, summed
                if prior.empirical:
                    var = prior_variance(mu, sigma, prior)
                    log_var = var.log()
                else:
                    var, log_var = prior.sigma**2, 2 * math.log(prior.sigma)
                part = (sigma.square().sum() + mu.square().sum()) / (2 * var) - sigma.log().sum()
                part = part + mu.numel() * (0.5 * log_var - 0.5)
                if prior.empirical and (prior.alpha or prior.beta):  # - log IG(v; alpha, beta)
                    a, b = prior.alpha, prior.beta
                    part = part - (a * math.log(b) - math.lgamma(a) - (a + 1) * log_var - b / var)
            else:
                p = prior.distribution(mu) if p is None else p
                w = mu + sigma * torch.randn_like(sigma)
                log_q = Normal(mu, sigma, validate_args=False).log_prob(w).sum()
                part = log_q - p.log_prob(w).sum()
            total = part if total is None else total + part
    if total is None:
        raise ValueError(f"{type(module).__name__} has no Bayesian layers")
    return total, "analytic" if prior.closed else "sampled"


def kl_estimate(module: nn.Module, prior: WeightPrior, samples: int = 64, seed: int = 0):
    """KL(q(w) || p(w)) over every weight (with empirical Bayes: to each tensor's optimal prior,
    without the hyperprior), with how it was obtained and its standard error: (value, "closed",
    0.0) or (value, "mc", se) from ``samples`` draws per weight (the divergence core's
    estimator, per weight, summed; se = sqrt(sum of per-weight se^2))."""
    from elbokit.divergence import estimate_kl

    value, var, method = 0.0, 0.0, "closed"
    with torch.no_grad():
        for mu, sigma, p in layer_priors(module, prior):
            q = Normal(mu, sigma, validate_args=False)
            est = estimate_kl(q, p, method="auto", num_samples=samples, seed=seed)
            value += float(est.value.sum())
            var += float(est.stderr.double().square().sum())
            method = est.method
    return value, method, math.sqrt(var)


@dataclass(frozen=True)
class BNNConfig(Section):
    arch: str = opt("mlp", "mlp, or conv (images: two 3x3 convolutions, pooling, then the mlp)",
                    choices=("mlp", "conv"))  # fmt: skip
    hidden: tuple[int, ...] = opt(
        (50,), "hidden units of each fully connected layer", nonempty=True
    )
    channels: int = opt(16, "conv: channels of the first convolution (the second has twice)", ge=1)
    prior: str = opt("gaussian", "the prior over weights", choices=PRIORS)
    prior_sigma: float = opt(1.0, "gaussian: its sigma; scale-mixture: sigma1", gt=0)
    prior_pi: float = opt(0.5, "scale-mixture: weight of the wide component", gt=0, lt=1)
    prior_sigma2: float = opt(math.exp(-6), "scale-mixture: sigma2, the narrow component", gt=0)
    sampling: str = opt("local", "local reparameterization, one weight draw per batch, or the means",
                        choices=SAMPLING)  # fmt: skip
    init_sigma: float = opt(1e-3, "initial posterior sigma of every weight", gt=0)
    dropout: float = opt(0.05, "the MC-dropout baseline's dropout rate", gt=0, lt=1)
    baselines: bool = opt(
        True, "also train the deterministic and MC-dropout networks of methods (false: only "
        "the variational ones)",
    )  # fmt: skip
    methods: tuple[str, ...] = opt(
        ("bnn", "det", "dropout"),
        "the networks trained side by side on the same batches: bnn (Bayes by backprop), dvi "
        "(deterministic variational inference; regression), det (MAP), dropout (MC dropout), "
        "ensemble (a deep ensemble; regression)", choices=METHODS,
    )  # fmt: skip
    prior_variance: str = opt(
        "fixed", "fixed (prior_sigma) or empirical-bayes (per layer, the variance maximizing "
        "the ELBO, in closed form)", choices=("fixed", "empirical-bayes"),
    )  # fmt: skip
    eb_alpha: float = opt(1.0, "empirical-bayes: the inverse-gamma hyperprior's alpha "
                          "(alpha = beta = 0: none)", ge=0)  # fmt: skip
    eb_beta: float = opt(10.0, "empirical-bayes: the inverse-gamma hyperprior's beta", ge=0)
    dvi_samples: int = opt(
        0, "dvi: train on this many weight draws of the output layer's moments instead of the "
        "closed-form expected log-likelihood (0: closed form)", ge=0,
    )  # fmt: skip
    dropout_rates: tuple[float, ...] = opt(
        (), "Gal's MC-dropout protocol: a grid of dropout rates (with dropout_tau: one network "
        "per rate and tau, batched; the best on the data's validation part predicts)",
        nonempty=False, gt=0, lt=1,
    )  # fmt: skip
    dropout_tau: tuple[float, ...] = opt(
        (), "Gal's protocol: fixed noise precisions tau in the target's units (weight decay "
        "l^2 (1 - p) / (2 N tau), l = 0.01, squared-error loss; empty: the noise is learned)",
        nonempty=False, gt=0,
    )  # fmt: skip
    ensemble_size: int = opt(5, "ensemble: networks with a mean and a variance output", ge=2)
    ensemble_epochs: int = opt(
        0, "ensemble: stop its updates after this many epochs (Lakshminarayanan et al.: 40; its "
        "variances overfit a small data set in long runs); 0: train it all along", ge=0,
    )  # fmt: skip
    ensemble_lr: float = opt(0.0, "ensemble: its Adam's learning rate (0: the run's --lr)", ge=0)

    def validate(self):
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden = {self.hidden}: expected positive sizes")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods = {list(self.methods)}: each method once")
        if not self.trained_methods():
            raise ConfigError(
                f"methods = {list(self.methods)} with baselines = false leaves no network: name "
                "bnn or dvi"
            )
        if self.dropout_rates and not self.dropout_tau:
            raise ConfigError(
                f"dropout_rates = {list(self.dropout_rates)} without dropout_tau: Gal's protocol "
                "needs both grids (the taus in the target's units)"
            )
        if "dvi" in self.methods and self.arch != "mlp":
            raise ConfigError("dvi propagates moments through fully connected layers: arch = mlp")
        if self.prior_variance == "empirical-bayes" and self.prior != "gaussian":
            raise ConfigError("prior_variance = empirical-bayes is for the gaussian prior")
        if (self.eb_alpha == 0) != (self.eb_beta == 0):
            raise ConfigError(
                f"eb_alpha = {self.eb_alpha:g}, eb_beta = {self.eb_beta:g}: both positive (a "
                "hyperprior) or both 0 (none)"
            )
        if self.prior == "scale-mixture" and not self.prior_sigma2 < self.prior_sigma:
            raise ConfigError(
                f"prior_sigma2 = {self.prior_sigma2:g}: the narrow component must be narrower "
                f"than prior_sigma = {self.prior_sigma:g}"
            )

    def trained_methods(self) -> tuple[str, ...]:
        """``methods``, without the baselines where ``baselines`` is false."""
        return tuple(m for m in self.methods if self.baselines or m in VARIATIONAL)

    def gal_grid(self) -> list[tuple[float, float]]:
        """Gal's protocol: every (dropout rate, tau) of the grids (none when tau is learned)."""
        rates = self.dropout_rates or (self.dropout,)
        return [(p, t) for p in rates for t in self.dropout_tau]

    def weight_prior(self) -> WeightPrior:
        eb = self.prior_variance == "empirical-bayes"
        return WeightPrior(self.prior, self.prior_sigma, self.prior_pi, self.prior_sigma2,
                           empirical=eb, alpha=self.eb_alpha, beta=self.eb_beta)  # fmt: skip


def network(cfg: BNNConfig, input_shape: tuple[int, ...], outputs: int, kind: str) -> nn.Module:
    """The architecture of ``cfg`` from layers of one ``kind``: "bayes" (``BayesLinear``,
    ``BayesConv2d``), "plain" (nn.Linear, nn.Conv2d) or "dropout" (plain, with dropout before
    every fully connected layer after the first). Input (B, *input_shape) -> (B, outputs)."""
    if kind not in ("bayes", "plain", "dropout"):
        raise ValueError(f"kind = {kind!r}; expected bayes, plain or dropout")

    def linear(i, o):
        if kind == "bayes":
            return BayesLinear(i, o, init_sigma=cfg.init_sigma, sampling=cfg.sampling)
        return nn.Linear(i, o)

    def conv(i, o):
        if kind == "bayes":
            return BayesConv2d(i, o, init_sigma=cfg.init_sigma, sampling=cfg.sampling)
        return nn.Conv2d(i, o, 3, padding=1)

    layers: list[nn.Module] = []
    if cfg.arch == "conv":
        if len(input_shape) != 3 or min(input_shape[1:]) < 4:
            raise ConfigError(
                f"arch = conv needs images (C, H, W) of at least 4x4; the inputs are {input_shape}"
            )
        c = cfg.channels
        layers += [conv(input_shape[0], c), nn.ReLU(), nn.MaxPool2d(2),
                   conv(c, 2 * c), nn.ReLU(), nn.MaxPool2d(2)]  # fmt: skip
        width = 2 * c * (input_shape[1] // 4) * (input_shape[2] // 4)
    else:
        width = math.prod(input_shape)
    layers.append(nn.Flatten())
    for i, h in enumerate(cfg.hidden):
        if kind == "dropout" and (i > 0 or cfg.arch == "conv"):
            layers.append(nn.Dropout(cfg.dropout))
        layers += [linear(width, h), nn.ReLU()]
        width = h
    if kind == "dropout":
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(linear(width, outputs))
    return nn.Sequential(*layers)


class Predictor(nn.Module):
    """A network and its likelihood p(y | x, w): a Gaussian with a learned noise sigma (one
    point-estimated parameter, no prior) for regression, a categorical on the logits for
    classification. ``kind`` as in ``network``."""

    def __init__(self, cfg: BNNConfig, input_shape, outputs: int, task: str, kind: str):
        super().__init__()
        if task not in ("regression", "classification"):
            raise ValueError(f"task = {task!r}; expected regression or classification")
        self.task, self.kind = task, kind
        self.net = network(cfg, tuple(input_shape), outputs, kind)
        if task == "regression":
            self.log_noise = nn.Parameter(torch.tensor(math.log(0.5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[:, 0] if self.task == "regression" else out

    def noise(self) -> torch.Tensor:
        return self.log_noise.exp()

    @torch.no_grad()
    def predictive(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Regression: (means, sds), each (samples, N) (``sample_outputs`` and the noise)."""
        outs = self.sample_outputs(x, samples)
        return outs, self.noise().detach().expand_as(outs)

    def log_likelihood(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y_i | x_i, w) per example (B,), nats."""
        if self.task == "regression":
            return Normal(out, self.noise()).log_prob(y)
        return -F.cross_entropy(out, y, reduction="none")

    @torch.no_grad()
    def sample_outputs(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(samples, B, ...) outputs: weight draws (Bayesian: each a whole function, one draw
        of the weights for every input, where training may draw pre-activations per example;
        the marginals are the same), dropout masks (MC dropout), or the one deterministic output."""
        if self.kind == "plain":
            self.eval()
            return self(x).unsqueeze(0)
        self.train(self.kind == "dropout")  # dropout masks on; Bayesian layers sample either way
        try:
            with whole_functions(self):
                return torch.stack([self(x) for _ in range(samples)])
        finally:
            self.eval()
