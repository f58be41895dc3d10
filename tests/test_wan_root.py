"""The original Wan2.1 release layout as `--base` (Wan-AI/Wan2.1-T2V-14B, not the -Diffusers repo):

    config.json                                   the DiT's Wan config
    diffusion_pytorch_model-0000i-of-0000n.safetensors (+ index)   the DiT in Wan's names
    Wan2.1_VAE.pth                                the VAE in Wan's names
    models_t5_umt5-xxl-enc-bf16.pth               the UMT5-XXL encoder in Wan's T5 names
    google/umt5-xxl/                              its tokenizer

each written tiny by the test, and used with SAMA release weights end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REAL_FIXTURES
from helpers_encoders import diffusers_vae_to_original, save_wan_t5, tiny_wan_umt5
from safetensors.torch import save_file
from test_weights import wan_config_json, write_shards

from sama_cli.core.errors import ConfigError
from sama_cli.edit.editor import EditSettings
from sama_cli.edit.loading import load_editor
from sama_cli.edit.sampler import SamplingConfig
from sama_cli.io.video import probe, read_video, resize_frames
from sama_cli.model.config import from_preset
from sama_cli.model.text_encoder import tiny_tokenizer
from sama_cli.model.transformer import build_model
from sama_cli.model.vae import tiny_vae
from sama_cli.model.weights import diffusers_to_original, export_release

REPO = Path(__file__).resolve().parent.parent
CLIP = REAL_FIXTURES / "remove-04-source.mp4"


def original_backbone(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in diffusers_to_original(model.backbone.state_dict()).items()}


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict[str, Path]:
    """The same tiny Wan (DiT, VAE, T5) as an original release folder and as a diffusers root, and
    SAMA weights in the release layout for that DiT."""
    root = tmp_path_factory.mktemp("wan_root")
    # Wan's text length and 65 semantic tokens, which a model loaded from a Wan base also gets
    cfg = from_preset("tiny", text_len=512, semantic_local_grid=8)
    model = build_model(cfg, seed=0)
    with torch.no_grad():
        model.type_embedding.weight.normal_(0, 0.1)
    t5, vae = tiny_wan_umt5(seed=1), tiny_vae(seed=2)

    original = root / "Wan2.1-T2V-tiny"
    write_shards(original_backbone(model), original, "diffusion_pytorch_model")
    (original / "config.json").write_text(json.dumps(wan_config_json(cfg)))
    torch.save(diffusers_vae_to_original(vae.state_dict()), original / "Wan2.1_VAE.pth")
    save_wan_t5(original, t5, dtype=torch.float32)

    diffusers_root = root / "Wan2.1-T2V-tiny-Diffusers"
    model.backbone.save_pretrained(diffusers_root / "transformer")
    vae.save_pretrained(diffusers_root / "vae")
    t5.save_pretrained(diffusers_root / "text_encoder")
    tiny_tokenizer().save_pretrained(diffusers_root / "tokenizer")
    release = export_release(model, root / "sama_release.safetensors")
    return {"original": original, "diffusers": diffusers_root, "release": release}


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return resize_frames(read_video(CLIP, max_frames=5).frames, (64, 32))


def test_original_root_edits_as_the_diffusers_root(kit, frames) -> None:
    """Release weights on the original folder (its VAE and T5 .pth converted on load) give the same
    edit, exactly, as on the diffusers root holding the same tiny Wan."""
    a = load_editor(model=str(kit["release"]), base=str(kit["original"]), device="cpu")
    b = load_editor(model=str(kit["release"]), base=str(kit["diffusers"]), device="cpu")
    out_a, _ = a.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    out_b, _ = b.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    assert out_a.shape == frames.shape and torch.equal(out_a, out_b)


def test_cli_edit_with_an_original_root(kit, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    res = subprocess.run(
        [sys.executable, "-m", "sama_cli", "edit", str(CLIP), "remove the cup", "-o", str(out), "--model",
         str(kit["release"]), "--base", str(kit["original"]), "--steps", "2", "--size", "64x32", "--max-frames", "5",
         "--device", "cpu"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "SAMA_DEFAULT_MODEL": "none"})
    assert res.returncode == 0, res.stderr
    info = probe(out)
    assert info.frames == 5 and (info.height, info.width) == (64, 32) and info.fps == probe(CLIP).fps


def test_lone_original_file_as_base_needs_vae_and_text_encoder(kit, tmp_path: Path, frames) -> None:
    """A single original-layout DiT file as --base: the VAE and T5 come from --vae and --text-encoder
    (the T5 .pth finds its tokenizer in google/umt5-xxl beside it); without them, a one-line error."""
    # head dim 128, Wan's, so that the head count read off the shapes is right
    cfg = from_preset("tiny", dim=128, num_heads=1, text_len=512, semantic_local_grid=8)
    model = build_model(cfg, seed=3)
    lone = tmp_path / "wan2.1_t2v_tiny.safetensors"
    save_file(original_backbone(model), str(lone))
    with pytest.raises(ConfigError, match=r"wan2\.1_t2v_tiny\.safetensors: a lone weights file holds only the DiT"):
        load_editor(base=str(lone), vae=str(kit["original"] / "Wan2.1_VAE.pth"), device="cpu")
    t5 = kit["original"] / "models_t5_umt5-xxl-enc-bf16.pth"
    editor = load_editor(base=str(lone), vae=str(kit["original"] / "Wan2.1_VAE.pth"), text_encoder=str(t5),
                         device="cpu")
    assert editor.model.config.num_heads == 1 and editor.model.config.dim == 128
    state = editor.model.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.backbone.state_dict().items())
    out, _ = editor.edit_frames(frames, "remove the cup", SamplingConfig(steps=1), EditSettings())
    assert out.shape == frames.shape
