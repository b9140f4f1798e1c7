"""2-D toy densities for pictures of a generative model: two moons, eight Gaussians, a swiss roll.

    data = load_toy("eight-gaussians", seed=0)      10,000 train / 2,000 test points (N, 2)
    toy_log_prob("eight-gaussians", x)              its exact log density (None for the others)

Every set is drawn at a fixed scale, roughly inside [-3, 3]^2 with about unit spread per
coordinate, so one denoiser configuration suits all three:

    moons            two interleaved half circles (radius 1, the lower one shifted by (1, -0.5)),
                     centred and scaled by 1.5, with isotropic Gaussian noise of 0.1 after scaling
    eight-gaussians  an equal mixture of 8 isotropic Gaussians (sd 0.2) centred on a circle of
                     radius 2 at angles 2 pi k / 8: a density known exactly
    swiss-roll       the 2-D spiral (r cos r, r sin r) for r uniform on [1.5 pi, 4.5 pi], divided
                     by 5, with isotropic Gaussian noise of 0.1 after scaling

Points are float32, drawn from a generator seeded by (seed, train or test), so the split is the
same every time and the test points are independent of the training points.
"""

from __future__ import annotations

import math

import torch

from elbokit.data.readers import DataError
from elbokit.data.vectors import VectorData
from elbokit.seeding import mix

__all__ = ["TOYS_2D", "load_toy", "toy_log_prob"]

TOYS_2D = ("moons", "eight-gaussians", "swiss-roll")
EIGHT_RADIUS, EIGHT_SD = 2.0, 0.2


def _moons(n: int, g: torch.Generator) -> torch.Tensor:
    upper = torch.rand(n, generator=g) < 0.5
    a = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    x = torch.where(upper, torch.cos(a), 1 - torch.cos(a))
    y = torch.where(upper, torch.sin(a), 0.5 - torch.sin(a))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.5
    return pts + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _eight_centres() -> torch.Tensor:
    a = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return EIGHT_RADIUS * torch.stack([torch.cos(a), torch.sin(a)], 1)


def _eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    k = torch.randint(0, 8, (n,), generator=g)
    return _eight_centres()[k] + EIGHT_SD * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _swiss_roll(n: int, g: torch.Generator) -> torch.Tensor:
    r = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    pts = torch.stack([r * torch.cos(r), r * torch.sin(r)], 1) / 5
    return pts + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


_DRAW = {"moons": _moons, "eight-gaussians": _eight_gaussians, "swiss-roll": _swiss_roll}


def toy_log_prob(name: str, x: torch.Tensor) -> torch.Tensor | None:
    """The exact log density of the toy at points x (N, 2), float64, where it is known in closed
    form (eight-gaussians); None for the others."""
    if name != "eight-gaussians":
        return None
    d = x.double()[:, None, :] - _eight_centres().to(x.device)[None]  # (N, 8, 2)
    log_comp = -0.5 * d.square().sum(-1) / EIGHT_SD**2 - math.log(2 * math.pi * EIGHT_SD**2)
    return torch.logsumexp(log_comp, 1) - math.log(8)


def load_toy(name: str, *, seed: int = 0, train: int = 10_000, test: int = 2_000,
             limit: int | None = None) -> VectorData:  # fmt: skip
    """The toy ``name`` (one of TOYS_2D): ``train`` and ``test`` points (float32), the training
    set cut to its first ``limit`` points if given.

    Raises:
        DataError: an unknown name.
        ValueError: a count below 1.
    """
    if name not in _DRAW:
        raise DataError(f"no 2-D toy {name!r}: expected one of {', '.join(TOYS_2D)}")
    for what, n in (("train", train), ("test", test)):
        if n < 1:
            raise ValueError(f"{what} = {n}: expected at least 1 point")
    draw = _DRAW[name]
    tr = draw(train, torch.Generator().manual_seed(mix(seed, 0x70, 1)))
    te = draw(test, torch.Generator().manual_seed(mix(seed, 0x70, 2)))
    if limit:
        tr = tr[:limit]
    return VectorData(name, tr.float(), te.float())
