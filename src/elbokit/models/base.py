"""What every latent-variable model offers the objectives, the evaluation and the report.

A model has an encoder q(z | x) (``encode`` gives the latent family's raw parameters), a latent
family with its prior p(z) (``latent``), and a likelihood p(x | z) (``decode`` gives the
likelihood family's parameters). Objectives and evaluation use nothing else, so a Gaussian VAE,
a categorical VAE and the linear-Gaussian ground truth are judged by the same code.
"""

from __future__ import annotations

import torch
from torch import nn

from elbokit.latents import Latent
from elbokit.likelihoods import Likelihood


class LatentVariableModel(nn.Module):
    latent: Latent
    likelihood: Likelihood
    data_shape: tuple[int, ...]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *data_shape) -> (B, latent.param_size)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(*S, B, latent.z_size) -> likelihood parameters (*S, B, *likelihood.param_shape)."""
        raise NotImplementedError

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats, (*S, B)."""
        return self.likelihood.log_prob(self.decode(z), x)
