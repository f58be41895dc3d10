"""Everything distributed, in one place: process groups, FSDP2 / DDP wrapping, rank helpers.

The rest of the code asks `Dist.is_main`, takes its `share` of a list and calls `barrier()`; the same code runs
with and without torchrun. Under `torchrun`, the backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sama_cli.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    """Join the torchrun process group if there is one (RANK/WORLD_SIZE set); pin the local GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def share(items: list, d: Dist) -> list:
    """This rank's share of `items`: every WORLD-th item, starting at its rank (all of them in one process)."""
    return [x for i, x in enumerate(items) if i % d.world == d.rank]


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.device.type == "cuda" else dist.ReduceOp.SUM)
        if value.device.type != "cuda":  # gloo has no AVG
            value /= dist.get_world_size()
    return value


def broadcast_object(obj):
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def choose_parallel(requested: str, d: Dist, num_params: int) -> str:
    """`auto`: none on one process; DDP for models small enough to replicate (< 1B params); else FSDP2."""
    if requested != "auto":
        if requested != "none" and not d.enabled:
            return "none"
        return requested
    if not d.enabled:
        return "none"
    return "ddp" if num_params < 1_000_000_000 else "fsdp"


def wrap(model: torch.nn.Module, mode: str, d: Dist, *, mixed_bf16: bool) -> torch.nn.Module:
    """Apply the chosen parallelism. FSDP2 shards every transformer block and then the root; with
    `mixed_bf16`, parameters compute in bf16 and gradients reduce in fp32 (parameters are loaded in
    fp32 first: diffusers keeps some layers in fp32, which FSDP2 refuses to shard with bf16 ones)."""
    if mode == "none":
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.device.index] if d.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if mode != "fsdp":
        raise ConfigError(f"unknown parallel mode {mode!r}")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(d.device.type, (d.world,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_bf16 \
        else MixedPrecisionPolicy()
    for block in model.backbone.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module itself, without a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return getattr(model, "module", model)
