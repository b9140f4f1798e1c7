"""Episodes of an environment on disk, validated on load, served as fixed-length sequences.

A folder of episodes holds one ``episode-NNNNNN.npz`` per episode and a ``meta.json``
(environment, policy, image size). Each episode file has, for T >= 2 time steps:

    image     (T, C, H, W) uint8     the observation x_t
    action    (T, A) float32         the action taken *before* x_t (a_0 = 0): one-hot if discrete
    reward    (T,) float32           the reward received on arriving at x_t (r_0 = 0)
    discount  (T,) float32 in [0, 1] 0 where x_t is terminal, else 1 (a time-limit cut is not
                                     terminal)

so the triple (a_t, r_t, x_t) is what a world model sees at step t (DreamerV2's convention).
``load_episodes`` checks every file before training starts and names the file and the problem.
Sequences for training are cut from each episode: ceil(T / L) windows of length L spread evenly
from its first step to its last (so the terminal step is always seen), shuffled per epoch with
a seed; episodes shorter than L are left out (and counted).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elbokit.config import Section, opt
from elbokit.data._order import batch_indices
from elbokit.data.collect import CollectSettings
from elbokit.data.episode_files import KEYS, read_episode
from elbokit.data.readers import DataError
from elbokit.seeding import mix


@dataclass
class SequenceBatch:
    """B sequences of T steps: image (B, T, C, H, W) float in [0, 1], action (B, T, A),
    reward (B, T), discount (B, T). Acts like a tensor where the trainer needs it."""

    image: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor

    def __len__(self) -> int:
        return len(self.image)

    def to(self, device) -> SequenceBatch:
        return SequenceBatch(*(getattr(self, k).to(device) for k in KEYS))

    def tensor_split(self, n: int) -> list[SequenceBatch]:
        """n contiguous shards of the batch dimension (for data-parallel processes)."""
        parts = [getattr(self, k).tensor_split(n) for k in KEYS]
        return [SequenceBatch(*p) for p in zip(*parts, strict=True)]

    def __getitem__(self, idx) -> SequenceBatch:
        return SequenceBatch(*(getattr(self, k)[idx] for k in KEYS))


@dataclass
class EpisodeData:
    """Train and test episodes (split by episode, seeded) and the sequence length L."""

    name: str
    train: list[dict[str, torch.Tensor]]
    test: list[dict[str, torch.Tensor]]
    seq_len: int
    meta: dict

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0]["image"].shape[1:])

    @property
    def action_dim(self) -> int:
        return self.train[0]["action"].shape[1]

    def split(self, which: str) -> list[dict[str, torch.Tensor]]:
        if which not in ("train", "test"):
            raise ValueError(f"split={which!r}; expected 'train' or 'test'")
        return self.train if which == "train" else self.test

    def windows(self, which: str, length: int | None = None) -> list[tuple[int, int]]:
        """(episode, start) of every window of ``length`` (default L) in a split, in order."""
        length = length or self.seq_len
        out = []
        for e, ep in enumerate(self.split(which)):
            t = len(ep["image"])
            if t < length:
                continue
            n = math.ceil(t / length)
            starts = [0] if n == 1 else [round(i * (t - length) / (n - 1)) for i in range(n)]
            out += [(e, s) for s in starts]
        return out

    def num_batches(self, split: str, batch_size: int) -> int:
        return -(-len(self.windows(split)) // batch_size)

    def gather(self, which: str, windows, length: int | None = None) -> SequenceBatch:
        length = length or self.seq_len
        eps = self.split(which)
        cols = {k: torch.stack([eps[e][k][s : s + length] for e, s in windows]) for k in KEYS}
        return SequenceBatch(
            cols["image"].float().div_(255.0), cols["action"], cols["reward"], cols["discount"]
        )

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
    ):
        """SequenceBatches of a split in an order fixed by (seed, epoch), from batch ``start`` on."""
        wins = self.windows(split)
        for _, idx in batch_indices(
            len(wins), batch_size, seed=seed, epoch=epoch, start=start, shuffle=shuffle
        ):
            yield self.gather(split, [wins[i] for i in idx])


def load_episodes(
    path: str | os.PathLike, *, seq_len: int, test_fraction: float = 0.1, seed: int = 0
) -> EpisodeData:
    """Read and validate every episode in a folder; split whole episodes into train and test.

    Raises:
        DataError: a missing folder, no episodes, an invalid episode file (named), episodes of
            different image shapes or action sizes, or no episode at least ``seq_len`` long.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder of episodes; make one with: elbokit collect --out {folder}"
        )
    files = sorted(folder.glob("episode-*.npz"))
    if not files:
        raise DataError(
            f"{folder}: no episode-*.npz files; make them with: elbokit collect --out {folder}"
        )
    if seq_len < 2:
        raise ValueError(f"seq_len={seq_len}; expected >= 2")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction}; expected 0 < test_fraction < 1")
    episodes = []
    for f in files:
        ep = read_episode(f)
        first = episodes[0] if episodes else None
        if first is not None:
            for k, what in (("image", "image shape (C, H, W)"), ("action", "action size")):
                if ep[k].shape[1:] != tuple(first[k].shape[1:]):
                    raise DataError(
                        f"{f}: {what} {ep[k].shape[1:]} differs from {files[0].name}'s {tuple(first[k].shape[1:])}"
                    )
        episodes.append(
            {
                "image": torch.from_numpy(ep["image"]),
                "action": torch.from_numpy(ep["action"].astype(np.float32)),
                "reward": torch.from_numpy(ep["reward"].astype(np.float32)),
                "discount": torch.from_numpy(ep["discount"].astype(np.float32)),
            }
        )
    long_enough = sum(len(e["image"]) >= seq_len for e in episodes)
    if long_enough < 2:
        lengths = sorted(len(e["image"]) for e in episodes)
        raise DataError(
            f"{folder}: {long_enough} of {len(episodes)} episodes have at least seq_len={seq_len} "
            f"steps (longest: {lengths[-1]}); need 2 or more: collect longer episodes or lower --seq-len"
        )
    perm = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(mix(seed, 0x7E57)))
    n_test = max(1, round(test_fraction * len(episodes)))
    test = [episodes[i] for i in sorted(perm[:n_test].tolist())]
    train = [episodes[i] for i in sorted(perm[n_test:].tolist())]
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    data = EpisodeData(folder.name, train, test, seq_len, meta)
    for which in ("train", "test"):
        if not data.windows(which):
            raise DataError(
                f"{folder}: no {which} episode has seq_len={seq_len} steps; collect more or longer episodes"
            )
    return data


@dataclass(frozen=True)
class EpisodeDataConfig(Section):
    """Where a world model's episodes come from and how they are cut into sequences."""

    source: str = opt("", "folder of episodes (none: collect them into RUN/episodes)", flag="data")
    collect: CollectSettings = opt(
        default_factory=CollectSettings, help="what to collect when there is no folder"
    )
    seq_len: int = opt(32, "steps per training sequence", ge=2)
    test_fraction: float = opt(0.1, "episodes held out for testing", gt=0, lt=1)

    def folder(self, run_dir: str | os.PathLike) -> Path:
        return Path(self.source) if self.source else Path(run_dir) / "episodes"

    def load(self, run_dir: str | os.PathLike, seed: int) -> EpisodeData:
        return load_episodes(
            self.folder(run_dir), seq_len=self.seq_len, test_fraction=self.test_fraction, seed=seed
        )
