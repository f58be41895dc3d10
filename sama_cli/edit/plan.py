"""`sama edit --plan`: what an edit will cost before any weight is read (issue 17).

For a model (a preset such as `wan2.1-t2v-14b`, or a checkpoint's config.json), a clip and the edit's
options: the tokens of one forward, the FLOPs per step and per edit, and the peak memory of each stage
(text encoder, DiT, VAE) for the dtype, FP8 storage, offloading and guidance batching chosen, and whether
it fits a GPU of a given size.

Parameter bytes are exact: every part is built on the meta device (no memory, no weights) and its
parameters counted in the dtypes they will have, FP8 casting included. Activation peaks follow a rule
measured with torch's profiler on the CPU (tests/test_plan.py checks it on tiny models to 20%):
- DiT, per sample in a forward: L tokens x max(9.5 dim, 6 dim + 2 ffn) values: the attention half of a block
  holds ~9.5 copies of its width (normed input, q, k, v and their rotations, output), the feed-forward
  half the residual stream and its norm plus the two ffn-wide tensors (fc1's output and the GELU's);
  attention itself runs in memory-efficient kernels (no L x L matrix).
- Text encoder: the same rule over 2 prompts x 512 tokens with its own widths.
- VAE: one decoder chunk (Wan decodes latent frame by latent frame, 4 frames each, with a feature cache):
  4 x H x W x base_dim x VAE_WIDTHS (H x W: a 256x256 tile with --tiling), plus the decoded clip itself
  (decoding is the larger half: encoding peaks at ~7 base_dim widths).
FLOPs count a multiply-add as 2 and cover the DiT's linear layers and attention (the rest is <1%).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from sama_cli.core.errors import ConfigError
from sama_cli.model.config import ModelConfig

GIB = 2**30
ATTN_WIDTHS, FFN_WIDTHS, FFN_FFN = 9.5, 6.0, 2.0  # the DiT activation rule (module docstring)
VAE_WIDTHS = 10.5  # decoder peak per output pixel of a 4-frame chunk, in base_dim widths (measured; see above)
TEXT_TOKENS, PROMPTS = 512, 2  # Wan pads to 512; the prompt and the negative prompt

# google/umt5-xxl's encoder as Wan uses it (its config.json), and diffusers' AutoencoderKLWan defaults
# (= Wan2.1_VAE.pth): the parts a Wan2.1 preset brings
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
WAN_VAE: dict[str, Any] = {}


@dataclass
class PlanRequest:
    frames: int
    height: int
    width: int
    steps: int = 50
    branches: int = 2  # forwards a step needs: 1 without guidance, 2 classifier-free, 3 dual guidance
    batch_guidance: bool = True
    window: int | None = None  # latent frames are counted from pixel frames with the codec's factor
    overlap: int | None = None
    window_batch: int = 1
    clip_batch: int = 1  # clips denoised together (--clip-batch): the DiT's batch grows, the rest is per clip
    dtype: torch.dtype = torch.bfloat16
    fp8: bool = False
    offload: str = "none"  # none | model | group
    tiling: bool = False
    gpu_memory_gb: float | None = None
    ranks: int = 1  # torchrun processes sharing the edit (edit/multigpu.py); the figures are per rank
    parallel: str = "auto"  # auto | sequence | guidance, as `sama edit --parallel`


@dataclass
class Stage:
    name: str
    weights_bytes: int  # all of its parameters, in their stored dtypes
    resident_bytes: int  # of those, on the GPU while the stage runs
    activation_bytes: int
    peak_bytes: int = 0  # on the GPU while this stage runs (other stages' resident weights included)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()} | {
            k.replace("_bytes", "_gib"): round(v / GIB, 3) for k, v in dataclasses.asdict(self).items()
            if k.endswith("_bytes")}


@dataclass
class Plan:
    model: str
    tokens: int  # of one forward (one sample)
    target_tokens: int
    windows: int
    forwards_per_step: int
    batch_per_forward: int
    flops_per_forward: float  # one sample
    flops_per_step: float
    flops_per_edit: float
    stages: list[Stage] = field(default_factory=list)
    gpu_memory_gb: float | None = None
    ranks: int = 1
    layout: str = "one rank"
    flops_per_rank_per_edit: float = 0.0  # one rank's share (all of it on one rank)

    @property
    def peak_bytes(self) -> int:
        return max(s.peak_bytes for s in self.stages)

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory_gb is None else self.peak_bytes <= self.gpu_memory_gb * GIB

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "stages"}
        d["stages"] = [s.as_dict() for s in self.stages]
        d["peak_gib"] = round(self.peak_bytes / GIB, 3)
        d["fits"] = self.fits
        d["pflop_per_edit"] = round(self.flops_per_edit / 1e15, 3)
        return d


# ---- counting -----------------------------------------------------------------------------------------
def _bytes(module: torch.nn.Module, dtype: torch.dtype | None = None) -> int:
    """Parameter bytes as stored, or as they would be in `dtype`."""
    size = None if dtype is None else torch.finfo(dtype).bits // 8
    return sum(p.numel() * (size or p.element_size()) for p in module.parameters())


def dit_bytes(config: ModelConfig, dtype: torch.dtype, fp8: bool) -> tuple[int, int]:
    """(all parameter bytes, one block's) of the SAMA DiT in `dtype`, FP8-stored as `store_fp8` does it."""
    from sama_cli.model.transformer import SamaTransformer

    with torch.device("meta"):
        model = SamaTransformer(config).to(dtype)
    if fp8:
        from sama_cli.edit.speed import store_fp8

        store_fp8(model, dtype)
    return _bytes(model), _bytes(model.backbone.blocks[0])


def text_encoder_bytes(config: dict[str, Any] | None, dtype: torch.dtype) -> int:
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**(config or UMT5_XXL)))
    return _bytes(model, dtype)


