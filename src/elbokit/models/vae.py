"""The variational autoencoder: an encoder to a latent family, a decoder to a likelihood family.

    q(z | x) = latent(encoder(x)),  p(z) = latent's prior,  p(x | z) = likelihood(decoder(z))

The architecture (MLP or convolutional), the latent family and the likelihood family are chosen
by name in ``VAEConfig``, which is saved with every run and is all that is needed to rebuild the
model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from elbokit.config import Section, from_dict, opt, to_dict
from elbokit.latents import LATENTS, make_latent
from elbokit.likelihoods import LIKELIHOODS, make_likelihood
from elbokit.models.base import LatentVariableModel
from elbokit.nets import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder


@dataclass(frozen=True)
class VAEConfig(Section):
    """What defines a VAE. ``data_shape`` is (C, H, W) and comes from the data."""

    data_shape: tuple[int, int, int] = opt(
        (1, 28, 28), "image shape (C, H, W), from the data", derived=True, ge=1
    )
    latent: str = opt(
        "gaussian",
        "latent family: gaussian, or categorical (straight-through, groups x classes)",
        choices=LATENTS,
    )
    latent_dim: int = opt(32, "latent dimensions (groups, for categorical)", ge=1)
    latent_classes: int = opt(32, "classes per group of a categorical latent", ge=2)
    likelihood: str = opt("bernoulli", "p(x|z) family", choices=LIKELIHOODS)
    arch: Literal["mlp", "conv"] = opt("mlp", "encoder/decoder architecture")
    hidden: tuple[int, ...] = opt((512, 512), "MLP hidden widths (decoder mirrored)", ge=1)
    channels: tuple[int, ...] = opt((32, 64), "conv channels per stride-2 layer", ge=1)
    activation: str = opt("relu", "hidden activation", choices=ACTIVATIONS)
    layers: int = opt(1, "stochastic layers (2-3: a hierarchical VAE, gaussian latents; conv: "
                      "feature maps below a vector)",
                      ge=1, le=5)  # fmt: skip
    latent_dims: tuple[int, ...] = opt(
        (), "hierarchical: latent dimensions per layer, bottom (nearest x) to top (empty: "
        "latent_dim halved per layer up, at least 2); with --arch conv the channels of each "
        "feature-map layer, then the top's dimensions (empty: 4 each, then latent_dim)",
        nonempty=False, ge=1,
    )  # fmt: skip
    inference: str = opt(
        "top-down", "hierarchical: top-down (Ladder VAE: q shares the generative path, every KL "
        "analytic) or bottom-up (IWAE-style chain)", choices=("top-down", "bottom-up"),
    )  # fmt: skip

    def validate(self):
        from elbokit.config import ConfigError

        if self.layers > 1:
            if self.latent != "gaussian":
                raise ConfigError(f"layers = {self.layers}: the hierarchical VAE has gaussian "
                                  f"latents (got {self.latent})")  # fmt: skip
            if self.arch == "conv" and self.inference != "top-down":
                raise ConfigError("a convolutional hierarchy (--arch conv --layers L) has top-down "
                                  "inference only: its feature maps are built from the top down")  # fmt: skip
            if self.arch == "conv" and self.likelihood == "categorical":
                raise ConfigError(
                    "a convolutional hierarchy takes every likelihood but categorical"
                )
            if self.latent_dims and len(self.latent_dims) != self.layers:
                raise ConfigError(f"latent_dims = {list(self.latent_dims)}: expected {self.layers} "
                                  "values, one per layer")  # fmt: skip
        elif self.latent_dims:
            raise ConfigError("latent_dims is for a hierarchical VAE: give --layers 2 or more")

    def dims(self) -> tuple[int, ...]:
        """Latent dimensions per layer, bottom to top (a convolutional hierarchy: the channels
        of each feature-map layer, then the top vector's dimensions)."""
        if self.latent_dims:
            return tuple(self.latent_dims)
        if self.arch == "conv":
            return (*(4,) * (self.layers - 1), self.latent_dim)
        return tuple(max(2, self.latent_dim >> i) for i in range(self.layers))

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        return from_dict(cls, d, where="VAE config")


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Net outputs under bf16 autocast become float32 before the likelihood and KL sums (a
    bf16 sum of 784 pixel terms would be off by tenths of a nat); float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class VAE(LatentVariableModel):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.data_shape = tuple(config.data_shape)
        if config.latent == "categorical":
            self.latent = make_latent(
                "categorical", groups=config.latent_dim, classes=config.latent_classes
            )
        else:
            self.latent = make_latent(config.latent, dim=config.latent_dim)
        self.likelihood = make_likelihood(config.likelihood)
        self.param_shape = self.likelihood.param_shape(self.data_shape)
        c, h, w = self.data_shape
        out = math.prod(self.param_shape)
        if config.arch == "mlp":
            self.encoder = MLP(c * h * w, config.hidden, self.latent.param_size, config.activation)
            self.decoder = MLP(self.latent.z_size, config.hidden[::-1], out, config.activation)
        else:
            self.encoder = ConvEncoder(
                self.data_shape, config.channels, self.latent.param_size, config.activation
            )
            self.decoder = ConvDecoder(
                self.latent.z_size, config.channels, out // (h * w), (h, w), config.activation
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"the model expects images of shape {self.data_shape}, got a batch of shape {tuple(x.shape)}"
            )
        if (
            self.likelihood.name == "categorical"
        ):  # class indices 0..K-1 in; the encoder sees [0, 1]
            x = x / (self.likelihood.num_classes - 1)
        return _at_least_fp32(self.encoder(x.flatten(1) if self.config.arch == "mlp" else x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = _at_least_fp32(self.decoder(z.reshape(-1, z.shape[-1])))
        if self.config.arch == "conv" and self.likelihood.name == "categorical":
            c, h, w = self.data_shape  # (N, C*K, H, W) -> (N, C, H, W, K)
            out = out.view(-1, c, out.shape[1] // c, h, w).permute(0, 1, 3, 4, 2)
        return out.reshape(*lead, *self.param_shape)
