"""LoRA on the SAMA DiT through peft (issue 18): training adapters, their file, and editing with them.

The adapters sit on the Wan blocks' linear layers (diffusers' `PeftAdapterMixin.add_adapter` on the
backbone, which injects peft's LoRA layers); the three SAMA modules (type embedding, semantic projector
and head) are small and may train fully beside them.

The file is what diffusers' Wan pipelines load (`WanPipeline.load_lora_weights`, or
`WanTransformer3DModel.load_lora_adapter(path, prefix="transformer")`): safetensors with peft's keys under
`transformer.` (`transformer.blocks.0.attn1.to_q.lora_A.weight`) and the peft config in the metadata key
`lora_adapter_metadata` (keys under `transformer.` too, as diffusers' pipelines write them). SAMA's fully
trained modules ride along under `sama.` (diffusers ignores them); the metadata also names the base model
(`sama_base`) and holds the recipe (`sama_recipe`). At scale s an adapter adds s x (alpha / r) B A to its
layer, and a fully trained SAMA tensor becomes base + s (trained - base): scale 0 is the base exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.errors import ConfigError, InputError

# Wan blocks: self-attention, cross-attention (q, k, v, out) and the feed-forward's two linears
DEFAULT_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                   "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")
SAMA_MODULES = ("type_embedding", "semantic_projector", "semantic_head")
PREFIX, SAMA_PREFIX = "transformer.", "sama."
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
BASE_DTYPES = ("compute", "bf16", "fp8")
ADAPTER = "default"


@dataclass
class LoraSpec:
    """What a recipe's `lora:` section says (train/recipe.py LoraSection carries the same fields)."""

    rank: int = 16
    alpha: float | None = None  # None: = rank (scaling 1)
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    train_sama_modules: bool = True
    base_dtype: str = "compute"  # compute | bf16 | fp8: how the frozen base weights are stored

    def config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha or self.rank, lora_dropout=self.dropout,
                          target_modules=list(self.targets), init_lora_weights=True)


