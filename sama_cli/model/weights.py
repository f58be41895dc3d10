"""Every weight format a user will have, mapped onto `SamaTransformer`.

Key layouts:
- ours:          `backbone.<diffusers name>`, `type_embedding.weight`, `semantic_projector.*`, `semantic_head.*`
- diffusers:     a `WanTransformer3DModel` state dict (Wan-AI/Wan2.1-T2V-*-Diffusers, `transformer/`)
- wan-original:  Wan's own names (`blocks.0.self_attn.q.weight`, `head.head.weight`, ...)
- release:       wan-original + `segment_embedding.weight`, `siglip_feat_mlp.{norm,fc1,fc2}.*`,
                 `semantic_head.{norm,proj}.*` (the SAMA release / DiffSynth layout, docs/sama.md §3)
Original names are converted with diffusers' own converter; the inverse (for export back to the
release layout) is the table below, tested by round trip.

Models are built on the meta device and filled from the state dict, so a 14B checkpoint is never held
twice in memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sama_cli.core.console import info
from sama_cli.core.errors import WeightsError
from sama_cli.io.artifacts import atomic_path
from sama_cli.model.config import ModelConfig
from sama_cli.model.transformer import SamaTransformer, place

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "sama-checkpoint"

# release name prefix -> our module prefix (docs/sama.md §3)
RELEASE_EXTRAS = {
    "segment_embedding.": "type_embedding.",
    "siglip_feat_mlp.": "semantic_projector.",
    "semantic_head.": "semantic_head.",
}
# Prefixes that training wrappers put in front of keys (DDP, torch.compile, pipelines, ComfyUI).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.diffusion_model.", "diffusion_model.", "dit.", "model.")

# diffusers -> Wan original, applied in order (inverse of diffusers' convert_wan_transformer_to_diffusers
# for the text-to-video keys). diffusers' norm2 is Wan's affine cross-attention norm3.
_TO_ORIGINAL = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^(blocks\.\d+)\.attn1\.", r"\1.self_attn."),
    (r"^(blocks\.\d+)\.attn2\.", r"\1.cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
]


# ---- reading files ------------------------------------------------------------------------------
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _load_failure(e: Exception) -> str:
    """One line out of torch.load's page-long error: the unpickler's own reason when it gives one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    reason = next((ln for ln in lines if ln.startswith("WeightsUnpickler error:")), lines[0] if lines else "")
    return f"{type(e).__name__}: {reason.split('. ')[0].removeprefix('WeightsUnpickler error: ')}"


def load_pth(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a torch-pickled state dict (`.pth`/`.bin`), unwrapping `state_dict`/`module`/`model`.

    Only ever `weights_only=True`: a weights file must not run code. Files in torch's zip format are
    memory-mapped, so a 11 GB T5 or a 28 GB DiT is paged in as it is copied, not read up front."""
    import zipfile

    path = Path(path)
    try:
        # the legacy (pre-1.6) format cannot be mapped; it is still loaded with weights_only=True
        obj = torch.load(str(path), map_location=device, weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        raise WeightsError(f"cannot load with weights_only=True ({_load_failure(e)})", path=path) from None
    for key in ("state_dict", "module", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError("does not contain a state dict", path=path)
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def weight_files(path: str | Path) -> list[Path]:
    """The weight files behind `path`: a file, a shard index, or a folder of (sharded) weights."""
    p = Path(path)
    if not p.exists():
        raise WeightsError("no such file or folder", path=p)
    if p.is_file():
        if p.name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(p.read_text())["weight_map"].values()))
            except (KeyError, json.JSONDecodeError) as e:
                raise WeightsError(f"not a shard index ({e})", path=p) from None
            return [p.parent / s for s in shards]
        return [p]
    for pattern in ("diffusion_pytorch_model*.safetensors", "model*.safetensors", "*.safetensors", "*.pth", "*.bin"):
        found = sorted(f for f in p.glob(pattern) if f.is_file())
        if found:
            return found
    raise WeightsError("folder holds no .safetensors, .pth or .bin weights", path=p)


def read_state_dict(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint (single file, shard index or folder of shards)."""
    sd: dict[str, torch.Tensor] = {}
    for f in weight_files(path):
        if not f.is_file():
            raise WeightsError("shard listed in the index is missing", path=f)
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), framework="pt", device=device) as fh:
                    for k in fh.keys():
                        sd[k] = fh.get_tensor(k)
            except (SafetensorError, OSError) as e:
                raise WeightsError(f"unreadable safetensors file ({e})", path=f) from None
        elif f.suffix in PICKLE_SUFFIXES:
            sd.update(load_pth(f, device))
        else:
            raise WeightsError(f"unsupported weights file type {f.suffix!r}", path=f)
    return sd


