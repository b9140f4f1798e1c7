"""A replay buffer of transitions, saved whole with a run's checkpoint.

    buf = Replay(capacity=100_000, fields={"obs": 2, "action": 2, "next_obs": 2, "skill": 8,
                                           "terminated": 1})
    buf.add(obs=..., action=..., ...)         # (n, width) rows, oldest overwritten when full
    batch = buf.sample(256)                   # {field: (256, width)}, rows drawn uniformly

Rewards that depend on a model being learned (a discriminator's log q(z | s')) are not stored:
they are recomputed from the sampled rows by whoever samples. ``state``/``load_state`` give the
filled rows as tensors (for safetensors) and the write position as JSON, so a resumed run samples
from exactly the buffer it left. Sampling draws from torch's default generator (seeded per step
by the trainer).
"""

from __future__ import annotations

import torch

__all__ = ["Replay", "SequenceReplay"]


class Replay:
    def __init__(self, capacity: int, fields: dict[str, int]):
        if capacity < 1:
            raise ValueError(f"capacity = {capacity}; expected >= 1")
        self.capacity, self.fields = capacity, dict(fields)
        self.data = {k: torch.zeros(capacity, w) for k, w in self.fields.items()}
        self.size = 0
        self.ptr = 0  # next row to write

    def __len__(self) -> int:
        return self.size

    def add(self, **rows: torch.Tensor) -> None:
        if set(rows) != set(self.fields):
            raise ValueError(f"rows for {sorted(rows)}; the buffer holds {sorted(self.fields)}")
        n = None
        for k, v in rows.items():
            v = v.reshape(len(v), -1)
            if v.shape[1] != self.fields[k] or (n is not None and len(v) != n):
                raise ValueError(
                    f"{k} has shape {tuple(v.shape)}; expected ({n or 'n'}, {self.fields[k]})"
                )
            n = len(v)
        idx = (self.ptr + torch.arange(n)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = v.reshape(n, -1).float().cpu()
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise ValueError("the replay buffer is empty")
        idx = torch.randint(self.size, (batch,))
        return {k: v[idx].to(device) for k, v in self.data.items()}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return (
            {k: v[: self.size].clone() for k, v in self.data.items()},
            {"size": self.size, "ptr": self.ptr, "capacity": self.capacity},
        )

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        size = int(meta.get("size", -1))
        _restore(self.data, tensors, {k: (w,) for k, w in self.fields.items()},
                 ours=f"capacity {self.capacity}", saved=f"capacity {meta.get('capacity')}",
                 fits=meta.get("capacity") == self.capacity, rows=(size,), where=(slice(0, size),))  # fmt: skip
        self.size, self.ptr = size, int(meta["ptr"])


def _restore(data: dict, tensors: dict, fields: dict[str, tuple[int, ...]], *, ours: str,
             saved: str, fits: bool, rows: tuple[int, ...], where: tuple) -> None:  # fmt: skip
    """Copy a saved buffer's ``tensors`` into ``data[k][where]`` once they fit: the same layout
    (``fits``; ``ours`` and ``saved`` describe the two) and fields, each of shape ``rows`` + the
    field's own. ValueError naming what differs, before anything is copied."""
    if not fits or set(tensors) != set(fields):
        raise ValueError(
            f"the saved replay ({saved}, fields {sorted(tensors)}) does not fit this run's "
            f"({ours}, fields {sorted(fields)})"
        )
    for k, v in tensors.items():
        want = (*rows, *fields[k])
        if tuple(v.shape) != want:
            raise ValueError(f"the saved replay {k} has shape {tuple(v.shape)}; expected {want}")
    for k, v in tensors.items():
        data[k].zero_()
        data[k][where] = v.to(data[k].dtype)


class SequenceReplay:
    """Steps of ``n`` environments, one ring per environment, sampled as contiguous sequences.

        buf = SequenceReplay(capacity=100_000, n=4, fields={"obs": (4,), "action": (2,),
                             "reward": (), "cont": (), "is_first": ()})
        buf.add(env_index, obs=..., action=..., ...)   # one step of one environment
        batch = buf.sample(16, 64)                      # {field: (16, 64, ...)}

    A sequence may span episodes (``is_first`` marks where one starts); it never spans the write
    position of a full ring (the oldest step next to the newest). Sequences are drawn uniformly
    over all valid (environment, start) pairs. ``uint8`` fields (pixels) are stored as bytes,
    given and returned as floats in [0, 1]. The capacity is split evenly between the rings.
    """

    def __init__(self, capacity: int, n: int, fields: dict[str, tuple[int, ...]],
                 uint8: tuple[str, ...] = ()):  # fmt: skip
        if n < 1 or capacity < n:
            raise ValueError(f"capacity = {capacity}, n = {n}; expected n >= 1, capacity >= n")
        self.n, self.per_env = n, capacity // n
        self.fields = {k: tuple(v) for k, v in fields.items()}
        self.uint8 = tuple(uint8)
        self.data = {
            k: torch.zeros((n, self.per_env, *shape),
                           dtype=torch.uint8 if k in self.uint8 else torch.float32)
            for k, shape in self.fields.items()
        }  # fmt: skip
        self.size = [0] * n
        self.ptr = [0] * n

    def __len__(self) -> int:
        return sum(self.size)

    def add_batch(self, envs: torch.Tensor | list[int], **rows: torch.Tensor) -> None:
        """One step for each environment in ``envs`` (indices); rows (len(envs), ...)."""
        if set(rows) != set(self.fields):
            raise ValueError(f"rows for {sorted(rows)}; the buffer holds {sorted(self.fields)}")
        envs = [int(e) for e in envs]
        for k, v in rows.items():
            if tuple(v.shape) != (len(envs), *self.fields[k]):
                raise ValueError(
                    f"{k} has shape {tuple(v.shape)}; expected ({len(envs)}, "
                    f"{', '.join(map(str, self.fields[k]))})"
                )
        idx = torch.tensor(envs, dtype=torch.long)
        pos = torch.tensor([self.ptr[e] for e in envs], dtype=torch.long)
        for k, v in rows.items():
            v = v.detach().cpu()
            if k in self.uint8:
                v = (v * 255).round().clamp(0, 255).to(torch.uint8)
            self.data[k][idx, pos] = v.to(self.data[k].dtype)
        for e in envs:
            self.ptr[e] = (self.ptr[e] + 1) % self.per_env
            self.size[e] = min(self.size[e] + 1, self.per_env)

    def starts(self, length: int) -> list[int]:
        return [max(0, s - length + 1) for s in self.size]

    def sample(self, batch: int, length: int, device: torch.device | str = "cpu") -> dict:
        """``batch`` sequences of ``length`` steps: {field: (batch, length, ...)}."""
        counts = torch.tensor(self.starts(length), dtype=torch.float64)
        if counts.sum() == 0:
            raise ValueError(
                f"no environment has {length} steps in the replay yet (sizes {self.size})"
            )
        env = torch.multinomial(counts, batch, replacement=True)
        j = (torch.rand(batch, dtype=torch.float64) * counts[env]).long()
        size = torch.tensor(self.size)[env]
        ptr = torch.tensor(self.ptr)[env]
        first = (ptr - size + j) % self.per_env  # the oldest step is at ptr - size
        pos = (first[:, None] + torch.arange(length)) % self.per_env
        out = {}
        for k, v in self.data.items():
            x = v[env[:, None], pos]
            out[k] = (x.float() / 255 if k in self.uint8 else x).to(device)
        return out

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        top = max(self.size)
        return (
            {k: v[:, :top].clone() for k, v in self.data.items()},
            {"size": list(self.size), "ptr": list(self.ptr), "per_env": self.per_env, "n": self.n},
        )

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        top = max(meta.get("size") or [0])
        _restore(self.data, tensors, self.fields,
                 ours=f"{self.n} environments x {self.per_env} steps",
                 saved=f"{meta.get('n')} environments x {meta.get('per_env')} steps",
                 fits=(meta.get("per_env"), meta.get("n")) == (self.per_env, self.n),
                 rows=(self.n, top), where=(slice(None), slice(0, top)))  # fmt: skip
        self.size, self.ptr = [int(s) for s in meta["size"]], [int(p) for p in meta["ptr"]]
