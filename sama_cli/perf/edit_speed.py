"""`make bench` row for editing: seconds per denoising step and the share of wall time outside the
DiT (IO, VAE, text) for a tiny model at a fixed size, at 50 steps."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch


def edit_rows(quick: bool = False) -> list[dict]:
    """Two DiT sizes on the same tiny VAE: the share outside the DiT is a ratio of model costs, so it is
    shown for the tiny DiT the issue names and for a mid-size one closer to real proportions."""
    from sama_cli.model.config import from_preset

    mid = from_preset("tiny", dim=512, num_heads=8, num_layers=4, ffn_dim=1536)
    return [_edit_row("tiny", from_preset("tiny"), quick), _edit_row("mid (dim 512, 4 layers)", mid, quick)]


def _edit_row(name: str, config, quick: bool) -> dict:
    from sama_cli.edit.editor import EditSettings, edit_file
    from sama_cli.edit.loading import load_editor
    from sama_cli.edit.sampler import SamplingConfig
    from sama_cli.io.video import write_video
    from sama_cli.model.text_encoder import save_tiny_text_encoder
    from sama_cli.model.transformer import build_model
    from sama_cli.model.vae import tiny_vae
    from sama_cli.model.weights import save_checkpoint

    steps = 10 if quick else 50
    tmp = Path(tempfile.mkdtemp())
    try:
        ckpt = save_checkpoint(build_model(config, seed=0), tmp / "ckpt",
                               meta={"codec": "vae", "text_encoder": "."})
        tiny_vae().save_pretrained(ckpt / "vae")
        save_tiny_text_encoder(ckpt)
        clip = torch.randint(0, 256, (17, 64, 64, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        write_video(tmp / "in.mp4", clip, 16)
        editor = load_editor(model=str(ckpt), device="cpu")
        report = edit_file(editor, tmp / "in.mp4", "make it winter", tmp / "out.mp4", SamplingConfig(steps=steps),
                           EditSettings(size=(64, 64)), audio=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = report.seconds["total"]
    outside = total - report.seconds["denoise"]
    share = outside / total * 100
    return {"area": "edit", "what": f"{name} DiT + tiny VAE, 17x64x64, {steps} steps, CFG batched, CPU",
             "value": f"{report.seconds_per_step * 1e3:.1f} ms/step; outside the DiT {share:.1f}% "
                      f"(io {report.seconds['io']:.2f}s, vae {report.seconds['encode'] + report.seconds['decode']:.2f}s, "
                      f"text {report.seconds['text']:.2f}s of {total:.2f}s)",
             "target": "outside-DiT share <= 10% at 50 steps", "ok": share <= 10}
