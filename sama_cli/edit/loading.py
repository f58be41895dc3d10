"""Assemble what `edit` (and other jobs) need from the user's specs: DiT, codec, text encoder.

A sama checkpoint may record the codec and text encoder it was trained with (`meta.codec`,
`meta.text_encoder`; relative paths resolve against the checkpoint folder), so a toy model edits with
no other flag; it may also record how to edit with it (`meta.working_size`, `meta.sampling`), which
becomes the editor's `defaults`. Real SAMA weights take them from `--base` (a Wan diffusers folder or
an original Wan release folder) or explicit specs; a lone DiT weights file as `--base` brings neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sama_cli.core.errors import ConfigError, WeightsError
from sama_cli.core.paths import TOY_MODEL
from sama_cli.core.runtime import resolve_device, resolve_dtype

if TYPE_CHECKING:  # imported where it is used: it brings diffusers, and default_model() needs none of it
    from sama_cli.edit.editor import Editor

NO_MODEL_HELP = (
    "no model given: pass --model (a sama checkpoint, or SAMA release weights with --base pointing at "
    "Wan2.1-T2V-14B), or --base alone for an untrained Wan start"
)


def _resolve_spec(spec: str | dict | None, folder: Path | None) -> str | None:
    """A spec recorded in a checkpoint: a path relative to its folder, a name like `pixel:s4` / `tiny`,
    or a codec description (its `spec`)."""
    if isinstance(spec, dict):
        spec = spec.get("spec")
    if spec is None or folder is None:
        return spec
    candidate = folder / spec
    return str(candidate) if candidate.exists() else spec


def default_model() -> str | None:
    """The model `sama edit` uses without --model/--base: $SAMA_DEFAULT_MODEL (a checkpoint path, or
    `none` to have none), else the embedded toy-world model shipped with the package."""
    env = os.environ.get("SAMA_DEFAULT_MODEL")
    if env is not None:
        return None if env.lower() in ("", "none") else env
    path = TOY_MODEL
    return str(path) if (path / "config.json").is_file() else None


OFFLOADS = ("none", "model", "group")


def load_editor(model: str | None = None, base: str | None = None, vae: str | None = None,
                text_encoder: str | None = None, *, device: str = "auto", dtype: str = "auto",
                offload: bool | str = False, text_encoder_cpu: bool = False, tiling: bool = False,
                fp8: bool = False, compile_blocks: bool = False,
                loras: list[tuple[str, float]] | None = None) -> Editor:
    """The editor for these specs on `device` in `dtype` (auto: bf16 on GPU, fp32 on CPU).

    offload: "model" (or True) keeps text encoder, DiT and VAE on the CPU, each moved to the device for its
    stage; "group" does that for the text encoder and VAE and streams the DiT's blocks one at a time
    (edit/speed.py). fp8: the DiT's weights stored in float8_e4m3fn, computed in `dtype`. compile_blocks:
    torch.compile on each DiT block. loras: LoRA files and their scales (model/lora.py), checked against the
    DiT and folded into its weights before anything else touches them (FP8 storage, offloading, compile)."""
    from sama_cli.core.console import info
    from sama_cli.edit.editor import Editor, ModelDefaults
    from sama_cli.model.text_encoder import load_text_encoder
    from sama_cli.model.vae import load_codec
    from sama_cli.model.weights import is_checkpoint, load_checkpoint, load_model

    offload = {True: "model", False: "none"}.get(offload, offload)  # type: ignore[arg-type]
    if offload not in OFFLOADS:
        raise ConfigError(f"--offload must be one of {', '.join(OFFLOADS)}, not {offload!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model is None and base is None:
        model = default_model()
        if model is None:
            raise ConfigError(NO_MODEL_HELP)
        info("using the embedded toy-world model: it edits 32x32 toy scenes (`sama synth`) and nothing else. For real "
             "videos: --model <SAMA release weights> --base <Wan2.1-T2V-14B folder> (see README)")
    home = "cpu" if offload != "none" else dev
    meta: dict = {}
    folder = None
    if model is not None and is_checkpoint(model):
        dit, _, meta = load_checkpoint(model, device=home, dtype=dt)
        folder = Path(model) if Path(model).is_dir() else Path(model).parent
    else:
        if base is not None and Path(base).is_file() and (vae is None or text_encoder is None):
            # checked before the DiT is read: that can take minutes for a 14B file
            raise ConfigError(f"{base}: a lone weights file holds only the DiT: pass --vae (e.g. Wan2.1_VAE.pth) and "
                              "--text-encoder (e.g. models_t5_umt5-xxl-enc-bf16.pth), or give the Wan folder as --base")
        dit, _ = load_model(model, base, device=home, dtype=dt)
    vae_spec = vae or _resolve_spec(meta.get("codec"), folder) or base
    te_spec = text_encoder or _resolve_spec(meta.get("text_encoder"), folder) or base
    if vae_spec is None or te_spec is None:
        raise ConfigError("this model records no VAE/text encoder: pass --vae and --text-encoder, or --base")
    from sama_cli.edit import speed

    lora_report: list[dict] = []
    if loras:
        from sama_cli.model.lora import load_loras, merge

        lora_report = load_loras(dit, loras)
        merge(dit)
    if fp8:
        speed.store_fp8(dit, dt)
    if offload == "group":
        speed.offload_blocks(dit, dev)
    if compile_blocks:
        speed.compile_blocks(dit)
    codec = load_codec(vae_spec, device=home, dtype=torch.float32 if dev.type == "cpu" else dt, tiling=tiling)
    text_device = torch.device("cpu") if text_encoder_cpu else dev
    te = load_text_encoder(te_spec, device="cpu" if (offload != "none" or text_encoder_cpu) else dev,
                           dtype=torch.float32 if text_device.type == "cpu" else dt)
    if codec.latent_channels != dit.config.in_channels:
        raise WeightsError(f"the model expects {dit.config.in_channels} latent channels but the VAE {vae_spec!r} "
                           f"gives {codec.latent_channels}: model and VAE do not belong together")
    editor = Editor(dit, codec, te, device=dev, offload=offload != "none", text_device=text_device,
                    defaults=ModelDefaults.from_meta(meta), dit_resident=offload == "group")
    editor.loras = lora_report
    return editor
