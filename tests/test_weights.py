"""Weight loading: every on-disk format a user has, each written by the test with a tiny model."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from sama_cli.core.errors import WeightsError
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import build_model
from sama_cli.model.weights import (
    diffusers_to_original,
    export_release,
    is_checkpoint,
    load_checkpoint,
    load_model,
    materialize,
    original_to_diffusers,
    save_checkpoint,
    to_ours,
    to_release,
)

CFG = from_preset("tiny")


def wan_config_json(cfg=CFG) -> dict:
    """An original Wan `config.json` as Wan-AI ships it, for the tiny model."""
    return {"_class_name": "WanModel", "model_type": "t2v", "dim": cfg.dim, "ffn_dim": cfg.ffn_dim,
            "freq_dim": cfg.freq_dim, "in_dim": cfg.in_channels, "out_dim": cfg.out_channels,
            "num_heads": cfg.num_heads, "num_layers": cfg.num_layers, "text_dim": cfg.text_dim,
            "eps": cfg.eps, "text_len": 512}


@pytest.fixture(scope="module")
def diffusers_wan() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel(**CFG.diffusers_kwargs()).eval()


@pytest.fixture(scope="module")
def sama_model():
    model = build_model(CFG, seed=1).eval()
    with torch.no_grad():
        model.type_embedding.weight.normal_()  # trained SAMA weights have a non-zero type embedding
    return model


def inputs():
    g = torch.Generator().manual_seed(3)
    return (torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([500.0]), torch.randn(1, 5, CFG.text_dim, generator=g),
            torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 5, CFG.semantic_dim, generator=g))


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def plain_equal(model, ref: WanTransformer3DModel) -> None:
    x, t, ctx, _, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ctx).video, ref(x, t, ctx, return_dict=False)[0], rtol=0, atol=1e-6)


# ---- key mappings ---------------------------------------------------------------------------------
def test_original_and_diffusers_names_round_trip(diffusers_wan) -> None:
    sd = diffusers_wan.state_dict()
    original = diffusers_to_original(sd)
    assert "blocks.0.self_attn.q.weight" in original and "head.modulation" in original
    assert "blocks.0.norm3.weight" in original  # diffusers' affine norm2 is Wan's norm3
    back = original_to_diffusers(original)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_ours_release_ours_is_exact(sama_model) -> None:
    sd = sama_model.state_dict()
    release = to_release(sd)
    assert {"segment_embedding.weight", "siglip_feat_mlp.fc1.weight", "semantic_head.proj.weight"} <= release.keys()
    back = to_ours(release)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


# ---- backbones ------------------------------------------------------------------------------------
def test_diffusers_root_and_transformer_folder(tmp_path: Path, diffusers_wan) -> None:
    diffusers_wan.save_pretrained(tmp_path / "Wan-Diffusers" / "transformer")
    for spec in (tmp_path / "Wan-Diffusers", tmp_path / "Wan-Diffusers" / "transformer"):
        model, report = load_model(base=spec, num_heads=CFG.num_heads)
        assert report.initialised == ["semantic_head", "semantic_projector", "type_embedding"]
        assert torch.count_nonzero(model.type_embedding.weight) == 0  # step 0 == base model
        plain_equal(model, diffusers_wan)


def test_diffusers_sharded_folder(tmp_path: Path, diffusers_wan) -> None:
    diffusers_wan.save_pretrained(tmp_path / "t", max_shard_size="20KB")
    assert len(list((tmp_path / "t").glob("*.safetensors"))) > 1
    model, _ = load_model(base=tmp_path / "t")
    plain_equal(model, diffusers_wan)


def test_original_wan_files_single_and_sharded(tmp_path: Path, diffusers_wan) -> None:
    original = {k: v.clone() for k, v in diffusers_to_original(diffusers_wan.state_dict()).items()}
    single = tmp_path / "single"
    single.mkdir()
    save_file(original, str(single / "diffusion_pytorch_model.safetensors"))
    (single / "config.json").write_text(json.dumps(wan_config_json()))
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    keys = sorted(original)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for i, part in enumerate(halves, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-00002.safetensors"
        save_file({k: original[k] for k in part}, str(sharded / name))
        weight_map.update({k: name for k in part})
    (sharded / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (sharded / "config.json").write_text(json.dumps(wan_config_json()))
    for spec in (single, sharded, sharded / "diffusion_pytorch_model.safetensors.index.json"):
        model, _ = load_model(base=spec, num_heads=CFG.num_heads)
        plain_equal(model, diffusers_wan)


# ---- SAMA release layout --------------------------------------------------------------------------
def test_release_weights_on_top_of_base(tmp_path: Path, diffusers_wan, sama_model) -> None:
    diffusers_wan.save_pretrained(tmp_path / "base")
    path = export_release(sama_model, tmp_path / "sama.safetensors")
    # the release's file holds the full DiT: it replaces the base everywhere
    model, report = load_model(model=path, base=tmp_path / "base")
    assert report.loaded == len(sama_model.state_dict()) and not report.missing and not report.initialised
    same_state(model, sama_model)
    # only the SAMA parts, on top of a base: backbone from the base, SAMA parts from the file
    extras = {k: v for k, v in to_release(sama_model.state_dict()).items()
              if k.startswith(("segment_embedding", "siglip_feat_mlp", "semantic_head"))}
    save_file(extras, str(tmp_path / "extras.safetensors"))
    model, _ = load_model(model=tmp_path / "extras.safetensors", base=tmp_path / "base")
    assert torch.equal(model.type_embedding.weight, sama_model.type_embedding.weight)
    assert torch.equal(model.backbone.proj_out.weight, diffusers_wan.proj_out.weight)


def write_shards(sd: dict[str, torch.Tensor], folder: Path, stem: str, n: int = 2) -> Path:
    """`sd` as `n` safetensors shards named `{stem}-0000i-of-0000n.safetensors` + their index."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    weight_map = {}
    for i in range(n):
        name = f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors"
        part = keys[i::n]
        save_file({k: sd[k].contiguous() for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    index = folder / f"{stem}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def test_release_weights_sharded(tmp_path: Path, diffusers_wan, sama_model) -> None:
    """SAMA release weights split in shards (model-0000i-of-00002 + index): the folder, the index, on a
    base or alone, give the same model as the single file."""
    diffusers_wan.save_pretrained(tmp_path / "base")
    release = to_release(sama_model.state_dict())
    index = write_shards(release, tmp_path / "SAMA", "model")
    assert len(list((tmp_path / "SAMA").glob("model-*.safetensors"))) == 2
    for spec in (tmp_path / "SAMA", index):
        model, report = load_model(model=spec, base=tmp_path / "base")
        assert report.loaded == len(sama_model.state_dict()) and not report.missing and not report.initialised
        same_state(model, sama_model)
        alone, _ = load_model(model=spec, num_heads=CFG.num_heads)
        same_state(alone, sama_model)
    # a shard the index lists but that is gone is named
    (tmp_path / "SAMA" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"model-00002-of-00002\.safetensors: shard listed in the index is missing"):
        load_model(model=index, base=tmp_path / "base")


def test_load_report_names_missing_and_unexpected(sama_model) -> None:
    full = sama_model.state_dict()
    sd = {k: v for k, v in full.items() if not k.startswith("backbone.blocks.1.attn1.")}
    sd["backbone.blocks.9.extra.weight"] = torch.zeros(1)
    _, report = materialize(CFG, sd, allow_missing_backbone=True)
    n = len(full) - len(sd) + 1
    assert n > 3 and len(report.missing) == n and all(k.startswith("backbone.blocks.1.attn1.") for k in report.missing)
    text = report.summary()
    assert f"{n} missing, 1 unexpected; missing: " + ", ".join(report.missing[:3]) + f", ... ({n} in all)" in text
    assert "; unexpected (ignored): backbone.blocks.9.extra.weight" in text


def test_lone_original_wan_file_as_base(tmp_path: Path, diffusers_wan) -> None:
    """One original-layout .safetensors file (no folder, no config): the shape gives the config; the head
    count is not in the shapes (Wan's head dim 128 unless num_heads is given)."""
    lone = tmp_path / "wan2.1_t2v_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in diffusers_to_original(diffusers_wan.state_dict()).items()}, str(lone))
    model, report = load_model(base=lone, num_heads=CFG.num_heads)
    assert model.config.dim == CFG.dim and model.config.num_layers == CFG.num_layers
    assert report.initialised == ["semantic_head", "semantic_projector", "type_embedding"]
    plain_equal(model, diffusers_wan)
    assert load_model(base=lone)[0].config.num_heads == 1  # dim 48 // 128, at least 1


def test_release_file_alone_infers_config(tmp_path: Path, sama_model) -> None:
    path = export_release(sama_model, tmp_path / "sama.safetensors")
    model, _ = load_model(model=path, num_heads=CFG.num_heads)
    same_state(model, sama_model)
    x, t, ctx, src, s = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ctx, src, s).video, sama_model(x, t, ctx, src, s).video)


