"""The bnn kind's other regression networks, each answering ``predictive(x, samples)`` like
``Predictor``: (means, sds), both (M, N) in standardized units, the predictive density being the
mixture (1/M) sum_m N(y; means[m], sds[m]^2).

    DVIPredictor    deterministic variational inference (Wu et al. 2019, its diagonal form): the
                    mean-field Gaussian q(w) of Bayes by backprop, but the expected
                    log-likelihood in closed form. Each pre-activation's mean and variance go
                    through the network exactly for a linear layer and by the rectified
                    Gaussian's moments for a ReLU (the pre-activations taken as independent
                    Gaussians); the output is a mean m and a log variance l, and with m ~ N(a, A),
                    l ~ N(b, B) independent,
                        E[log N(y; m, e^l)] = -1/2 (log 2 pi + b + e^(-b + B/2) ((y - a)^2 + A)).
                    No sampling in training: the gradient has no Monte Carlo noise.
    Members         G fully connected ReLU networks of one shape, batched: each layer one
                    batched matrix multiply (G, B, in) x (G, in, out).
    GalDropout      MC dropout on Gal & Ghahramani's protocol: one member per (rate, tau) of a
                    grid, dropout before every layer (the inputs' too), a squared-error loss with
                    weight decay l^2 (1 - p) / (2 N tau) on each weight matrix (l = 0.01), the
                    noise fixed at 1 / sqrt(tau) in the target's units; ``select`` picks the member
                    with the best log-likelihood on a validation part.
    Ensemble        a deep ensemble (Lakshminarayanan et al. 2017): G networks with a mean and a
                    variance output (softplus + 1e-6), each trained by its Gaussian negative
                    log-likelihood from its own initialization.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.models.bnn import BayesLinear, BNNConfig, network, whole_functions

__all__ = ["DVIPredictor", "Ensemble", "GalDropout", "Members", "relu_moments"]

LOG_2PI = math.log(2 * math.pi)
LENGTHSCALE = 1e-2  # Gal's prior length-scale


def relu_moments(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of max(0, h) for h ~ N(mean, var), elementwise."""
    sd = (var + 1e-12).sqrt()
    a = mean / sd
    cdf = 0.5 * torch.erfc(-a / math.sqrt(2))
    pdf = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    first = mean * cdf + sd * pdf
    second = (mean * mean + var) * cdf + mean * sd * pdf
    return first, (second - first * first).clamp_min(0)


class DVIPredictor(nn.Module):
    """A heteroscedastic regression network with a mean-field Gaussian q(w) over every weight,
    trained by the closed-form expected log-likelihood (see the module docstring)."""

    task, kind = "regression", "dvi"

    def __init__(self, cfg: BNNConfig, input_shape):
        super().__init__()
        self.net = network(cfg, tuple(input_shape), 2, "bayes")  # outputs: mean, log variance

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of the two outputs, each (B, 2), for deterministic inputs x."""
        mean, var = x.flatten(1), None
        for layer in self.net:
            if isinstance(layer, BayesLinear):
                (wm, ws), (bm, bs) = layer.moments()
                second = mean * mean if var is None else var + mean * mean
                new_var = F.linear(second, ws.square(), bs.square())
                if var is not None:
                    new_var = new_var + F.linear(var, wm.square())
                mean, var = F.linear(mean, wm, bm), new_var
            elif isinstance(layer, nn.ReLU):
                mean, var = relu_moments(mean, var)
            elif not isinstance(layer, nn.Flatten):
                raise TypeError(f"dvi cannot propagate moments through {type(layer).__name__}")
        return mean, var

    def expected_log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E_q[log p(y_i | x_i, w)] per example (B,), nats, in closed form."""
        mean, var = self.moments(x)
        a, big_a, b, big_b = mean[:, 0], var[:, 0], mean[:, 1], var[:, 1]
        return -0.5 * (LOG_2PI + b + torch.exp(-b + 0.5 * big_b) * ((y - a).square() + big_a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 2), one draw of the pre-activations

    @torch.no_grad()
    def predictive(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, sds), each (samples, N): one draw of all the weights per row."""
        with whole_functions(self, draw_means=True):
            outs = torch.stack([self.net(x) for _ in range(samples)])
        return outs[..., 0], (0.5 * outs[..., 1]).exp()


class Members(nn.Module):
    """G fully connected ReLU networks in -> hidden... -> outputs, batched. ``rates`` (G,):
    each member's dropout rate before every layer (0: none); x (B, in) -> (G, B, outputs)."""

    def __init__(self, members: int, n_in: int, hidden, outputs: int, rates=None):
        super().__init__()
        sizes = [n_in, *hidden, outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, o in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(i)
            self.weights.append(nn.Parameter(torch.empty(members, i, o).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, o).uniform_(-bound, bound)))
        rates = (
            torch.zeros(members) if rates is None else torch.as_tensor(rates, dtype=torch.float32)
        )
        self.register_buffer("rates", rates, persistent=False)
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).unsqueeze(0).expand(self.members, -1, -1)
        keep = (1.0 - self.rates)[:, None, None]
        dropping = self.training and bool((self.rates > 0).any())
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if dropping:
                h = h * (torch.rand_like(h) < keep) / keep
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.relu(h)
        return h

    def weight_norms(self) -> torch.Tensor:
        """(G,) each member's sum of squared weights (biases not included)."""
        return sum(w.square().sum((1, 2)) for w in self.weights)