def vae_bytes(config: dict[str, Any] | None, dtype: torch.dtype) -> tuple[int, dict[str, Any]]:
    from diffusers import AutoencoderKLWan

    with torch.device("meta"):
        vae = AutoencoderKLWan(**(config or WAN_VAE))
    return _bytes(vae, dtype), dict(vae.config)


def attention_flops(tokens: int, kv_tokens: int, dim: int) -> float:
    """q k^T and the weighted sum over the values: 2 x 2 x L x L_kv x dim."""
    return 4.0 * tokens * kv_tokens * dim


def dit_forward_flops(config: ModelConfig, tokens: int, target_tokens: int, text_tokens: int) -> float:
    """One sample's forward: per block self-attention (q, k, v, o and attention), cross-attention (q and o
    on the tokens, k and v on the text) and the feed-forward; then the patch embedding and the head."""
    d, f = config.dim, config.ffn_dim
    block = (8.0 * tokens * d * d + attention_flops(tokens, tokens, d)
             + 4.0 * tokens * d * d + 4.0 * text_tokens * d * d + attention_flops(tokens, text_tokens, d)
             + 4.0 * tokens * d * f)
    patch = math.prod(config.patch_size)
    embed = 2.0 * tokens * config.backbone_in_channels * patch * d
    head = 2.0 * target_tokens * d * config.out_channels * patch
    return config.num_layers * block + embed + head


def dit_activation_elements(config: ModelConfig, tokens: int) -> float:
    """Values alive at a forward's peak, one sample (module docstring)."""
    return tokens * max(ATTN_WIDTHS * config.dim, FFN_WIDTHS * config.dim + FFN_FFN * config.ffn_dim)


# ---- the plan -------------------------------------------------------------------------------------
@dataclass
class Parts:
    """What the plan needs of a model: the DiT config, the codec's factors, and the text encoder's and
    VAE's configs (None: UMT5-XXL and the Wan2.1 VAE; the toy model records `tiny` and `pixel`)."""

    name: str
    dit: ModelConfig
    temporal_factor: int = 4
    spatial_factor: int = 8
    text_encoder: dict[str, Any] | None | str = None
    vae: dict[str, Any] | None | str = None
    window_frames: int = 81  # the editor's default window: the release's 81 frames, or what the model trained on