def test_pth_loads_only_with_weights_only(tmp_path: Path, sama_model) -> None:
    release = to_release(sama_model.state_dict())
    torch.save({"state_dict": release}, tmp_path / "sama.pth")
    model, _ = load_model(model=tmp_path / "sama.pth", num_heads=CFG.num_heads)
    same_state(model, sama_model)
    # prefixed keys (DDP / pipeline wrappers) are stripped
    torch.save({f"module.{k}": v for k, v in release.items()}, tmp_path / "wrapped.bin")
    model, _ = load_model(model=tmp_path / "wrapped.bin", num_heads=CFG.num_heads)
    same_state(model, sama_model)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_model(model=tmp_path / "evil.pth")


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path, diffusers_wan, sama_model) -> None:
    diffusers_wan.save_pretrained(tmp_path / "base")
    release = to_release(sama_model.state_dict())
    release["siglip_feat_mlp.fc2.weight"] = torch.zeros(CFG.dim + 2, CFG.semantic_mlp_hidden)
    save_file(release, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=r"semantic_projector\.fc2\.weight: checkpoint \(50, 40\) vs model \(48, 40\)"):
        load_model(model=tmp_path / "bad.safetensors", base=tmp_path / "base")


def test_incomplete_backbone_and_garbage_are_refused(tmp_path: Path, diffusers_wan) -> None:
    # a diffusers folder whose config says 2 layers but whose weights lost block 1
    diffusers_wan.save_pretrained(tmp_path / "partial")
    weights = tmp_path / "partial" / "diffusion_pytorch_model.safetensors"
    sd = diffusers_wan.state_dict()
    save_file({k: v for k, v in sd.items() if not k.startswith("blocks.1.")}, str(weights))
    # the message names the first few missing tensors and says how many there are
    n_block = sum(k.startswith("blocks.1.") for k in sd)
    with pytest.raises(WeightsError, match=rf"{n_block} backbone tensors missing: backbone\.blocks\.1\.\S+, "
                                           rf"backbone\.blocks\.1\.\S+, backbone\.blocks\.1\.\S+, \.\.\. "
                                           rf"\({n_block} in all\)"):
        load_model(base=tmp_path / "partial")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file at all")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_model(model=tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_model(base=tmp_path / "nowhere")


