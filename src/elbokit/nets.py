"""Plain building blocks: an MLP, a convolutional encoder/decoder pair for images, and the
time-conditioned denoisers of diffusion models (an MLP for vectors, a small U-Net for images).

The convolutional encoder halves the spatial size with each 4x4 stride-2 convolution (28 -> 14
-> 7, 7 -> 3); the decoder retraces the same sizes exactly with transposed convolutions,
so any image size works.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
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


# ------------------------------------------------------------------ time-conditioned denoisers


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of integer timesteps t (B,) -> (B, dim) (Vaswani et al.; Ho et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimeMLP(nn.Module):
    """A denoiser for vectors: (x (B, D), t (B,)) -> (B, out_features); the time embedding is
    added after the first layer and again in every block (SiLU, residual)."""

    def __init__(self, dim: int, hidden: int, blocks: int, out_features: int):
        super().__init__()
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
            )
            for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, out_features))
        self.hidden = hidden

    def forward(self, x, t):
        emb = self.time(timestep_embedding(t, self.hidden))
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv; + the time embedding; GroupNorm, SiLU, dropout, 3x3 conv; +
    the input (through a 1x1 conv where the channels change)."""

    def __init__(self, c_in: int, c_out: int, emb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = (
            nn.GroupNorm(_groups(c_in), c_in),
            nn.Conv2d(c_in, c_out, 3, padding=1),
        )
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """A small U-Net denoiser for images: (x (B, C, H, W), t (B,)) -> (B, out_channels, H, W).

    One residual block per resolution on the way down and two on the way up (the second taking
    the skip), a stride-2 convolution down and nearest-neighbour upsampling with a convolution
    up, two residual blocks in the middle, the sinusoidal time embedding through an MLP into
    every block. ``mults`` gives the channels per resolution (as multiples of ``channels``); any
    H and W work (sizes are restored exactly on the way up, 28 -> 14 -> 7 -> 14 -> 28).
    """

    def __init__(self, in_channels: int, channels: int, mults: tuple[int, ...], out_channels: int,
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        emb = 4 * channels
        self.channels = channels
        self.time = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = channels
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, emb, dropout))
            c = w
            if i + 1 < len(widths):
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([_ResBlock(c, c, emb, dropout), _ResBlock(c, c, emb, dropout)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(c + w, w, emb, dropout))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv2d(c, widths[i - 1], 3, padding=1))
                c = widths[i - 1]
        self.out = nn.Sequential(
            nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t):
        emb = self.time(timestep_embedding(t, self.channels))
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, emb)
        for j, block in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = self.upsample[j - 1](F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)