def parts_for(model: str | None, base: str | None = None) -> Parts:
    """The parts of `model`: a preset name (`wan2.1-t2v-14b`, `wan2.1-t2v-1.3b`, `toy`), a sama checkpoint
    (its config.json, no weights), or release weights with `base`, a Wan diffusers folder (its configs);
    None: the embedded toy model. Only JSON is read."""
    import json
    from pathlib import Path

    from sama_cli.edit.loading import default_model
    from sama_cli.model.config import PRESETS, from_preset

    if model is None and base is None:
        model = default_model()
        if model is None:
            raise ConfigError("--plan: no model given (--model: a preset such as wan2.1-t2v-14b, or a checkpoint)")
    if model in PRESETS:
        if model == "toy":
            return Parts("toy", from_preset("toy"), 1, 4, "tiny", "pixel", 5)
        return Parts(model, from_preset(model))
    path = Path(model) if model is not None else None
    cfg_file = (path / "config.json") if path is not None and path.is_dir() else None
    if cfg_file is not None and cfg_file.is_file():
        doc = json.loads(cfg_file.read_text())
        if "config" in doc:  # a sama checkpoint
            meta = doc.get("meta", {})
            codec = meta.get("codec") or {}
            pixel = isinstance(codec, dict) and codec.get("name") == "pixel"
            return Parts(str(model), ModelConfig.from_dict(doc["config"]),
                         int(codec.get("temporal_factor", 4)) if isinstance(codec, dict) else 4,
                         int(codec.get("spatial_factor", 8)) if isinstance(codec, dict) else 8,
                         "tiny" if meta.get("text_encoder") == "tiny" else None, "pixel" if pixel else None,
                         int(meta.get("window_frames") or 81))
    if base is not None and (Path(base) / "transformer" / "config.json").is_file():
        root = Path(base)
        dit = ModelConfig.from_diffusers_config(json.loads((root / "transformer" / "config.json").read_text()))
        te = root / "text_encoder" / "config.json"
        vae = root / "vae" / "config.json"
        te_cfg = None
        if te.is_file():
            keys = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                    "relative_attention_num_buckets", "feed_forward_proj")
            te_cfg = {k: v for k, v in json.loads(te.read_text()).items() if k in keys}
        vae_cfg = None
        if vae.is_file():
            from diffusers import AutoencoderKLWan

            allowed = set(AutoencoderKLWan.__init__.__code__.co_varnames)
            vae_cfg = {k: v for k, v in json.loads(vae.read_text()).items() if k in allowed}
        return Parts(str(model or base), dit, text_encoder=te_cfg, vae=vae_cfg)
    raise ConfigError(f"--plan: {model or base!r} is neither a preset ({', '.join(PRESETS)}), a sama checkpoint "
                      "folder, nor --base a Wan diffusers folder")