# ---- our own checkpoint ---------------------------------------------------------------------------
def test_checkpoint_round_trip_without_base(tmp_path: Path, sama_model) -> None:
    folder = save_checkpoint(sama_model, tmp_path / "ckpt", meta={"step": 7})
    assert is_checkpoint(folder) and is_checkpoint(folder / "model.safetensors")
    model, report, meta = load_checkpoint(folder)
    assert meta == {"step": 7} and model.config == sama_model.config
    same_state(model, sama_model)
    # the weights file alone carries its config
    model2, _ = load_model(model=folder / "model.safetensors")
    same_state(model2, sama_model)
    # and options recorded in the config come back
    custom = build_model(CFG.replace(semantic_rope="identity", anchor_frames=2), seed=0)
    model3, _, _ = load_checkpoint(save_checkpoint(custom, tmp_path / "c2"))
    assert model3.config.semantic_rope == "identity" and model3.config.anchor_frames == 2


def test_bf16_load_keeps_rope_in_fp32(tmp_path: Path, sama_model) -> None:
    folder = save_checkpoint(sama_model, tmp_path / "ckpt")
    model, _, _ = load_checkpoint(folder, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert model.backbone.rope.freqs_cos.dtype == torch.float32
    x, t, ctx, src, s = inputs()
    with torch.no_grad():
        out = model(x, t, ctx, src, s)
    assert out.video.dtype == torch.bfloat16 and torch.isfinite(out.video.float()).all()