def strip_wrappers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a prefix that every key shares (DDP `module.`, `model.diffusion_model.`, ...)."""
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


# ---- layouts ------------------------------------------------------------------------------------
def detect_layout(sd: dict[str, torch.Tensor]) -> str:
    keys = sd.keys()
    if any(k.startswith("backbone.") for k in keys):
        return "ours"
    if any(k.startswith(tuple(RELEASE_EXTRAS)) for k in keys):
        return "release"  # SAMA parts with (or without) Wan original backbone names
    if any(".self_attn." in k or k.startswith("head.head.") for k in keys):
        return "wan-original"
    if any(".attn1." in k or k.startswith("condition_embedder.") for k in keys):
        return "diffusers"
    raise WeightsError("unrecognised weight layout (neither Wan, diffusers, SAMA release nor sama keys)")


def original_to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan original backbone names -> diffusers names, with diffusers' own converter."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return convert_wan_transformer_to_diffusers(dict(sd))


def diffusers_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in _TO_ORIGINAL:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


def to_ours(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any supported layout -> our key names."""
    sd = strip_wrappers(sd)
    layout = detect_layout(sd)
    if layout == "ours":
        return sd
    extras = {}
    backbone = {}
    for k, v in sd.items():
        for rel, ours in RELEASE_EXTRAS.items():
            if k.startswith(rel):
                extras[ours + k[len(rel) :]] = v
                break
        else:
            backbone[k] = v
    if layout in ("release", "wan-original"):
        backbone = original_to_diffusers(backbone)
    return {**{f"backbone.{k}": v for k, v in backbone.items()}, **extras}


