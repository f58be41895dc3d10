"""Synthetic cached artifacts for training tests: a learnable edit (target = flipped source) in the
tiny model's latent shape, with text embeddings and anchors, written as real artifacts + manifest."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sama_cli.io.artifacts import save_artifact


def write_artifact_manifest(folder: Path, n: int = 8, seed: int = 0, frames: int = 2, size: int = 4,
                            with_images: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        t = 1 if (with_images and i % 4 == 0) else frames
        src = torch.randn(16, t, size, size, generator=g)
        tgt = -src.flip(-1)  # the "edit": negate and mirror
        text = torch.randn(3 + i % 3, 32, generator=g)
        anchors = tgt.mean(dim=(1, 2, 3))[:, None].expand(16, 24)[:5].clone()  # (5, 24), tied to the target
        paths = {}
        for name, kind, key, tensor, meta in (
            ("source_latents", "latents", "latents", src, {"codec": {"name": "test"}}),
            ("target_latents", "latents", "latents", tgt, {"codec": {"name": "test"}}),
            ("text", "text-embeds", "embeds", text, {"encoder": "test-text"}),
            ("anchors", "anchors", "tokens", anchors, {"encoder": "test-siglip"}),
        ):
            p = folder / f"{i}.{name}.safetensors"
            save_artifact(p, {key: tensor}, kind, meta)
            paths[name] = p.name
        kind = "image_edit" if t == 1 else "video_edit"
        rows.append({"id": f"s{i}", "kind": kind, "source": paths["source_latents"], "target": paths["target_latents"],
                     "instruction": "flip it", "artifacts": paths})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def tiny_recipe_overrides(manifest: Path, out: Path, steps: int, **extra: object) -> list[str]:
    base = {
        "model.preset": "tiny", "data.manifests": f"[{manifest}]", "data.video_batch": 2, "data.image_batch": 4,
        "optim.lr": 2e-3, "optim.warmup_steps": 2, "train.steps": steps, "train.out_dir": str(out),
        "train.log_every": 1, "train.save_every": 3, "train.keep_last": 2, "train.ema_decay": 0.9,
        "train.device": "cpu", "train.seed": 3,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
