"""Faster and smaller edits (issue 17, edit/speed.py) on a tiny SAMA model in fp32 on the CPU: step caches
keep one state per guidance branch and start each edit empty (skipped counts by hand), FP8 storage stores
one byte a weight and stays within a stated error, block offloading and compiled blocks change nothing."""

from __future__ import annotations

import pytest
import torch

from sama_cli.core.errors import ConfigError
from sama_cli.edit.sampler import SamplingConfig, sample
from sama_cli.edit.speed import (
    CacheSpec,
    EvalCounter,
    compile_blocks,
    enable_cache,
    offload_blocks,
    store_fp8,
)
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import build_model

SHAPE = (1, 16, 2, 4, 4)


def _model(**overrides):
    model = build_model(from_preset("tiny", **overrides), seed=0).eval()
    torch.nn.init.normal_(model.type_embedding.weight, std=0.5)
    return model


def _inputs():
    g = torch.Generator().manual_seed(4)
    return torch.randn(1, 16, 32, generator=g), torch.randn(1, 16, 32, generator=g), torch.randn(*SHAPE, generator=g)


def _edit(model, steps=4, batch=True, guidance=4.0, **kw):
    ctx, neg, src = _inputs()
    with torch.no_grad():
        return sample(model, SHAPE, ctx, neg, src, SamplingConfig(steps=steps, guidance=guidance, seed=3, **kw),
                      batch_guidance=batch)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_cache_spec_parses_names_and_values_and_says_what_is_wrong() -> None:
    assert CacheSpec.parse("fbc") == CacheSpec("fbc", 0.2) and CacheSpec.parse("FBC:0.4") == CacheSpec("fbc", 0.4)
    assert CacheSpec.parse("taylorseer") == CacheSpec("taylorseer", 4.0)  # docs/caches.md picked both
    assert CacheSpec.parse("taylorseer:3") == CacheSpec("taylorseer", 3.0) and str(CacheSpec.parse("fbc:0.1")) == "fbc:0.1"
    for text, message in (("tea", "unknown cache"), ("fbc:x", "must be a number"), ("fbc:-1", "positive"),
                          ("taylorseer:2.5", "positive integer")):
        with pytest.raises(ConfigError, match=message):
            CacheSpec.parse(text)


@pytest.mark.parametrize("batch", [True, False])
def test_first_block_cache_keeps_a_state_per_branch_and_starts_each_edit_empty(batch: bool) -> None:
    """tiny has 2 blocks: FBC's head is block 0, its tail block 1. With a threshold nothing stays under,
    each cache context runs both blocks at step 0 and only the head after, so of 4 steps x 2 blocks per
    context 2 + 3 = 5 run: skipped 3/8 whether the two guidance branches share a forward (one context) or
    not (two contexts, each its own state). A state shared by the branches would let the second branch skip
    at step 0; a state carried over would let the next edit skip at its step 0."""
    model = _model()
    plain = _edit(model, batch=batch)
    enable_cache(model, CacheSpec("fbc", 1e9), steps=4)
    for _ in range(2):  # the second edit starts from an empty cache
        counter = EvalCounter(model)
        out = _edit(model, batch=batch)
        counter.close()
        contexts = 1 if batch else 2
        assert out.forwards == 4 * contexts
        assert counter.count == contexts * (2 + 3)
        assert counter.skipped(out.forwards) == pytest.approx(3 / 8)
    assert _rel(out.latents, plain.latents) > 1e-3  # skipping is not free
    enable_cache(model, CacheSpec("fbc", 1e-12), steps=4)  # never under the threshold: every block runs
    counter = EvalCounter(model)
    same = _edit(model, batch=batch)
    assert counter.skipped(same.forwards) == 0.0
    assert _rel(same.latents, plain.latents) < 1e-6
    enable_cache(model, None, steps=4)
    assert torch.equal(_edit(model, batch=batch).latents, plain.latents)


def test_taylorseer_computes_on_its_interval() -> None:
    """disable_cache_before_step=2, interval 2, 6 steps: attention runs at steps 0, 1 (warm-up), then where
    (step - 3) % 2 == 0: 3 and 5; 4 of 6, so a third of the block evaluations are skipped."""
    model = _model()
    plain = _edit(model, steps=6)
    enable_cache(model, CacheSpec("taylorseer", 2), steps=6)
    counter = EvalCounter(model)
    out = _edit(model, steps=6)
    assert counter.skipped(out.forwards) == pytest.approx(1 / 3)
    assert 1e-4 < _rel(out.latents, plain.latents) < 0.5


