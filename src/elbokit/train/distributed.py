"""Many processes with torchrun: DistributedDataParallel, gloo on CPU, nccl on GPU.

    torchrun --nproc_per_node=2 -m elbokit train vae ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; ``setup`` joins the process group from them.
Every rank draws the same global batch (the data's seeds do not depend on the rank) and trains
on its own shard; DDP averages the gradients, so a step is the step of the global batch. Noise
in the objective comes from a per-rank stream seeded by (seed, step, rank). Rank 0 alone writes
checkpoints, metrics and reports. We write no distributed machinery of our own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (contiguous, as equal as possible)."""
        return x if self.size == 1 else x.tensor_split(self.size)[self.rank]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (for logged terms)."""
        if self.size == 1:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.size

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object of our own making) on every rank."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup(device: str) -> World:
    """Join torchrun's process group when WORLD_SIZE > 1; otherwise a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return World(dist.get_rank(), dist.get_world_size())


def teardown(world: World) -> None:
    """Leave the process group together: wait for every rank, then destroy the group.

    A rank that exits while another still works (rank 0 saving, evaluating, reporting) tears
    down gloo under its peer, which aborts the run ("terminate called without an active
    exception"); so every rank passes this barrier before rank 0 goes on alone.
    """
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
