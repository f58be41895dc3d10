"""Model parallelism for training: none, DDP, or FSDP2 over the transformer blocks.

Process groups and ranks live in sama_cli/core/distributed.py; this module only wraps models.
"""

from __future__ import annotations

import torch

from sama_cli.core.distributed import Dist
from sama_cli.core.errors import ConfigError


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