def add_lora(model, spec: LoraSpec, compute_dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
    """Freeze `model`, store its base weights as `spec.base_dtype` says, and add trainable adapters (and
    the SAMA modules, when `train_sama_modules`). Only these get gradients and optimizer state. The adapters'
    A matrices start random from `seed` (B at zero: the model starts as the base)."""
    names = [n for n, _ in model.backbone.named_modules()]
    for target in spec.targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            raise ConfigError(f"lora.targets: {target!r} matches no layer of the model (e.g. {DEFAULT_TARGETS[0]!r})")
    if spec.base_dtype not in BASE_DTYPES:
        raise ConfigError(f"lora.base_dtype must be one of {', '.join(BASE_DTYPES)}, not {spec.base_dtype!r}")
    model.requires_grad_(False)
    if spec.base_dtype != "compute":  # before the adapters: they stay in fp32, only the base is cast
        storage = torch.bfloat16 if spec.base_dtype == "bf16" else torch.float8_e4m3fn
        model.backbone.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute_dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.backbone.add_adapter(spec.config(), adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        if ".lora_" in name:
            p.requires_grad_(True)
    if spec.train_sama_modules:
        for m in SAMA_MODULES:
            getattr(model, m).requires_grad_(True)


def file_key(param_name: str) -> str | None:
    """A trainable parameter's key in the LoRA file (None: not part of it).
    `backbone.blocks.0.attn1.to_q.lora_A.default.weight` -> `transformer.blocks.0.attn1.to_q.lora_A.weight`;
    `type_embedding.weight` -> `sama.type_embedding.weight`."""
    if param_name.startswith("backbone.") and ".lora_" in param_name:
        return PREFIX + param_name.removeprefix("backbone.").replace(f".{ADAPTER}.", ".")
    if param_name.split(".")[0] in SAMA_MODULES:
        return SAMA_PREFIX + param_name
    return None


def adapter_tensors(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LoRA file's tensors from trainable parameters by name (live ones, or their EMA)."""
    out = {}
    for name, t in named.items():
        key = file_key(name)
        if key is not None:
            out[key] = t.detach().to("cpu", torch.float32).contiguous()
    return out


def save_lora(tensors: dict[str, torch.Tensor], path: str | Path, spec: LoraSpec, *, base: str | None,
              recipe_yaml: str | None = None) -> Path:
    """Write the LoRA file (atomically): tensors from `adapter_tensors`, peft's config in the metadata."""
    from safetensors.torch import save_file

    from sama_cli.io.artifacts import atomic_path

    config = spec.config().to_dict()
    config = {PREFIX + k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    metadata = {"format": "pt", METADATA_KEY: json.dumps(config, sort_keys=True, default=str),
                "sama_base": base or "", "sama_recipe": recipe_yaml or ""}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError("no such LoRA file", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"not a safetensors LoRA file ({type(e).__name__}: {e})", path=path) from None


def check_lora(tensors: dict[str, torch.Tensor], model, path: str | Path) -> None:
    """Every key names a layer of `model` with matching shapes: else a one-line error naming the key."""
    modules = dict(model.backbone.named_modules())
    params = dict(model.named_parameters())
    if not any(k.startswith(PREFIX) for k in tensors):
        raise InputError("holds no `transformer.` LoRA tensors (not a SAMA/Wan LoRA?)", path=path)
    for key, t in tensors.items():
        if key.startswith(SAMA_PREFIX):
            name = key.removeprefix(SAMA_PREFIX)
            if name not in params or tuple(params[name].shape) != tuple(t.shape):
                have = tuple(params[name].shape) if name in params else "nothing"
                raise InputError(f"{key} is {tuple(t.shape)}, this model has {have}: a LoRA for another model", path=path)
            continue
        if not key.startswith(PREFIX) or (".lora_A." not in key and ".lora_B." not in key):
            raise InputError(f"{key} is not a LoRA tensor this loader knows", path=path)
        layer = key.removeprefix(PREFIX).split(".lora_")[0]
        base = modules.get(layer)
        base = getattr(base, "base_layer", base)
        if not isinstance(base, torch.nn.Linear):
            raise InputError(f"{key}: this model has no linear layer {layer} (a LoRA for another architecture?)",
                             path=path)
        want = base.in_features if ".lora_A." in key else base.out_features
        got = t.shape[1] if ".lora_A." in key else t.shape[0]
        if t.dim() != 2 or got != want:
            raise InputError(f"{key} is {tuple(t.shape)}, but {layer} is {base.in_features} -> {base.out_features} "
                             "here: a LoRA for another model size", path=path)


def parse_lora_arg(text: str) -> tuple[str, float]:
    """`FILE[:scale]` -> (FILE, scale); scale 1 when not given."""
    path, sep, scale = text.rpartition(":")
    if sep and path:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0


def load_loras(model, loras: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Put each LoRA file on `model` at its scale (diffusers' `load_lora_adapter` with the file's peft
    config; several adapters add up, and so do their fully trained SAMA tensors: base + sum of s (trained -
    base), whatever the order). Returns what was loaded, for the edit summary."""
    loaded = []
    names, scales = [], []
    base: dict[str, torch.Tensor] = {}  # SAMA tensors before any file: each file's change is against these
    for i, (path, scale) in enumerate(loras):
        tensors, meta = read_lora(path)
        check_lora(tensors, model, path)
        name = f"lora{i}"
        config = json.loads(meta[METADATA_KEY]) if meta.get(METADATA_KEY) else None
        lora_sd = {k: v for k, v in tensors.items() if k.startswith(PREFIX)}
        model.backbone.load_lora_adapter(lora_sd, prefix=PREFIX.rstrip("."), adapter_name=name, metadata=config)
        with torch.no_grad():
            params = dict(model.named_parameters())
            for key, t in tensors.items():
                if key.startswith(SAMA_PREFIX):
                    param = key.removeprefix(SAMA_PREFIX)
                    p, b = params[param], base.setdefault(param, params[param].detach().clone())
                    p.add_(scale * (t.to(p.dtype) - b))  # base + s (trained - base): s = 0 leaves the base as is
        names.append(name)
        scales.append(scale)
        loaded.append({"file": str(path), "scale": scale, "tensors": len(tensors), "base": meta.get("sama_base", "")})
    if names:
        model.backbone.set_adapters(names, weights=scales)
    return loaded


def merge(model) -> None:
    """Fold the active adapters (at their scales) into the base weights and drop the LoRA layers."""
    model.backbone.fuse_lora(lora_scale=1.0)
    model.backbone.unload_lora()
