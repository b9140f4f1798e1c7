"""Variational bounds on mutual information between a skill z and the states s it visits.

Reverse form (DIAYN, Eysenbach et al. 2019), a discriminator q(z | s) in place of the intractable
posterior p(z | s):

    I(S; Z) = H(Z) - H(Z | S) >= E_{p(z, s)}[log q(z | s)] - E_{p(z)}[log p(z)]

The gap is E_s[KL(p(z | s) || q(z | s))] >= 0 (the same identity as log p(x) = ELBO + KL): with
the Bayes-optimal q the bound is I. With a uniform prior over K skills -E[log p(z)] = log K, and
the per-step pseudo-reward is r = log q(z | s) - log p(z) = log q(z | s) + log K. That constant
makes the reward positive whenever the discriminator beats chance, which rewards staying alive
where episodes can end early; ``with_log_k=False`` drops it (the bound is then shifted by log K).

Forward form (DADS, Sharma et al. 2020), a skill-dynamics model q(s' | s, z):

    I(S'; Z | S) >= E[log q(s' | s, z) - log p(s' | s)],   p(s' | s) ~ (1/L) sum_i q(s' | s, z_i)

with z_i drawn from the skill prior. The paper's reward uses L prior samples only; the reference
code puts the true z among them (L + 1 terms), which bounds the reward above by log(L + 1) and
makes it an InfoNCE-style lower bound in expectation (``include_true``). Both are here.

Every function takes log-probabilities as tensors; units are nats; nothing here trains.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "forward_mi_reward",
    "reverse_mi_bound",
    "reverse_mi_reward",
]


def _check_logits(logits, z) -> tuple[torch.Tensor, torch.Tensor]:
    logits, z = torch.as_tensor(logits), torch.as_tensor(z)
    if z.dtype.is_floating_point or z.dtype.is_complex or z.dtype == torch.bool:
        raise ValueError(f"z has dtype {z.dtype}; expected integer skill indices")
    if logits.ndim < 1:
        raise ValueError(f"logits has shape {tuple(logits.shape)}; expected (..., K)")
    if z.shape != logits.shape[:-1]:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} but z has shape {tuple(z.shape)}; "
            f"expected z of shape {tuple(logits.shape[:-1])} (one skill index per row)"
        )
    k = logits.shape[-1]
    if z.numel() and (int(z.min()) < 0 or int(z.max()) >= k):
        bad = int(z.min()) if int(z.min()) < 0 else int(z.max())
        raise ValueError(f"z holds the skill {bad}; expected indices in 0..{k - 1} (K = {k})")
    return logits, z


def reverse_mi_reward(
    logits: torch.Tensor, z: torch.Tensor, *, with_log_k: bool = True
) -> torch.Tensor:
    """DIAYN's pseudo-reward log q(z | s) - log p(z) per row, p(z) uniform over K skills.

    Args:
        logits: (..., K) unnormalized log q(. | s) of the discriminator, on the state it scores
            (DIAYN's paper scores s_{t+1}).
        z: (...) integer skills.
        with_log_k: add -log p(z) = log K (default); False gives log q(z | s) alone.

    Returns (...) rewards in nats; their mean is the reverse MI bound when ``with_log_k``.
    """
    logits, z = _check_logits(logits, z)
    log_q = torch.log_softmax(logits, dim=-1).gather(-1, z.long().unsqueeze(-1)).squeeze(-1)
    return log_q + math.log(logits.shape[-1]) if with_log_k else log_q


def reverse_mi_bound(logits: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
    """E[log q(z | s)] + log K over the rows, and its standard error (nats): a Monte Carlo
    estimate of the lower bound on I(S; Z) from pairs (s, z) drawn from the joint."""
    r = reverse_mi_reward(logits, z).reshape(-1)
    n = r.numel()
    if n == 0:
        raise ValueError("no (s, z) pairs: the bound needs at least one row")
    se = float(r.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(r.mean()), se


def forward_mi_reward(
    log_q_true: torch.Tensor, log_q_alt: torch.Tensor, *, include_true: bool = True
) -> torch.Tensor:
    """DADS's reward log q(s' | s, z) - log p(s' | s) per row.

    Args:
        log_q_true: (B,) log q(s' | s, z) under the skill that acted.
        log_q_alt: (B, L) log q(s' | s, z_i) under L skills drawn from the prior.
        include_true: the reference code's form, the true z among L + 1 terms:
            log q_true - log[(q_true + sum_i q_i) / (L + 1)], at most log(L + 1). False: the
            paper's, log q_true - log[(1 / L) sum_i q_i], unbounded above.

    Returns (B,) rewards in nats (computed in log space: no exp overflows).
    """
    log_q_true, log_q_alt = torch.as_tensor(log_q_true), torch.as_tensor(log_q_alt)
    if log_q_true.ndim != 1 or log_q_alt.ndim != 2 or log_q_alt.shape[0] != log_q_true.shape[0]:
        raise ValueError(
            f"log_q_true has shape {tuple(log_q_true.shape)} and log_q_alt "
            f"{tuple(log_q_alt.shape)}; expected (B,) and (B, L)"
        )
    if log_q_alt.shape[1] < 1:
        raise ValueError("log_q_alt has no prior samples (L = 0); expected L >= 1")
    terms = torch.cat([log_q_true[:, None], log_q_alt], 1) if include_true else log_q_alt
    return log_q_true - (torch.logsumexp(terms, dim=1) - math.log(terms.shape[1]))