def test_fp8_storage_stores_a_byte_a_weight_within_the_stated_error() -> None:
    """Every Linear inside the blocks is stored in float8_e4m3fn (1 byte a weight, half of bf16's 2); Wan's
    skip list keeps the norms, patch embedding and condition embedder as they were. The edit stays within
    5% relative error of the fp32 one (e4m3 keeps 3 mantissa bits: each weight within 1/16)."""
    model = _model()
    plain = _edit(model)
    linears = [m for m in model.backbone.blocks.modules() if isinstance(m, torch.nn.Linear)]
    n_linear = sum(p.numel() for m in linears for p in m.parameters())
    bf16 = sum(p.numel() * 2 for p in model.parameters())
    model_bf16 = _model().to(torch.bfloat16)
    store_fp8(model_bf16, torch.bfloat16)
    assert sum(p.numel() * p.element_size() for p in model_bf16.parameters()) == bf16 - n_linear
    store_fp8(model, torch.float32)
    assert all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
    assert model.backbone.patch_embedding.weight.dtype == torch.float32
    err = _rel(_edit(model).latents, plain.latents)
    assert 1e-4 < err < 0.05, err


def test_block_offloading_gives_the_same_edit() -> None:
    model = _model()
    plain = _edit(model)
    offload_blocks(model, torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in model.parameters())
    from diffusers.hooks import HookRegistry

    assert all(HookRegistry.check_if_exists_or_initialize(b).hooks for b in model.backbone.blocks)
    assert torch.equal(_edit(model).latents, plain.latents)


def test_compiled_blocks_give_the_same_edit() -> None:
    model = _model()
    plain = _edit(model, steps=2)
    compile_blocks(model, dynamic=False)
    out = _edit(model, steps=2)
    assert _rel(out.latents, plain.latents) < 1e-5 and _rel(out.semantic, plain.semantic) < 1e-5


def _sama(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_edit_flags_reach_the_model_and_the_summary(tiny_edit_checkpoint, tmp_path) -> None:
    """`sama edit --cache fbc:1e9 --offload group --fp8`: an edit, with the cache and the fraction of block
    evaluations it skipped in the --json summary: guidance batched (one cache context), 3 steps x 2 blocks,
    both blocks at step 0 and the head only after: 4 of 6 run, 1/3 skipped."""
    import json

    from conftest import write_clip_with_audio

    clip = write_clip_with_audio(tmp_path / "clip.mp4", frames=5)
    out = tmp_path / "out.mp4"
    res = _sama("edit", clip, "make it red", "-o", out, "--model", tiny_edit_checkpoint, "--size", "32x32", "--steps", "3",
                "--guidance", "4", "--cache", "fbc:1e9", "--offload", "group", "--fp8", "--batch-cfg", "--json")
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    assert done["cache"] == "fbc:1e+09" and done["forwards"] == 3
    assert done["blocks_skipped"] == pytest.approx(1 / 3)
    assert out.is_file() and "33%" in res.stderr  # the summary table's skipped column
    for flags, message in ((["--offload", "disk"], "--offload must be one of none, model, group, not 'disk'"),
                           (["--cache", "tea"], "unknown cache")):
        res = _sama("edit", clip, "make it red", "-o", tmp_path / "bad.mp4", "--model", tiny_edit_checkpoint, *flags)
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert res.returncode == 2 and len(errors) == 1 and message in errors[0], res.stderr
        assert not (tmp_path / "bad.mp4").exists()


def test_guidance_is_batched_by_default_on_gpus_only() -> None:
    """make bench measured batching no faster on the CPU (dual guidance with source tokens: 0.9x), so the
    default batches on a GPU only; either flag overrides it."""
    from types import SimpleNamespace

    from sama_cli.edit.editor import Editor, EditSettings

    cpu, gpu = SimpleNamespace(device=torch.device("cpu")), SimpleNamespace(device=torch.device("cuda", 0))
    assert Editor.batch_guidance(cpu, EditSettings()) is False and Editor.batch_guidance(gpu, EditSettings()) is True
    assert Editor.batch_guidance(cpu, EditSettings(batch_guidance=True)) is True
    assert Editor.batch_guidance(gpu, EditSettings(batch_guidance=False)) is False
