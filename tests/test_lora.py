"""LoRA through peft (model/lora.py): the file, its loaders, scales and merging, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sama_cli.core.errors import ConfigError, InputError
from sama_cli.model.config import from_preset
from sama_cli.model.lora import (
    LoraSpec,
    adapter_tensors,
    add_lora,
    load_loras,
    merge,
    parse_lora_arg,
    read_lora,
    save_lora,
)
from sama_cli.model.transformer import build_model


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([500.0]), torch.randn(1, 16, 32, generator=g),
            torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 5, 24, generator=g))


def _forward(model, inputs):
    x, t, ctx, src, sem = inputs
    with torch.no_grad():
        out = model(x, t, ctx, source_latents=src, semantic_latents=sem)
    return out.video, out.semantic


def _trained_lora(tmp_path: Path, spec: LoraSpec | None = None) -> tuple[Path, dict[str, torch.Tensor]]:
    """A LoRA file whose adapters and SAMA modules hold random values (a trained one, as far as loading goes)."""
    spec = spec or LoraSpec(rank=4, alpha=8.0)
    model = build_model(from_preset("tiny"), seed=0).eval()
    add_lora(model, spec)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    tensors = adapter_tensors({n: p for n, p in model.named_parameters() if p.requires_grad})
    return save_lora(tensors, tmp_path / "a.safetensors", spec, base="tiny seed 0", recipe_yaml="name: t\n"), tensors


def test_only_adapters_and_sama_modules_train_and_the_base_stays_bitwise(tmp_path: Path) -> None:
    model = build_model(from_preset("tiny"), seed=0)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_lora(model, LoraSpec(rank=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # 2 blocks x 10 layers x (A, B), plus the three SAMA modules' tensors
    assert len([n for n in trainable if ".lora_" in n]) == 2 * 10 * 2
    assert {n.split(".")[0] for n in trainable if ".lora_" not in n} == {"type_embedding", "semantic_projector",
                                                                       "semantic_head"}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for seed in range(3):
        x, t, ctx, src, sem = _inputs(seed)
        out = model(x, t, ctx, source_latents=src, semantic_latents=sem)
        (out.video.square().mean() + out.semantic.square().mean()).backward()
        opt.step()
        opt.zero_grad()
    after = dict(model.named_parameters())
    for name, value in base.items():
        peft_name = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        now = after.get(name, after.get(peft_name))
        if name.split(".")[0] in ("type_embedding", "semantic_projector", "semantic_head"):
            continue
        assert now is not None and torch.equal(now, value), name
    assert all(not torch.equal(after[n], torch.zeros_like(after[n])) for n in trainable if "lora_B" in n)


def test_targets_that_match_nothing_are_refused() -> None:
    with pytest.raises(ConfigError, match="'attn9.to_q' matches no layer"):
        add_lora(build_model(from_preset("tiny"), seed=0), LoraSpec(targets=("attn9.to_q",)))


def test_file_layout_is_diffusers_and_peft_loads_it_to_the_same_output(tmp_path: Path) -> None:
    path, tensors = _trained_lora(tmp_path)
    loaded, meta = read_lora(path)
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight" in loaded and loaded[
        "transformer.blocks.0.attn1.to_q.lora_A.weight"].shape == (4, 48)
    assert "sama.type_embedding.weight" in loaded
    config = json.loads(meta["lora_adapter_metadata"])
    assert config["transformer.r"] == 4 and config["transformer.lora_alpha"] == 8.0
    assert meta["sama_base"] == "tiny seed 0" and meta["sama_recipe"] == "name: t\n"

    ours = build_model(from_preset("tiny"), seed=0).eval()
    load_loras(ours, [(str(path), 1.0)])
    # peft itself: inject the adapters from the file's own config, set its state dict
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    theirs = build_model(from_preset("tiny"), seed=0).eval()
    cfg = LoraConfig(**{k.removeprefix("transformer."): v for k, v in config.items()
                        if k.removeprefix("transformer.") in ("r", "lora_alpha", "target_modules", "lora_dropout")})
    inject_adapter_in_model(cfg, theirs.backbone)
    set_peft_model_state_dict(theirs.backbone, {k.removeprefix("transformer."): v for k, v in loaded.items()
                                                if k.startswith("transformer.")})
    with torch.no_grad():
        for k, v in loaded.items():
            if k.startswith("sama."):
                dict(theirs.named_parameters())[k.removeprefix("sama.")].copy_(v)
    for a, b in zip(_forward(ours, _inputs()), _forward(theirs, _inputs()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_scale_zero_is_the_base_exactly_and_scales_are_linear(tmp_path: Path) -> None:
    path, _ = _trained_lora(tmp_path)
    base = build_model(from_preset("tiny"), seed=0).eval()
    v0, s0 = _forward(base, _inputs())
    zero = build_model(from_preset("tiny"), seed=0).eval()
    load_loras(zero, [(str(path), 0.0)])
    v, s = _forward(zero, _inputs())
    assert torch.equal(v, v0) and torch.equal(s, s0)
    # one layer by hand: W x + s (alpha / r) B A x
    half = build_model(from_preset("tiny"), seed=0).eval()
    load_loras(half, [(str(path), 0.5)])
    loaded, _ = read_lora(path)
    x = torch.randn(3, 48)
    layer = half.backbone.blocks[1].attn2.to_v
    a, b = loaded["transformer.blocks.1.attn2.to_v.lora_A.weight"], loaded["transformer.blocks.1.attn2.to_v.lora_B.weight"]
    plain = base.backbone.blocks[1].attn2.to_v
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x) + 0.5 * (8.0 / 4) * x @ a.T @ b.T, rtol=1e-6, atol=1e-6)


def test_merged_weights_are_base_plus_scaled_adapter(tmp_path: Path) -> None:
    path, _ = _trained_lora(tmp_path)
    loaded, _ = read_lora(path)
    base = build_model(from_preset("tiny"), seed=0).eval()
    model = build_model(from_preset("tiny"), seed=0).eval()
    load_loras(model, [(str(path), 0.7)])
    merge(model)
    w = dict(model.named_parameters())
    assert not any(".lora_" in n or "base_layer" in n for n in w)
    for layer in ("blocks.0.attn1.to_q", "blocks.1.ffn.net.0.proj", "blocks.0.attn2.to_out.0"):
        a, b = loaded[f"transformer.{layer}.lora_A.weight"], loaded[f"transformer.{layer}.lora_B.weight"]
        want = dict(base.named_parameters())[f"backbone.{layer}.weight"] + 0.7 * 2.0 * b @ a
        assert (w[f"backbone.{layer}.weight"] - want).abs().max() < 1e-6
    te = dict(base.named_parameters())["type_embedding.weight"]
    torch.testing.assert_close(w["type_embedding.weight"], te + 0.7 * (loaded["sama.type_embedding.weight"] - te))


def test_two_files_add_their_changes_to_the_base_in_any_order(tmp_path: Path) -> None:
    """Two LoRA files at scales 0.5 and 0.3: a fully trained SAMA tensor becomes base + 0.5 (t1 - base) +
    0.3 (t2 - base), as the adapters add up, and the order of the files does not matter."""
    first, _ = _trained_lora(tmp_path / "1")
    second = tmp_path / "2" / "b.safetensors"
    t1, meta = read_lora(first)
    t2 = {k: v * 2 + 0.05 for k, v in t1.items()}  # another trained file for the same model
    save_lora(t2, second, LoraSpec(rank=4, alpha=8.0), base="tiny seed 0", recipe_yaml="name: t\n")
    te = dict(build_model(from_preset("tiny"), seed=0).named_parameters())["type_embedding.weight"].detach()
    key = "sama.type_embedding.weight"
    want = te + 0.5 * (t1[key] - te) + 0.3 * (t2[key] - te)
    for order in ([(str(first), 0.5), (str(second), 0.3)], [(str(second), 0.3), (str(first), 0.5)]):
        model = build_model(from_preset("tiny"), seed=0).eval()
        load_loras(model, order)
        torch.testing.assert_close(dict(model.named_parameters())["type_embedding.weight"].detach(), want)


def test_a_lora_for_another_model_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path, _ = _trained_lora(tmp_path)
    bigger = build_model(from_preset("tiny", dim=64, num_heads=4), seed=0)
    with pytest.raises(InputError, match=r"transformer\.blocks\.0\.attn1\.to_q\.lora_A\.weight is \(4, 48\).*48 -> 48|"
                                         r"sama\.\S+ is .* a LoRA for another model"):
        load_loras(bigger, [(str(path), 1.0)])
    deeper_file, _ = _trained_lora(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path)
    other = build_model(from_preset("tiny", num_layers=1), seed=0)
    with pytest.raises(InputError, match=r"blocks\.1\.\S+: this model has no linear layer blocks\.1"):
        load_loras(other, [(str(deeper_file), 1.0)])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a safetensors LoRA file"):
        load_loras(bigger, [(str(tmp_path / "junk.safetensors"), 1.0)])


def test_lora_argument_parsing() -> None:
    assert parse_lora_arg("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_lora_arg("a.safetensors:0.5") == ("a.safetensors", 0.5)
    assert parse_lora_arg("/x/y:z/a.safetensors") == ("/x/y:z/a.safetensors", 1.0)


def test_sama_edit_lora_scale_zero_is_the_base_and_a_wrong_lora_is_refused(tiny_edit_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REAL_FIXTURES

    from sama_cli.io.video import read_video

    path, _ = _trained_lora(tmp_path)
    clip = REAL_FIXTURES / "remove-04-source.mp4"
    fast = ["--model", str(tiny_edit_checkpoint), "--steps", "2", "--size", "64x32", "--max-frames", "5",
            "--device", "cpu", "--lossless", "--json"]

    def edit(name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sama_cli", "edit", str(clip), "remove the cup", "-o",
                               str(tmp_path / name), *fast, *extra], capture_output=True, text=True, timeout=300)

    plain, zero, full = edit("plain.mp4"), edit("zero.mp4", "--lora", f"{path}:0"), edit("full.mp4", "--lora", str(path))
    for res in (plain, zero, full):
        assert res.returncode == 0, res.stderr
    # 40 adapter tensors (2 blocks x 10 layers x A, B), the type embedding, the projector (6) and head (4)
    assert json.loads(full.stdout)["loras"][0] == {"file": str(path), "scale": 1.0, "tensors": 51,
                                                    "base": "tiny seed 0"}
    base = read_video(tmp_path / "plain.mp4").frames
    assert torch.equal(read_video(tmp_path / "zero.mp4").frames, base)
    assert not torch.equal(read_video(tmp_path / "full.mp4").frames, base)
    bigger = build_model(from_preset("tiny", dim=64, num_heads=4), seed=0)
    add_lora(bigger, LoraSpec(rank=4, train_sama_modules=False))
    wrong = save_lora(adapter_tensors({n: p for n, p in bigger.named_parameters() if p.requires_grad}),
                      tmp_path / "wrong.safetensors", LoraSpec(rank=4), base="other")
    res = edit("bad.mp4", "--lora", str(wrong))
    assert res.returncode != 0 and not (tmp_path / "bad.mp4").exists()
    last = res.stderr.strip().splitlines()[-1]
    import re

    assert "wrong.safetensors" in last
    assert re.search(r"transformer\.blocks\.0\.attn1\.to_\w\.lora_A\.weight is \(4, 64\), but blocks\.0\.attn1\.to_\w "
                     r"is 48 -> 48 here: a LoRA for another model size", last), last