def to_release(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our key names -> the SAMA release layout (Wan original names + release extras)."""
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    out = diffusers_to_original(backbone)
    for k, v in sd.items():
        for rel, ours in RELEASE_EXTRAS.items():
            if k.startswith(ours):
                out[rel + k[len(ours) :]] = v
    return out


# ---- config inference ---------------------------------------------------------------------------
def infer_config(sd_ours: dict[str, torch.Tensor], head_dim: int = 128, **overrides: Any) -> ModelConfig:
    """A config from tensor shapes (our key names). The head count is not visible in the shapes:
    Wan uses head dim 128; pass `num_heads` for anything else."""
    try:
        pe = sd_ours["backbone.patch_embedding.weight"]  # (dim, C_in, pt, ph, pw)
        dim = pe.shape[0]
        layers = 1 + max(int(m.group(1)) for k in sd_ours if (m := re.match(r"backbone\.blocks\.(\d+)\.", k)))
        values: dict[str, Any] = dict(
            dim=dim,
            num_layers=layers,
            num_heads=overrides.pop("num_heads", None) or max(1, dim // head_dim),
            ffn_dim=sd_ours["backbone.blocks.0.ffn.net.0.proj.weight"].shape[0],
            in_channels=pe.shape[1],
            patch_size=tuple(pe.shape[2:]),
            text_dim=sd_ours["backbone.condition_embedder.text_embedder.linear_1.weight"].shape[1],
            freq_dim=sd_ours["backbone.condition_embedder.time_embedder.linear_1.weight"].shape[1],
            cross_attn_norm="backbone.blocks.0.norm2.weight" in sd_ours,
            qk_norm="rms_norm_across_heads" if "backbone.blocks.0.attn1.norm_q.weight" in sd_ours else None,
        )
        values["out_channels"] = sd_ours["backbone.proj_out.weight"].shape[0] // int(torch.tensor(values["patch_size"]).prod())
    except (KeyError, ValueError) as e:
        raise WeightsError(f"cannot infer the model shape from the weights (missing {e})") from None
    if "semantic_projector.fc1.weight" in sd_ours:
        fc1 = sd_ours["semantic_projector.fc1.weight"]
        values.update(semantic_dim=fc1.shape[1], semantic_mlp_hidden=fc1.shape[0])
    values.update(overrides)
    if values.get("source_mode") == "channel":
        values["in_channels"] //= 2
    return ModelConfig(**values)


# ---- loading into a model -----------------------------------------------------------------------
@dataclass
class LoadReport:
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)  # SAMA parts that came from init, not weights

    def summary(self) -> str:
        s = f"loaded {self.loaded} tensors, {len(self.missing)} missing, {len(self.unexpected)} unexpected"
        if self.missing:
            s += f"; missing: {name_some(self.missing)}"
        if self.unexpected:
            s += f"; unexpected (ignored): {name_some(self.unexpected)}"
        if self.initialised:
            s += f"; initialised fresh: {', '.join(sorted(self.initialised))}"
        return s


def name_some(keys: list[str], n: int = 3) -> str:
    """The first `n` keys and how many there are: enough to see which part of a model is concerned."""
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


_SAMA_PARTS = ("type_embedding.", "semantic_projector.", "semantic_head.")


def materialize(config: ModelConfig, sd_ours: dict[str, torch.Tensor], *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int = 0, allow_missing_backbone: bool = False,
                where: str = "weights") -> tuple[SamaTransformer, LoadReport]:
    """Build a model on the meta device and fill it from `sd_ours` (our key names).

    SAMA parts absent from the weights (a plain Wan base) are initialised as for new training: the
    type embedding at zero, projector and head with their default init from `seed`. Missing backbone
    weights are an error unless `allow_missing_backbone`. Shape mismatches are always an error.
    """
    with torch.device("meta"):
        model = SamaTransformer(config)
    expected = model.state_dict()
    report = LoadReport()
    for key, value in sd_ours.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{where}: shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model "
                f"{tuple(expected[key].shape)} (wrong preset or base for these weights?)"
            )
    missing = [k for k in expected if k not in sd_ours]
    report.missing = [k for k in missing if not k.startswith(_SAMA_PARTS)]
    if report.missing and not allow_missing_backbone:
        raise WeightsError(
            f"{where}: {len(report.missing)} backbone tensors missing: {name_some(report.missing)} "
            "(is this a complete Wan transformer, and the right size?)"
        )
    model.to_empty(device="cpu")
    # Non-persistent buffers (the RoPE tables) are computed, not stored: rebuild them off the meta device.
    model.backbone.rope = WanRotaryPosEmbed(config.head_dim, config.patch_size, config.rope_max_seq_len)
    _init_missing(model, missing, seed)
    with torch.no_grad():
        state = model.state_dict()
        for key, value in sd_ours.items():
            if key in state:
                state[key].copy_(value)
                report.loaded += 1
    report.initialised = sorted({k.split(".")[0] for k in missing if k.startswith(_SAMA_PARTS)})
    return place(model, device=device, dtype=dtype), report


def _init_missing(model: SamaTransformer, missing: list[str], seed: int) -> None:
    """Initialise, deterministically from `seed`, the parameters the weights did not provide: each
    owning module's own `reset_parameters`, then the release's init for the SAMA parts (zero type
    embedding so that step 0 equals the base model; head xavier + small bias)."""
    if not missing:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for owner in sorted({k.rsplit(".", 1)[0] for k in missing}):
                module = model.get_submodule(owner)
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:  # a bare parameter such as a block's scale_shift_table (diffusers: randn / sqrt(dim))
                    for name, param in module.named_parameters(recurse=False):
                        if f"{owner}.{name}" in missing:
                            param.normal_(0.0, param.shape[-1] ** -0.5)
            if "type_embedding.weight" in missing:
                torch.nn.init.zeros_(model.type_embedding.weight)
            if "semantic_head.proj.weight" in missing:
                torch.nn.init.xavier_uniform_(model.semantic_head.proj.weight)
                torch.nn.init.normal_(model.semantic_head.proj.bias, std=1e-3)


# ---- backbones: diffusers folders and original Wan files ----------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"cannot read JSON ({e})", path=path) from None


def load_backbone(spec: str | Path, **overrides: Any) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """A Wan2.1-T2V transformer as (config, state dict in our names), from
    - a diffusers-format root (`transformer/` subfolder) or a diffusers transformer folder;
    - a folder of original Wan files (`config.json` with `dim`, ... and `diffusion_pytorch_model*.safetensors`);
    - a single original or diffusers `.safetensors` file (shape-inferred config, head dim 128)."""
    p = Path(spec)
    if not p.exists():
        raise WeightsError("Wan base not found", path=p)
    if p.is_dir() and (p / "transformer" / CONFIG_NAME).is_file():
        p = p / "transformer"
    cfg_json = _read_json(p / CONFIG_NAME) if p.is_dir() and (p / CONFIG_NAME).is_file() else None
    sd = to_ours(read_state_dict(p))
    if any(not k.startswith("backbone.") for k in sd):
        info(f"{p}: base holds SAMA parts too; they are used")
    if cfg_json is None:
        return infer_config(sd, **overrides), sd
    if cfg_json.get("_class_name") == "WanTransformer3DModel" or "num_attention_heads" in cfg_json:
        return ModelConfig.from_diffusers_config(cfg_json, **overrides), sd
    if "dim" in cfg_json:
        return ModelConfig.from_wan_config(cfg_json, **overrides), sd
    raise WeightsError("config.json is neither a diffusers WanTransformer3DModel nor a Wan config", path=p / CONFIG_NAME)


# ---- our checkpoint format ----------------------------------------------------------------------
def is_checkpoint(path: str | Path) -> bool:
    """True for a sama checkpoint: a folder with our config.json + model.safetensors, or such a file."""
    p = Path(path)
    if p.is_dir():
        cfg = p / CONFIG_NAME
        return cfg.is_file() and (p / WEIGHTS_NAME).is_file() and _read_json(cfg).get("format") == FORMAT_TAG
    if p.suffix == ".safetensors" and p.is_file():
        try:
            with safe_open(str(p), framework="pt") as fh:
                return (fh.metadata() or {}).get("format") == FORMAT_TAG
        except (SafetensorError, OSError):
            return False
    return False


def save_checkpoint(model: SamaTransformer | dict[str, torch.Tensor], folder: str | Path,
                    config: ModelConfig | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write `folder/config.json` + `folder/model.safetensors` (config also embedded in the file's
    metadata, so the file alone loads). Both writes are atomic."""
    if isinstance(model, SamaTransformer):
        config, sd = model.config, model.state_dict()
    else:
        sd = model
    if config is None:
        raise ValueError("save_checkpoint needs a config with a bare state dict")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT_TAG, "config": config.to_dict(), "meta": meta or {}}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_TAG, "config": json.dumps(doc)})
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return folder


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    **overrides: Any) -> tuple[SamaTransformer, LoadReport, dict[str, Any]]:
    """Load our own checkpoint (folder or lone `model.safetensors`): (model, report, meta)."""
    p = Path(path)
    if p.is_dir():
        doc, weights = _read_json(p / CONFIG_NAME), p / WEIGHTS_NAME
    else:
        with safe_open(str(p), framework="pt") as fh:
            doc, weights = json.loads((fh.metadata() or {})["config"]), p
    if doc.get("format") != FORMAT_TAG:
        raise WeightsError("not a sama checkpoint (config.json has no format tag)", path=p)
    config = ModelConfig.from_dict({**doc["config"], **overrides}, where=str(p))
    sd = read_state_dict(weights)
    model, report = materialize(config, sd, device=device, dtype=dtype, where=str(p))
    if report.unexpected:
        raise WeightsError(f"{len(report.unexpected)} unexpected tensors: {name_some(report.unexpected)}", path=p)
    return model, report, doc.get("meta", {})


