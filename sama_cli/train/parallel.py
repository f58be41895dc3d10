"""Model parallelism for training: none, DDP, or FSDP2 over the transformer blocks.

Process groups and ranks live in sama_cli/core/distributed.py; this module builds the model on each rank
(under FSDP2 only rank 0 reads the weights) and wraps it. The training loop calls it and nothing else
distributed beyond what core offers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sama_cli.core.distributed import Dist, broadcast_object
from sama_cli.core.errors import ConfigError
from sama_cli.model.config import ModelConfig
from sama_cli.model.transformer import SamaTransformer


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


def build_and_choose(build: Callable[[], SamaTransformer], requested: str, d: Dist) -> tuple[SamaTransformer, str]:
    """The model (`build()` makes it in fp32 on the CPU) and the parallel mode (`requested`: auto | none | ddp |
    fsdp). Under FSDP only rank 0 reads the weights into CPU memory; the
    other ranks build the same model on the meta device (no memory) and receive their shards from rank 0
    after sharding (`fill_sharded_from_rank0`): host RAM holds one copy of the model, not one per rank."""
    if not d.enabled:
        model = build()
        return model, choose_parallel(requested, d, model.num_parameters())
    model = build() if d.is_main else None
    config_dict, n_params = broadcast_object((model.config.to_dict(), model.num_parameters()) if d.is_main else None)
    mode = choose_parallel(requested, d, n_params)
    if model is None:
        if mode == "fsdp":
            with torch.device("meta"):
                model = SamaTransformer(ModelConfig.from_dict(config_dict))
        else:
            model = build()  # DDP keeps a full replica on every rank
    return model, mode


def fill_sharded_from_rank0(net: torch.nn.Module, full_sd: dict[str, torch.Tensor], d) -> None:
    """After fully_shard: give every rank its shards of rank 0's weights. Ranks built on meta first get
    real (uninitialised) storage and their RoPE tables, which are computed, not stored."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(p.is_meta for p in net.parameters()) or any(b.is_meta for b in net.buffers()):
        net.to_empty(device=d.device)
        cfg = net.config
        fresh = WanRotaryPosEmbed(cfg.head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        with torch.no_grad():
            for (_, buf), (_, value) in zip(net.backbone.rope.named_buffers(), fresh.named_buffers(), strict=True):
                buf.copy_(value)
    set_model_state_dict(net, full_sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
