"""Plain encoder and decoder building blocks: an MLP and a convolutional pair for images.

The convolutional encoder halves the spatial size with each 4x4 stride-2 convolution (28 -> 14
-> 7, 7 -> 3); the decoder retraces the same sizes exactly with transposed convolutions,
so any image size works.
"""

from __future__ import annotations

import itertools
import math

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def activation_layer(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Sequential):
    """in_features -> hidden... -> out_features, the activation between layers (not after the last)."""

    def __init__(
        self, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str = "relu"
    ):
        act = activation_layer(activation)
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)


def _conv_sizes(size: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """Spatial sizes through n 4x4 stride-2 padding-1 convolutions: each gives floor(h / 2)."""
    sizes = [tuple(size)]
    for _ in range(n):
        h, w = sizes[-1]
        if h < 2 or w < 2:
            raise ValueError(
                f"images of {size[0]}x{size[1]} are too small for {n} stride-2 conv layers"
            )
        sizes.append((h // 2, w // 2))
    return sizes


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features) through stride-2 convolutions and a linear layer."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        channels: tuple[int, ...],
        out_features: int,
        activation="relu",
    ):
        super().__init__()
        act = activation_layer(activation)
        c, h, w = shape
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), act()]
            c = ch
        self.convs = nn.Sequential(*layers)
        hh, ww = _conv_sizes((h, w), len(channels))[-1]
        self.head = nn.Linear(c * hh * ww, out_features)

    def forward(self, x):
        return self.head(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """(N, in_features) -> (N, out_channels, H, W), retracing the encoder's sizes exactly."""

    def __init__(
        self,
        in_features: int,
        channels: tuple[int, ...],
        out_channels: int,
        size: tuple[int, int],
        activation="relu",
    ):
        super().__init__()
        act = activation_layer(activation)
        self.sizes = _conv_sizes(size, len(channels))[::-1]  # smallest first
        rev = list(channels[::-1])
        self.start = (rev[0], *self.sizes[0])
        self.fc = nn.Linear(in_features, math.prod(self.start))
        self.act = act()
        self.deconvs = nn.ModuleList()
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else out_channels
            self.deconvs.append(nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1))

    def forward(self, z):
        h = self.act(self.fc(z)).view(-1, *self.start)
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h, output_size=self.sizes[i + 1])
            if i + 1 < len(self.deconvs):
                h = self.act(h)
        return h
