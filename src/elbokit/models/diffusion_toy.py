"""A diffusion model's ground truth: data whose entropy is exact and the denoiser that is optimal.

Two pixels of four levels each (16 values in [-1, 1]^2) with fixed probabilities ``P``: the
entropy ``H`` is a finite sum, and under this distribution E[x_0 | x_t] is a softmax over the 16
values, so ``BayesOptimalDenoiser`` gives the epsilon a perfectly trained network would. With it
a DDPM's bound (``Diffusion.bound``) is an upper bound on H whose remaining gap is the bound's own.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GRID", "BayesOptimalDenoiser", "H", "P"]

_VALS = torch.linspace(-1, 1, 4, dtype=torch.float64)
GRID = torch.stack(torch.meshgrid(_VALS, _VALS, indexing="ij"), -1).reshape(-1, 2)  # (16, 2)
P = (
    torch.tensor([[2.0, 0, -1, 1], [0, 1.5, 0.5, -2], [1, 1, -1, 0], [-1, 0, 2, 1]])
    .flatten()
    .double()
    .softmax(0)
)  # (16,)
H = -(P * P.log()).sum().item()  # nats


class BayesOptimalDenoiser(nn.Module):
    """eps_hat(x_t, t) from E[x_0 | x_t] under (GRID, P), in closed form, for a ``Schedule``."""

    def __init__(self, schedule):
        super().__init__()
        self.sch = schedule.float64

    def forward(self, x, t):
        a, b = self.sch["sqrt_abar"][t - 1][:, None], self.sch["sqrt_1m_abar"][t - 1][:, None]
        x = x.double()
        d = ((x[:, None] - a[:, None] * GRID[None]) ** 2).sum(-1) / (2 * b**2)
        x0 = torch.softmax(P.log()[None] - d, -1) @ GRID
        return ((x - a * x0) / b).float()
