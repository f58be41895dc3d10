"""The embedded default model: present, small, made by the toy recipes, loaded through the same path as
user checkpoints, and used by `sama edit` when no --model is given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from sama_cli.edit.loading import default_model, load_editor
from sama_cli.io.video import read_video, write_video
from sama_cli.model.config import ModelConfig, from_preset
from sama_cli.model.weights import load_checkpoint
from sama_cli.toy.world import generate, render
from sama_cli.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def test_the_embedded_model_is_the_toy_recipes_model_and_small() -> None:
    path = default_model()
    assert path is not None and Path(path) == REPO / "sama_cli" / "assets" / "toy_model"
    doc = json.loads((Path(path) / "config.json").read_text())
    recipe = load_recipe(REPO / "recipes" / "toy_model_stage1.yaml")
    shipped = ModelConfig.from_dict(doc["config"])
    assert shipped.replace(extra={}) == from_preset(recipe.model.preset, **recipe.model.overrides)
    meta = doc["meta"]
    assert meta["recipe"] == "toy_model_stage1" and meta["working_size"] == [32, 32] and "test" in meta["toy_bench"]
    assert set(meta["toy_bench_kinds"]["test"]) == {"recolour", "replace", "remove", "add", "background", "style"}
    assert meta["codec"]["spec"] == "pixel:s4" and meta["text_encoder"] == "tiny"
    assert (Path(path) / "model.safetensors").stat().st_size < 20 * 2**20  # issue 19: at most 20 MB
    card = (Path(path) / "README.md").read_text()
    assert "What it cannot do" in card and "`make toy-model`" in card and "| kind | edit acc (test) |" in card
    # the README carries the same per-kind table (make toy-model writes it)
    table = card[card.index("| kind | edit acc (test) |"):].split("\n\n")[0]
    assert table in (REPO / "README.md").read_text()


def test_it_loads_through_the_user_checkpoint_path() -> None:
    editor = load_editor(None, device="cpu")
    model, _, _ = load_checkpoint(default_model())
    a, b = editor.model.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert next(editor.model.parameters()).dtype == torch.float32  # stored fp16, run fp32 on CPU


def test_sama_edit_without_model_uses_it_and_says_so(tmp_path: Path) -> None:
    sample = next(s for s in generate(8, 0, 0, seed=5, size=32, frames=5) if s.edit.kind == "recolour")
    write_video(tmp_path / "clip.mp4", render(sample.source), 8.0, lossless=True)
    res = subprocess.run([sys.executable, "-m", "sama_cli", "edit", str(tmp_path / "clip.mp4"),
                          sample.edit.instruction, "-o", str(tmp_path / "out.mp4"), "--steps", "4", "--json"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "embedded toy-world model" in res.stderr and "--model" in res.stderr
    out = read_video(tmp_path / "out.mp4")
    assert out.frames.shape == (5, 32, 32, 3) and out.fps == 8.0
