"""Synthetic cached artifacts for training tests: a learnable edit (target = flipped source) in the
tiny model's latent shape, with text embeddings and anchors, written as real artifacts + manifest; and
helpers to force anomalies at chosen steps and to read a whole checkpoint back."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from sama_cli.io.artifacts import save_artifact


def write_artifact_manifest(folder: Path, n: int = 8, seed: int = 0, frames: int = 2, size: int = 4,
                            with_images: bool = False, prefix: str = "s") -> Path:
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
        rows.append({"id": f"{prefix}{i}", "kind": kind, "source": paths["source_latents"], "target": paths["target_latents"],
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


def scale_velocity_at(draw: Callable, factors: dict[int, float]) -> Callable:
    """A `draw_micro_batch` that multiplies the flow-matching target of micro-step `tick` by
    `factors[tick]`: x10 makes the loss ~100x (a loss spike), x1000 a grad norm far above the skip
    threshold, x nan a non-finite loss. Keyed by tick, so a resumed run sees the same anomalies."""

    def forced(dataset, sampler, recipe, tick, d, text_len, device):
        mb = draw(dataset, sampler, recipe, tick, d, text_len, device)
        if tick in factors:
            mb.velocity = mb.velocity * factors[tick]
        return mb

    return forced


def checkpoint_contents(folder: Path) -> dict:
    """Everything a DCP checkpoint folder holds (model, optim, ema) as one nested dict of CPU tensors,
    plus trainer.json and the RNG state."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(folder, Path(tmp) / "all.pt")
        contents = torch.load(Path(tmp) / "all.pt", weights_only=False)
    contents["trainer"] = json.loads((folder / "trainer.json").read_text())
    contents["rng"] = torch.load(folder / "rng_rank0.pt", weights_only=True)
    return contents


def assert_identical(a: object, b: object, where: str = "") -> None:
    """Nested dicts / lists of tensors and numbers equal bit for bit (NaN equals NaN in the same place)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b) if isinstance(b, dict) else b}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, type(a)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"
