"""Process groups and rank helpers: the only place that reads torchrun's environment.

The rest of the code asks `Dist.is_main` (or `rank()` before a group exists), takes its `share` of a list
and calls `barrier()`; the same code runs with and without torchrun. Under `torchrun`, the backend is NCCL
on GPUs and gloo on CPUs. Model wrapping (FSDP2, DDP) is training's business: sama_cli/train/parallel.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so that `sama --help` does not pay for it
    import torch


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=_cpu)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def rank() -> int:
    """This process's global rank under torchrun (0 without it), readable before any group exists."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> Dist:
    """Join the torchrun process group if there is one (RANK/WORLD_SIZE set); pin the local GPU."""
    import torch
    import torch.distributed as dist

    world = world_size()
    if world <= 1:
        return Dist(device=device)
    global_rank, local = rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=global_rank, world=world, local_rank=local, device=device)


def share(items: list, d: Dist) -> list:
    """This rank's share of `items`: every WORLD-th item, starting at its rank (all of them in one process)."""
    return [x for i, x in enumerate(items) if i % d.world == d.rank]


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.device.type == "cuda" else dist.ReduceOp.SUM)
        if value.device.type != "cuda":  # gloo has no AVG
            value /= dist.get_world_size()
    return value


def broadcast_object(obj):
    import torch.distributed as dist

    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
