"""The SAMA model config: backbone dimensions plus the SAMA options, with named presets.

Presets are data in one place (`PRESETS`): the two Wan2.1-T2V sizes of docs/sama.md §2 and `tiny`, a
model that runs a forward in milliseconds on CPU for tests and the toy world. Every SAMA option defaults
to the released code's behaviour (docs/sama.md §9); the paper's variants are named alternatives.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sama_cli.core.errors import ConfigError

TIMESTEP_MODES = ("shared", "per_token")  # release: one scalar per sample; option: clean source at t=0
SEMANTIC_ROPE = ("zero", "identity")  # release: complex zero (q, k of semantic tokens vanish)
SOURCE_MODES = ("token", "channel")  # release default: source tokens in the sequence


@dataclass
class ModelConfig:
    # Backbone (names follow diffusers' WanTransformer3DModel where one exists).
    dim: int = 5120
    num_layers: int = 40
    num_heads: int = 40
    ffn_dim: int = 13824
    in_channels: int = 16  # latent channels of the codec (16 for the Wan VAE)
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    rope_max_seq_len: int = 1024
    # SAMA (docs/sama.md §3).
    semantic_dim: int = 1152  # SigLIP so400m feature width S
    semantic_mlp_hidden: int = 1024  # projector hidden width
    semantic_local_grid: int = 8  # 8x8 local tokens + 1 global per anchor frame
    anchor_frames: int = 1  # N anchor frames of the target
    timestep_mode: str = "shared"
    semantic_rope: str = "zero"
    source_mode: str = "token"
    text_len: int = 512  # text tokens the context is padded to
    preset: str = "custom"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried with checkpoints

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        self.validate()

    # ---- derived values -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def semantic_tokens_per_frame(self) -> int:
        return self.semantic_local_grid**2 + 1

    @property
    def semantic_tokens(self) -> int:
        """Semantic tokens per sample: 65 per anchor frame (docs/sama.md §3)."""
        return self.semantic_tokens_per_frame * self.anchor_frames

    @property
    def backbone_in_channels(self) -> int:
        """Channels the patch embedding sees: doubled when the source is concatenated on channels."""
        return self.in_channels * (2 if self.source_mode == "channel" else 1)

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"model config: {key} {why}")

        if self.dim % self.num_heads:
            raise bad("dim", f"{self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise bad("num_heads", f"gives an odd head dim {self.head_dim} (RoPE needs pairs)")
        if self.timestep_mode not in TIMESTEP_MODES:
            raise bad("timestep_mode", f"must be one of {TIMESTEP_MODES}, not {self.timestep_mode!r}")
        if self.semantic_rope not in SEMANTIC_ROPE:
            raise bad("semantic_rope", f"must be one of {SEMANTIC_ROPE}, not {self.semantic_rope!r}")
        if self.source_mode not in SOURCE_MODES:
            raise bad("source_mode", f"must be one of {SOURCE_MODES}, not {self.source_mode!r}")
        if len(self.patch_size) != 3:
            raise bad("patch_size", f"must have 3 entries (t, h, w), not {self.patch_size}")
        for key in ("num_layers", "ffn_dim", "in_channels", "out_channels", "semantic_dim", "anchor_frames"):
            if getattr(self, key) < 1:
                raise bad(key, "must be positive")

    # ---- (de)serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read model config ({e})") from None
        return cls.from_dict(data, where=str(path))

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ---- other formats --------------------------------------------------------------------------
    def diffusers_kwargs(self) -> dict[str, Any]:
        """Arguments for diffusers' WanTransformer3DModel."""
        return dict(
            patch_size=self.patch_size,
            num_attention_heads=self.num_heads,
            attention_head_dim=self.head_dim,
            in_channels=self.backbone_in_channels,
            out_channels=self.out_channels,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers,
            cross_attn_norm=self.cross_attn_norm,
            qk_norm=self.qk_norm,
            eps=self.eps,
            rope_max_seq_len=self.rope_max_seq_len,
        )

    @classmethod
    def from_diffusers_config(cls, cfg: dict[str, Any], **overrides: Any) -> ModelConfig:
        """From a diffusers `transformer/config.json` (WanTransformer3DModel)."""
        if cfg.get("image_dim") or cfg.get("added_kv_proj_dim"):
            raise ConfigError("this is an image-to-video Wan transformer; SAMA builds on Wan2.1-T2V")
        heads, head_dim = cfg.get("num_attention_heads", 40), cfg.get("attention_head_dim", 128)
        values = dict(
            dim=heads * head_dim,
            num_heads=heads,
            num_layers=cfg.get("num_layers", 40),
            ffn_dim=cfg.get("ffn_dim", 13824),
            in_channels=cfg.get("in_channels", 16),
            out_channels=cfg.get("out_channels") or cfg.get("in_channels", 16),
            patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
            text_dim=cfg.get("text_dim", 4096),
            freq_dim=cfg.get("freq_dim", 256),
            eps=cfg.get("eps", 1e-6),
            cross_attn_norm=cfg.get("cross_attn_norm", True),
            qk_norm=cfg.get("qk_norm", "rms_norm_across_heads"),
            rope_max_seq_len=cfg.get("rope_max_seq_len", 1024),
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_wan_config(cls, cfg: dict[str, Any], **overrides: Any) -> ModelConfig:
        """From an original Wan `config.json` (or the release's conformance metadata): dim, in_dim, ..."""
        if cfg.get("model_type", "t2v") != "t2v" or cfg.get("has_image_input"):
            raise ConfigError(f"Wan model_type {cfg.get('model_type')!r} is not text-to-video; SAMA builds on T2V")
        values: dict[str, Any] = dict(
            dim=cfg["dim"],
            num_heads=cfg["num_heads"],
            num_layers=cfg["num_layers"],
            ffn_dim=cfg["ffn_dim"],
            in_channels=cfg.get("in_dim", 16),
            out_channels=cfg.get("out_dim", 16),
            patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
            text_dim=cfg.get("text_dim", 4096),
            freq_dim=cfg.get("freq_dim", 256),
            eps=cfg.get("eps", 1e-6),
            text_len=cfg.get("text_len", 512),
        )
        for key in ("semantic_dim", "semantic_mlp_hidden"):
            if key in cfg:
                values[key] = cfg[key]
        values.update(overrides)
        return cls(**values)


# Presets (docs/sama.md §2). `tiny` keeps the real head layout rules (even head dim, 3-axis RoPE) at toy
# size: dim 48 / 4 heads of 12, the shape of the release's conformance model.
PRESETS: dict[str, dict[str, Any]] = {
    "wan2.1-t2v-14b": dict(dim=5120, num_layers=40, num_heads=40, ffn_dim=13824),
    "wan2.1-t2v-1.3b": dict(dim=1536, num_layers=30, num_heads=12, ffn_dim=8960),
    "tiny": dict(
        dim=48,
        num_layers=2,
        num_heads=4,
        ffn_dim=96,
        text_dim=32,
        freq_dim=32,
        semantic_dim=24,
        semantic_mlp_hidden=40,
        semantic_local_grid=2,
        text_len=16,
        rope_max_seq_len=256,
    ),
    # The toy world's model (docs/sama.md §8; `make demo`, the embedded default): pixel:s4 latents of
    # 32x32 RGB frames (48 channels). Three choices differ from the release, all for learning on two CPU cores:
    # - patch 1x1x1: each 4x4 pixel cell is one token (64 a frame). A 1x2x2 patch packs 192 values (384 with
    #   the source) into a token of width 256; trained that way, object edits stayed speckled after 18000
    #   steps, while with patch 1x1x1 the same model reached that accuracy in 2500 (the model card, item 4).
    # - dim 256 > the patch volume. A DiT has no skip from input to output, so with dim < patch volume the
    #   velocity cannot carry the noise of every channel: the unrepresented part of the starting noise is
    #   never removed and samples stay noisy, however long one trains.
    # - source_mode "channel": the source enters each target token (copying needs no attention); the
    #   release's token concatenation needed >10x the steps to learn to copy at high noise on this data.
    "toy": dict(
        dim=256,
        num_layers=4,
        num_heads=4,
        ffn_dim=512,
        in_channels=48,
        out_channels=48,
        text_dim=32,
        freq_dim=64,
        semantic_dim=24,
        semantic_mlp_hidden=64,
        semantic_local_grid=2,
        text_len=16,
        rope_max_seq_len=256,
        patch_size=(1, 1, 1),
        source_mode="channel",
    ),
}


def from_preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name with optional overrides: `from_preset("tiny", in_channels=12)`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
    values = {**PRESETS[name], "preset": name, **overrides}
    return ModelConfig.from_dict(values, where=f"preset {name}")
