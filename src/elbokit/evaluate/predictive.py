"""Judging predictions p(y | x, D) made by averaging M draws of a model (weights, dropout masks).

    regression_metrics(means, noise, y)      test log-likelihood, RMSE, 95% coverage, and the
                                             predictive variance split into aleatoric and
                                             epistemic parts
    classification_metrics(probs, y)         accuracy, NLL, expected calibration error
    reliability(confidence, correct, bins)   the reliability diagram's bins
    roc_auc(scores_out, scores_in)           P(score of an outside input > score of an inside one)

Regression: M predicted means f_m(x) with Gaussian noise sigma give the predictive mixture
p(y | x) = (1/M) sum_m N(y; f_m(x), sigma^2); its log density is computed exactly (logsumexp),
its variance is sigma^2 (aleatoric) + Var_m f_m(x) (epistemic), and the 95% interval is that of
the moment-matched Gaussian, mean +- 1.96 sd. Everything is per example, averaged over the test
set, in nats; ``y_std`` rescales standardized targets to the data's units.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "central_coverage",
    "classification_metrics",
    "entropy",
    "regression_metrics",
    "reliability",
    "roc_auc",
]

Z95 = 1.959963984540054  # the 97.5% quantile of N(0, 1)


def regression_metrics(
    means: torch.Tensor, noise: torch.Tensor | float, y: torch.Tensor, y_std: float = 1.0
) -> dict[str, float]:
    """means (M, N) predicted means, noise sigma (scalar, (M,) or (M, N)), y (N,) targets, all
    in standardized units; the predictive is the mixture (1/M) sum_m N(means[m], noise[m]^2).
    Log-likelihood and RMSE reported in units multiplied by ``y_std``.

    Raises:
        ValueError: shapes that do not fit.
    """
    if means.dim() != 2 or y.dim() != 1 or means.shape[1] != y.shape[0]:
        raise ValueError(
            f"means must be (M, N) and y (N,); got {tuple(means.shape)} and {tuple(y.shape)}"
        )
    means, y = means.double(), y.double()
    noise = torch.as_tensor(noise, dtype=torch.float64, device=means.device)
    noise = noise.expand_as(means) if noise.dim() == 2 else noise.reshape(-1, 1).expand_as(means)
    log_p = torch.distributions.Normal(means, noise).log_prob(y)  # (M, N)
    ll = torch.logsumexp(log_p, 0) - math.log(means.shape[0])
    mean = means.mean(0)
    aleatoric = noise.square().mean(0)
    epistemic = means.var(0, unbiased=False)
    sd = (aleatoric + epistemic).sqrt()
    inside = ((y - mean).abs() <= Z95 * sd).double()
    return {
        "log_likelihood": float(ll.mean()) - math.log(y_std),
        "rmse": float((mean - y).square().mean().sqrt()) * y_std,
        "coverage_95": float(inside.mean()),
        "sd_aleatoric": float(aleatoric.sqrt().mean()) * y_std,
        "sd_epistemic": float(epistemic.sqrt().mean()) * y_std,
    }


def central_coverage(means: torch.Tensor, noise: torch.Tensor, y: torch.Tensor, levels) -> list:
    """[level, fraction of y inside the mixture predictive's central interval of that level]
    for each level: y is inside iff its predictive CDF F(y) = (1/M) sum_m Phi((y - means[m]) /
    noise[m]) lies within 1/2 +- level / 2 (exact for the mixture; means, noise (M, N))."""
    z = (y.double() - means.double()) / noise.double().expand_as(means)
    cdf = (0.5 * torch.erfc(-z / math.sqrt(2))).mean(0)
    return [[float(c), float(((cdf - 0.5).abs() <= c / 2).double().mean())] for c in levels]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H[p] per row of (N, C) probabilities, nats."""
    return -(probs * probs.clamp_min(1e-300).log()).sum(-1)


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15):
    """Equal-width bins of confidence on [0, 1]: (counts, mean confidence, accuracy) per bin
    (empty bins hold 0), and the expected calibration error sum_b (n_b / N) |acc_b - conf_b|."""
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence.double(), edges[1:-1], right=True)  # bin b: (e_b, e_b+1]
    counts = torch.bincount(which, minlength=bins).double()
    conf = torch.bincount(which, confidence.double(), minlength=bins)
    acc = torch.bincount(which, correct.double(), minlength=bins)
    nz = counts > 0
    conf[nz] /= counts[nz]
    acc[nz] /= counts[nz]
    ece = float(((counts / counts.sum()) * (acc - conf).abs()).sum())
    return counts, conf, acc, ece


def classification_metrics(
    probs: torch.Tensor, y: torch.Tensor, bins: int = 15
) -> dict[str, float]:
    """probs (N, C) predictive probabilities (already averaged over draws), y (N,) labels.

    Raises:
        ValueError: shapes that do not fit, or rows that do not sum to 1.
    """
    if probs.dim() != 2 or y.shape != probs.shape[:1]:
        raise ValueError(
            f"probs must be (N, C) and y (N,); got {tuple(probs.shape)} and {tuple(y.shape)}"
        )
    total = probs.double().sum(-1)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-4):
        i = int((total - 1).abs().argmax())
        raise ValueError(f"probs[{i}] sums to {float(total[i]):.6g}; expected 1")
    probs = probs.double()
    confidence, guess = probs.max(-1)
    correct = guess == y
    *_, ece = reliability(confidence, correct, bins)
    nll = -probs.gather(1, y[:, None]).clamp_min(1e-300).log().mean()
    return {
        "accuracy": float(correct.double().mean()),
        "nll": float(nll),
        "ece": ece,
        "entropy": float(entropy(probs).mean()),
    }


def roc_auc(scores_out: torch.Tensor, scores_in: torch.Tensor) -> float:
    """The area under the ROC curve of telling outside inputs (positives) from inside ones by a
    score: P(s_out > s_in) + P(s_out = s_in) / 2 (the Mann-Whitney statistic, ties halved)."""
    s = torch.cat([scores_out, scores_in]).double()
    ranks = _average_ranks(s)
    n_out, n_in = len(scores_out), len(scores_in)
    if n_out == 0 or n_in == 0:
        raise ValueError(f"roc_auc needs scores on both sides; got {n_out} and {n_in}")
    u = ranks[:n_out].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_out * n_in))


def _average_ranks(s: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    # ties: every member of a run of equal values gets the run's mean rank
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    ranks[order] = (sums / counts)[inverse]
    return ranks
