"""LoRA training (recipe `lora:`): only adapters train, resume is exact, the export loads and merges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_train import checkpoint_contents, tiny_recipe_overrides, write_artifact_manifest

from sama_cli.core.errors import ConfigError
from sama_cli.model.config import from_preset
from sama_cli.model.lora import load_loras, read_lora
from sama_cli.model.transformer import build_model
from sama_cli.model.weights import load_checkpoint, save_checkpoint
from sama_cli.train.loop import train
from sama_cli.train.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora_base")
    model = build_model(from_preset("tiny"), seed=0)
    with torch.no_grad():
        model.type_embedding.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return save_checkpoint(model, root / "base")


def lora_overrides(manifest: Path, out: Path, steps: int, base: Path, **extra) -> list[str]:
    return tiny_recipe_overrides(manifest, out, steps, **{
        "model.init": str(base), "lora": "{rank: 4, alpha: 8}", "optim.lr": 1e-2, **extra})


def run(manifest: Path, out: Path, steps: int, base: Path, **extra):
    return train(load_recipe(None, lora_overrides(manifest, out, steps, base, **extra)))


def test_a_lora_run_trains_adapters_only_and_checkpoints_them_only(tmp_path: Path, base: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    result = run(manifest, tmp_path / "run", 6, base)
    saved = checkpoint_contents(tmp_path / "run" / "checkpoints" / "step_00000006")
    names = set(saved["model"])
    assert names and all(".lora_" in n or n.split(".")[0] in ("type_embedding", "semantic_projector",
                                                              "semantic_head") for n in names)
    assert len([n for n in names if ".lora_" in n]) == 40 and set(saved["ema"]) == names
    # optimizer state for the trainable tensors only (AdamW: exp_avg and exp_avg_sq each)
    assert len(saved["optim"]["state"]) == len(names)
    tensors, meta = read_lora(result.export["lora_ema"])
    assert "transformer.blocks.1.ffn.net.2.lora_B.weight" in tensors and meta["sama_base"] == str(base)
    assert "name: recipe" in meta["sama_recipe"] and "rank: 4" in meta["sama_recipe"]
    lora_b = [v for k, v in tensors.items() if "lora_B" in k]
    assert all(v.abs().max() > 0 for v in lora_b)  # B starts at zero: it moved
    assert "model" not in result.export and "ema" not in result.export


def test_lora_resume_is_exact(tmp_path: Path, base: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    straight = run(manifest, tmp_path / "straight", 6, base)
    run(manifest, tmp_path / "resumed", 3, base)
    resumed = run(manifest, tmp_path / "resumed", 6, base)
    for kind in ("lora", "lora_ema"):
        a, _ = read_lora(straight.export[kind])
        b, _ = read_lora(resumed.export[kind])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind


def test_merged_export_equals_base_plus_adapter(tmp_path: Path, base: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    result = run(manifest, tmp_path / "run", 4, base, **{"lora": "{rank: 4, alpha: 8, merge: true}",
                                                         "train.export_release": True})
    merged, _, meta = load_checkpoint(result.export["merged"])
    assert meta["lora_merged"] == str(base)
    tensors, _ = read_lora(result.export["lora_ema"])
    plain, _, _ = load_checkpoint(base)
    w, b0 = merged.state_dict(), plain.state_dict()
    for layer in ("blocks.0.attn1.to_k", "blocks.1.attn2.to_out.0", "blocks.0.ffn.net.0.proj"):
        a, b = tensors[f"transformer.{layer}.lora_A.weight"], tensors[f"transformer.{layer}.lora_B.weight"]
        assert (w[f"backbone.{layer}.weight"] - (b0[f"backbone.{layer}.weight"] + 2.0 * b @ a)).abs().max() < 1e-6
    torch.testing.assert_close(w["type_embedding.weight"], tensors["sama.type_embedding.weight"], rtol=0, atol=1e-7)
    assert Path(result.export["merged_release"]).is_file()
    # the merged model and base + LoRA give the same edit velocity
    adapted, _, _ = load_checkpoint(base)
    load_loras(adapted, [(result.export["lora_ema"], 1.0)])
    g = torch.Generator().manual_seed(0)
    x, ctx, src = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 16, 32, generator=g), torch.randn(
        1, 16, 2, 4, 4, generator=g)
    with torch.no_grad():
        va = adapted(x, torch.tensor([300.0]), ctx, source_latents=src).video
        vm = merged(x, torch.tensor([300.0]), ctx, source_latents=src).video
    torch.testing.assert_close(va, vm, rtol=1e-5, atol=1e-5)


def test_lora_recipe_is_validated(tmp_path: Path, base: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    for bad, message in (("{rank: 0}", "lora.rank must be at least 1"),
                         ("{rank: 4, dropout: 1.5}", r"lora.dropout must be in \[0, 1\)"),
                         ("{rank: 4, base_dtype: int4}", "lora.base_dtype must be"),
                         ("{rank: 4, targets: []}", "lora.targets is empty"),
                         ("{rank: 4, rnak: 2}", "unknown key lora.rnak")):
        with pytest.raises(ConfigError, match=message):
            load_recipe(None, lora_overrides(manifest, tmp_path / "o", 2, base, lora=bad))
    with pytest.raises(ConfigError, match="lora needs a model to adapt"):
        load_recipe(None, tiny_recipe_overrides(manifest, tmp_path / "o", 2, lora="{rank: 4}"))


def test_lora_with_a_bf16_base_keeps_adapters_fp32_and_the_base_untouched(tmp_path: Path, base: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    result = run(manifest, tmp_path / "run", 3, base, lora="{rank: 4, base_dtype: bf16}")
    tensors, _ = read_lora(result.export["lora"])
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_lora(tmp_path: Path, base: Path, parallel: str) -> None:
    """Two processes: DDP over the adapters, or FSDP2 sharding the frozen base with its adapters; the
    export holds every adapter either way."""
    manifest = write_artifact_manifest(tmp_path / "data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: lora-{parallel}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = lora_overrides(manifest, tmp_path / "run", 3, base, **{"train.parallel": parallel})
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "sama_cli", "train", str(recipe), *args, "--json"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    tensors, _ = read_lora(summary["export"]["lora_ema"])
    assert len([k for k in tensors if "lora_" in k]) == 40
    assert all(v.abs().max() > 0 for k, v in tensors.items() if "lora_B" in k)  # B starts at zero: it trained


def test_the_toy_lora_table_by_hand() -> None:
    """make toy-lora's numbers (docs/lora.md): per kind, mean and sample std over seeds of base, LoRA and
    their per-seed change; the verdict on the old kinds compares |mean change| with the spread. By hand:
    recolour base 0.8, 0.6 -> mean 0.7, std 0.1414; LoRA 0.9, 0.6 -> change +0.1, 0 -> mean 0.05, std
    0.0707: within (0.05 <= 0.1414). remove base 0.5, 0.5 (std 0), change -0.2, -0.2: outside."""
    from sama_cli.toy.lora_study import render, summarise

    runs = [{"seed": 1, "train_seconds": 60.0, "clips": {"recolour": 4, "remove": 2, "recolour_new": 9},
             "base": {"recolour": 0.8, "remove": 0.5, "recolour_new": 0.0},
             "lora": {"recolour": 0.9, "remove": 0.3, "recolour_new": 0.9}},
            {"seed": 2, "train_seconds": 120.0, "clips": {"recolour": 3, "remove": 5, "recolour_new": 8},
             "base": {"recolour": 0.6, "remove": 0.5, "recolour_new": 0.0},
             "lora": {"recolour": 0.6, "remove": 0.3, "recolour_new": 0.7}}]
    s = summarise(runs)
    assert s["kinds"]["recolour"]["base"] == pytest.approx((0.7, 0.02 ** 0.5))
    assert s["kinds"]["recolour"]["change"] == pytest.approx((0.05, 0.005 ** 0.5))
    assert s["kinds"]["recolour_new"]["lora"] == pytest.approx((0.8, 0.02 ** 0.5))
    meta = {"command": "x", "rank": 16, "steps": 800, "train_minutes": [1.0, 2.0]}
    sizes = {"full_params": 4_000_000, "lora_params": 400_000, "full_optim_bytes": 32_000_000,
             "lora_optim_bytes": 3_200_000}
    doc = render(s, sizes, meta, runs)
    assert "| recolour | 4 + 3 | 0.700 ± 0.141 | 0.750 ± 0.212 | +0.050 ± 0.071 |" in doc
    assert "0.000 -> 0.900, 0.000 -> 0.700" in doc
    assert "within the seed spread: recolour; outside it: remove." in doc
    assert "1.0-2.0 min a seed" in doc and "| LoRA rank 16 (+ SAMA modules) | 0.400M (10.0%) |" in doc
