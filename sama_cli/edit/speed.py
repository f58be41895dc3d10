"""Faster or smaller edits with diffusers' own machinery on our SAMA forward (issue 17).

Every switch here acts on the Wan backbone inside `SamaTransformer` (a diffusers `WanTransformer3DModel`),
whose blocks our forward calls one by one; the SAMA parts around it (type embedding, semantic projector
and head) are small and stay as they are.

- `store_fp8`: weights stored in float8_e4m3fn and cast up to the compute dtype layer by layer
  (`enable_layerwise_casting`; Wan's own skip list keeps the patch embedding, condition embedder and norms).
- `offload_blocks`: block-level group offloading (`apply_group_offloading`), each block on the GPU only
  while it runs, the next one prefetched on a side stream on CUDA; the rest of the model stays resident.
- `compile_blocks`: `torch.compile` per transformer block (`compile_repeated_blocks`): every block has the
  same code, so one graph serves all of them.
- `CacheSpec` / `enable_cache`: step caching (`FirstBlockCacheConfig`, `TaylorSeerCacheConfig`), with the
  state kept per cache context: the sampler names one per guidance branch and window (Guided).
- `EvalCounter`: how many self-attention evaluations ran, to report the fraction a cache skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sama_cli.core.errors import ConfigError
from sama_cli.model.transformer import SamaTransformer

# --cache NAME[:value]: the value is FBC's threshold on the first block's relative residual change, and
# TaylorSeer's interval (a full forward every `interval` steps after its warm-up, predictions between).
# Defaults: the most skipped at <= 0.01 toy-oracle accuracy lost, 20 steps (docs/caches.md, `make caches`)
CACHES = {"fbc": ("threshold", 0.2), "taylorseer": ("interval", 4)}
TAYLORSEER_MODULES = r"blocks\.\d+\.(attn1|attn2|ffn)"  # predicted between full steps: each block's three parts


@dataclass(frozen=True)
class CacheSpec:
    name: str
    value: float

    @classmethod
    def parse(cls, text: str) -> CacheSpec:
        """`fbc`, `fbc:0.08`, `taylorseer:3`; a one-line error naming what is wrong otherwise."""
        name, _, value = text.strip().lower().partition(":")
        if name not in CACHES:
            raise ConfigError(f"--cache {text!r}: unknown cache (known: {', '.join(CACHES)})")
        what, default = CACHES[name]
        try:
            number = float(value) if value else float(default)
        except ValueError:
            raise ConfigError(f"--cache {text!r}: the {what} must be a number, not {value!r}") from None
        if number <= 0 or (name == "taylorseer" and number != int(number)):
            raise ConfigError(f"--cache {text!r}: the {what} must be a positive {'integer' if name != 'fbc' else 'number'}")
        return cls(name, number)

    def __str__(self) -> str:
        return f"{self.name}:{self.value:g}"

    def config(self, steps: int, dtype: torch.dtype = torch.float32):
        from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

        if self.name == "fbc":
            return FirstBlockCacheConfig(threshold=self.value)
        # full forwards for the first 2 steps (the trajectory moves most there), then one every `interval`;
        # its default patterns (`^blocks.*attn`, matched whole) miss Wan's attn1/attn2, so they are named here
        return TaylorSeerCacheConfig(cache_interval=int(self.value), disable_cache_before_step=min(2, steps),
                                     taylor_factors_dtype=dtype, cache_identifiers=[TAYLORSEER_MODULES])


def enable_cache(model: SamaTransformer, spec: CacheSpec | None, steps: int) -> None:
    """Put `spec`'s cache hooks on the backbone's blocks (or take any off, with None)."""
    bb = model.backbone
    if bb.is_cache_enabled:
        bb.disable_cache()
    if spec is not None:
        bb.enable_cache(spec.config(steps, model.dtype))


class EvalCounter:
    """Counts the self-attention evaluations of the backbone's blocks (a forward hook on each block's
    `attn1.to_q`, which runs only when the block or its attention is computed, not when a cache
    serves it)."""

    def __init__(self, model: SamaTransformer):
        self.blocks = len(model.backbone.blocks)
        self.count = 0
        self._handles = [b.attn1.to_q.register_forward_hook(self._hit) for b in model.backbone.blocks]

    def _hit(self, *_: object) -> None:
        self.count += 1

    def skipped(self, forwards: int) -> float:
        """The fraction of `forwards` x blocks that did not run."""
        total = forwards * self.blocks
        return 0.0 if total == 0 else 1.0 - self.count / total

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def store_fp8(model: SamaTransformer, compute_dtype: torch.dtype) -> None:
    """Backbone weights stored in float8_e4m3fn, computed in `compute_dtype` (diffusers' layerwise casting:
    each layer is cast up just before it runs and back after). Wan's skip list (patch embedding, condition
    embedder, norms) keeps those layers in `compute_dtype`."""
    model.backbone.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def offload_blocks(model: SamaTransformer, device: torch.device) -> None:
    """Block-level group offloading: the blocks live on the CPU and come to `device` one at a time while
    they run (the next one prefetched on a CUDA stream); everything else moves to `device` for good.

    diffusers' `enable_group_offload` on the backbone would also hook the backbone's own `forward` to bring
    its other layers over, but our forward calls those layers directly, so the blocks are offloaded
    through a holder module that owns only them."""
    from diffusers.hooks import apply_group_offloading
    from diffusers.utils import is_accelerate_available

    if not is_accelerate_available():  # diffusers moves each group's inputs with accelerate's send_to_device
        raise ConfigError("--offload group needs accelerate: pip install 'accelerate>=1.0'")
    device = torch.device(device)
    blocks = model.backbone.blocks
    model.backbone.blocks = torch.nn.ModuleList()  # the rest of the model to the device, the blocks stay put
    try:
        model.to(device)
    finally:
        model.backbone.blocks = blocks
    holder = torch.nn.Module()
    holder.blocks = blocks
    apply_group_offloading(holder, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1,
                           use_stream=device.type == "cuda", non_blocking=device.type == "cuda")


def compile_blocks(model: SamaTransformer, **kwargs) -> None:
    """`torch.compile` on each transformer block (diffusers' regional compilation): one graph for the 40
    identical blocks of a 14B model, compiled on the first edit."""
    model.backbone.compile_repeated_blocks(**kwargs)