def make_plan(parts: Parts, req: PlanRequest) -> Plan:
    """Memory figures are one rank's: with several, each holds the whole DiT, runs its guidance branches
    (guidance-parallel) on its part of the sequence (sequence-parallel: 1/S of the tokens, or every key and
    value with kv-gather)."""
    from sama_cli.edit.multigpu import choose_layout
    from sama_cli.edit.windows import WindowPlan, default_overlap, latent_frames

    if req.offload not in ("none", "model", "group"):
        raise ConfigError(f"--offload must be one of none, model, group, not {req.offload!r}")
    cfg, k, s = parts.dit, parts.temporal_factor, parts.spatial_factor
    pt, ph, pw = cfg.patch_size
    latent_t = latent_frames(req.frames + (-(req.frames - 1)) % k, k)  # padded to 1+4k as the editor does
    window = req.window or parts.window_frames
    win_t = min(latent_frames(window + (-(window - 1)) % k, k), latent_t)
    overlap = default_overlap(window, k) // k if req.overlap is None else req.overlap // k
    plan_w = WindowPlan.make(latent_t, win_t, min(overlap, win_t - 1), batch=req.window_batch)
    h, w = req.height // s, req.width // s
    target = (win_t // pt) * (h // ph) * (w // pw)
    source = target if cfg.source_mode == "token" else 0
    tokens = source + cfg.semantic_tokens + target
    per_forward = dit_forward_flops(cfg, tokens, target, cfg.text_len)
    windows = len(plan_w.spans)
    layout = choose_layout(req.ranks, req.branches, cfg.num_heads, req.parallel)
    branches = math.ceil(req.branches / layout.guidance)  # this rank's
    forwards_per_step = (1 if req.batch_guidance else branches) * math.ceil(windows / req.window_batch)
    batch = (branches if req.batch_guidance else 1) * min(req.window_batch, windows) * req.clip_batch
    per_step = per_forward * req.branches * windows
    per_rank_step = per_forward * branches * windows / layout.sequence

    act_bytes = torch.finfo(req.dtype).bits // 8
    dit_all, dit_block = dit_bytes(cfg, req.dtype, req.fp8)
    dit_resident = dit_all - (cfg.num_layers - 2) * dit_block if req.offload == "group" else dit_all
    dit_act = batch * dit_activation_elements(cfg, math.ceil(tokens / layout.sequence))
    if layout.attention == "kv-gather":  # every key and value of the sequence on each rank
        dit_act += batch * 2 * tokens * cfg.dim
    dit_act = int(dit_act * act_bytes)

    te_cfg = None if parts.text_encoder in (None, "umt5-xxl") else parts.text_encoder
    stages: list[Stage] = []
    if isinstance(te_cfg, str):  # the toy model's tiny encoder: a few MB, counted as nothing
        te_all, te_act = 0, 0
    else:
        te_all = text_encoder_bytes(te_cfg, req.dtype)
        c = te_cfg or UMT5_XXL
        te_act = int(PROMPTS * TEXT_TOKENS * (FFN_WIDTHS * c["d_model"] + 3 * c["d_ff"]) * act_bytes)
    stages.append(Stage("text encoder", te_all, te_all, te_act))
    stages.append(Stage("DiT", dit_all, dit_resident, dit_act))
    if isinstance(parts.vae, str):  # the pixel codec: no weights, a reshape
        vae_all, vae_act = 0, 0
    else:
        vae_all, vcfg = vae_bytes(parts.vae, req.dtype)
        chunk_frames = k  # one latent frame decodes to `k` frames
        tile = (min(req.height, 256), min(req.width, 256)) if req.tiling else (req.height, req.width)
        clip = req.frames * req.height * req.width * 3
        vae_act = int((chunk_frames * tile[0] * tile[1] * vcfg["base_dim"] * VAE_WIDTHS + clip) * act_bytes)
    stages.append(Stage("VAE", vae_all, vae_all, vae_act))
    # on the GPU while a stage runs: its resident weights and activations, plus the other stages' weights
    # unless they wait on the CPU (--offload model / group)
    for st in stages:
        others = 0 if req.offload != "none" else sum(o.resident_bytes for o in stages if o is not st)
        st.peak_bytes = st.resident_bytes + st.activation_bytes + others
    return Plan(model=parts.name, tokens=tokens, target_tokens=target, windows=windows,
                forwards_per_step=forwards_per_step, batch_per_forward=batch, flops_per_forward=per_forward,
                flops_per_step=per_step, flops_per_edit=per_step * req.steps, stages=stages,
                gpu_memory_gb=req.gpu_memory_gb, ranks=layout.ranks, layout=layout.describe(),
                flops_per_rank_per_edit=per_rank_step * req.steps)


def plan_table(plan: Plan):
    """The plan for people: tokens and FLOPs, then a row per stage (GiB)."""
    from rich.table import Table

    t = Table(title=f"sama edit --plan: {plan.model}", show_edge=False)
    t.add_column("stage")
    for col in ("weights GiB", "on GPU GiB", "activations GiB", "peak GiB"):
        t.add_column(col, justify="right")
    for s in plan.stages:
        t.add_row(s.name, *(f"{v / GIB:.2f}" for v in (s.weights_bytes, s.resident_bytes, s.activation_bytes,
                                                       s.peak_bytes)))
    return t


def plan_summary(plan: Plan) -> str:
    fits = "" if plan.fits is None else (f"; fits {plan.gpu_memory_gb:g} GB" if plan.fits
                                         else f"; does NOT fit {plan.gpu_memory_gb:g} GB")
    ranks = ("" if plan.ranks == 1 else f"; on {plan.ranks} ranks ({plan.layout}): "
             f"{plan.flops_per_rank_per_edit / 1e15:.1f} PFLOP a rank, figures a rank")
    return (f"{plan.tokens:,} tokens a forward ({plan.target_tokens:,} target), {plan.windows} window(s), "
            f"{plan.forwards_per_step} forward(s) a step of batch {plan.batch_per_forward}; "
            f"{plan.flops_per_step / 1e15:.2f} PFLOP a step, {plan.flops_per_edit / 1e15:.1f} PFLOP an edit{ranks}; "
            f"peak {plan.peak_bytes / GIB:.1f} GiB{fits}")


def profiled_peak_bytes(fn) -> int:
    """The peak of the memory `fn()` allocates on the CPU beyond what exists when it starts, from torch's
    profiler (allocations and frees in time order): how the activation rules above were measured."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                 profile_memory=True) as prof:
        fn()
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak
