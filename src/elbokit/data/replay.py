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

__all__ = ["Replay"]


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
        if meta.get("capacity") != self.capacity or set(tensors) != set(self.fields):
            raise ValueError(
                f"the saved replay buffer (capacity {meta.get('capacity')}, fields "
                f"{sorted(tensors)}) does not fit this run's (capacity {self.capacity}, fields "
                f"{sorted(self.fields)})"
            )
        size = int(meta["size"])
        for k, v in tensors.items():
            if v.shape != (size, self.fields[k]):
                raise ValueError(
                    f"the saved replay {k} has shape {tuple(v.shape)}; expected ({size}, {self.fields[k]})"
                )
            self.data[k].zero_()
            self.data[k][:size] = v
        self.size, self.ptr = size, int(meta["ptr"])