class GalDropout(nn.Module):
    """MC dropout on Gal's protocol, one batched member per (rate, tau) of ``grid``; ``y_std``
    the target's training standard deviation (tau is a precision in the target's units)."""

    task, kind = "regression", "gal-dropout"

    def __init__(self, cfg: BNNConfig, input_shape, grid, n_train: int, y_std: float):
        super().__init__()
        rates = [p for p, _ in grid]
        self.net = Members(len(grid), math.prod(input_shape), cfg.hidden, 1, rates)
        taus = torch.tensor([t for _, t in grid], dtype=torch.float64)
        self.grid = list(grid)
        decay = (
            LENGTHSCALE**2 * (1 - torch.tensor(rates, dtype=torch.float64)) / (2 * n_train * taus)
        )
        self.register_buffer("decay", decay.float(), persistent=False)
        # the noise's sd in standardized units: 1 / (sqrt(tau) y_std)
        self.register_buffer("sds", (1 / (taus.sqrt() * y_std)).float(), persistent=False)
        self.register_buffer("chosen", torch.tensor(0 if len(grid) == 1 else -1))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sum over members of each one's mean squared error plus its weight decay, and the
        members' mean squared errors (G,)."""
        mse = (self.net(x)[..., 0] - y).square().mean(1)
        return (mse + self.decay * self.net.weight_norms()).sum(), mse.detach()

    @torch.no_grad()
    def member_predictive(self, x, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (samples, G, N), sds (G,)): every member's dropout draws."""
        self.train()
        try:
            means = torch.stack([self.net(x)[..., 0] for _ in range(samples)])
        finally:
            self.eval()
        return means, self.sds

    @torch.no_grad()
    def select(self, x, y, samples: int) -> list[float]:
        """Choose the member with the highest log-likelihood per point of (x, y) (standardized
        units; the ranking does not depend on them); returns every member's."""
        means, sds = self.member_predictive(x, samples)
        log_p = torch.distributions.Normal(means.double(), sds.double()[:, None]).log_prob(
            y.double()
        )
        ll = (torch.logsumexp(log_p, 0) - math.log(samples)).mean(-1)
        self.chosen.fill_(int(ll.argmax()))
        return [float(v) for v in ll]

    def predictive(self, x, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        if int(self.chosen) < 0:
            raise RuntimeError("GalDropout: no member chosen yet (select on validation data)")
        means, sds = self.member_predictive(x, samples)
        g = int(self.chosen)
        m = means[:, g]
        return m, sds[g].expand_as(m)


class Ensemble(nn.Module):
    """A deep ensemble of ``cfg.ensemble_size`` mean-and-variance networks, batched."""

    task, kind = "regression", "ensemble"

    def __init__(self, cfg: BNNConfig, input_shape):
        super().__init__()
        self.net = Members(cfg.ensemble_size, math.prod(input_shape), cfg.hidden, 2)

    def outputs(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out[..., 0], (F.softplus(out[..., 1]) + 1e-6).sqrt()

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sum over members of each one's Gaussian NLL per example, and those NLLs (G,)."""
        mean, sd = self.outputs(x)
        nll = -torch.distributions.Normal(mean, sd).log_prob(y).mean(1)
        return nll.sum(), nll.detach()

    @torch.no_grad()
    def predictive(self, x, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' (means, sds), each (G, N): the ensemble is their equal mixture."""
        self.eval()
        return self.outputs(x)