# ---- the one entry point for users --------------------------------------------------------------
def load_model(model: str | Path | None = None, base: str | Path | None = None, *,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, num_heads: int | None = None,
               seed: int = 0, **overrides: Any) -> tuple[SamaTransformer, LoadReport]:
    """Load a SAMA model from what the user has:
    - `model` = our checkpoint (folder or file): self-contained, `base` ignored;
    - `model` = SAMA weights in the release layout (file, shards or folder), on top of `base` (a Wan
      diffusers folder or original files) when given, else self-contained (the release ships full DiT
      weights; the head count is taken as dim/128 unless `num_heads` is given);
    - only `base`: a plain Wan2.1-T2V with fresh SAMA parts (zero type embedding), to start training.
    `overrides` set SAMA options (timestep_mode, semantic_rope, anchor_frames, ...); `seed` initialises
    the SAMA parts a plain base lacks."""
    if num_heads:
        overrides["num_heads"] = num_heads
    if model is not None and is_checkpoint(model):
        m, report, _ = load_checkpoint(model, device=device, dtype=dtype, **overrides)
        return m, report
    if model is None and base is None:
        raise WeightsError("nothing to load: pass a sama checkpoint, SAMA release weights, or a Wan base")
    sd: dict[str, torch.Tensor] = {}
    where = str(model or base)
    if base is not None:
        config, sd = load_backbone(base, **overrides)
    if model is not None:
        extra = to_ours(read_state_dict(model))
        if base is None:
            config = infer_config(extra, **overrides)
        elif "semantic_projector.fc1.weight" in extra:
            fc1 = extra["semantic_projector.fc1.weight"]
            config = config.replace(semantic_dim=fc1.shape[1], semantic_mlp_hidden=fc1.shape[0])
        sd.update(extra)
    m, report = materialize(config, sd, device=device, dtype=dtype, seed=seed, where=where)
    info(f"{where}: {report.summary()}")
    return m, report


def export_release(model: SamaTransformer, path: str | Path) -> Path:
    """Write the weights in the SAMA release layout (Wan original names + release extras), so that
    they run in the authors' code; the Wan-style config rides in the metadata."""
    return save_release(model.state_dict(), model.config, path)


def save_release(state_dict: dict[str, torch.Tensor], cfg: ModelConfig, path: str | Path) -> Path:
    """`export_release` for a state dict in our names (what training holds at its end)."""
    wan_cfg = {
        "model_type": "t2v", "dim": cfg.dim, "in_dim": cfg.in_channels, "out_dim": cfg.out_channels,
        "ffn_dim": cfg.ffn_dim, "num_heads": cfg.num_heads, "num_layers": cfg.num_layers,
        "text_dim": cfg.text_dim, "freq_dim": cfg.freq_dim, "eps": cfg.eps, "patch_size": list(cfg.patch_size),
        "text_len": cfg.text_len, "semantic_dim": cfg.semantic_dim, "semantic_mlp_hidden": cfg.semantic_mlp_hidden,
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in to_release(state_dict).items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "sama-release", "config": json.dumps(wan_cfg)})
    return path
