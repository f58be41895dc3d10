"""`sama edit --plan` (issue 17): parameter bytes by hand, FLOPs against torch's FLOP counter on a real tiny
forward, activation peaks against torch's profiler on the CPU (to 20%), and the 14B figures by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sama_cli.edit.plan import (
    Parts,
    PlanRequest,
    dit_activation_elements,
    dit_bytes,
    dit_forward_flops,
    make_plan,
    profiled_peak_bytes,
)
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import build_model

SHAPE = (16, 4, 16, 16)  # tiny latents: 4 frames of 16x16, patch 1x2x2 -> 256 target tokens


def _block_params(d: int, f: int) -> int:
    """A Wan block by hand: self- and cross-attention (q, k, v, o with biases, RMS norms on q and k), the
    cross-attention's affine LayerNorm, the feed-forward (two linears with biases), the 6 x d modulation."""
    attention = 4 * (d * d + d) + 2 * d
    return 2 * attention + 2 * d + (d * f + f) + (f * d + d) + 6 * d


@pytest.mark.parametrize("fp8", [False, True])
def test_parameter_bytes_by_hand(fp8: bool) -> None:
    cfg = from_preset("tiny")
    total, block = dit_bytes(cfg, torch.bfloat16, fp8)
    d, f = cfg.dim, cfg.ffn_dim
    linear = 8 * (d * d + d) + (d * f + f) + (f * d + d)  # the block's Linear layers: FP8-stored
    assert block == 2 * _block_params(d, f) - (linear if fp8 else 0)
    model = build_model(cfg, seed=0).to(torch.bfloat16)
    assert total == sum(p.numel() for p in model.parameters()) * 2 - (cfg.num_layers * linear if fp8 else 0)


@pytest.mark.parametrize("source_mode", ["token", "channel"])
def test_flops_match_torchs_counter_on_a_real_forward(source_mode: str) -> None:
    """FlopCounterMode counts the forward's matmuls, convolutions and (with the math kernel) attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = from_preset("tiny", source_mode=source_mode, rope_max_seq_len=1024)
    model = build_model(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x, src = torch.randn(1, *SHAPE, generator=g), torch.randn(1, *SHAPE, generator=g)
    ctx, sem = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g), torch.randn(1, 5, cfg.semantic_dim, generator=g)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([500.0]), ctx, source_latents=src, semantic_latents=sem)
    tokens = model.sequence_length(SHAPE, SHAPE)
    assert tokens == (2 * 256 if source_mode == "token" else 256) + 5
    ours = dit_forward_flops(cfg, tokens, 256, cfg.text_len)
    assert abs(ours - counter.get_total_flops()) / counter.get_total_flops() < 0.01


@pytest.mark.parametrize(("dim", "ffn"), [(48, 384), (192, 96)])
def test_dit_activation_peak_within_20_percent_of_the_profiler(dim: int, ffn: int) -> None:
    """Both sides of the rule: (48, 384) peaks in the feed-forward, (192, 96) in the attention."""
    cfg = from_preset("tiny", dim=dim, ffn_dim=ffn, num_heads=4, rope_max_seq_len=1024)
    model = build_model(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x, src = torch.randn(1, *SHAPE, generator=g), torch.randn(1, *SHAPE, generator=g)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g)
    measured = profiled_peak_bytes(lambda: model(x, torch.tensor([500.0]), ctx, source_latents=src))
    planned = dit_activation_elements(cfg, model.sequence_length(SHAPE, SHAPE)) * 4
    assert abs(planned - measured) / measured < 0.2, (planned, measured)


def test_vae_decode_peak_within_20_percent_of_the_profiler() -> None:
    from diffusers import AutoencoderKLWan

    parts = Parts("t", from_preset("tiny"), vae=dict(base_dim=16, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                                      temperal_downsample=[False, True, True]), text_encoder="tiny")
    vae = AutoencoderKLWan(**parts.vae).eval()
    z = torch.randn(1, 4, 3, 8, 12)  # 9 frames of 64x96
    measured = profiled_peak_bytes(lambda: vae.decode(z))
    plan = make_plan(parts, PlanRequest(frames=9, height=64, width=96, dtype=torch.float32))
    planned = plan.stages[2].activation_bytes
    assert abs(planned - measured) / measured < 0.2, (planned, measured)


def _plan(*flags, model: str = "wan2.1-t2v-14b"):
    res = subprocess.run([sys.executable, "-m", "sama_cli", "edit", "--plan", "--plan-frames", "81", "--size",
                          "480x832", "--model", model, "--json", *flags], capture_output=True, text=True,
                         timeout=300)
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


def test_the_14b_plan_by_hand() -> None:
    """81 frames of 480x832 -> 21 x 60 x 104 latents -> 21 x 30 x 52 = 32,760 tokens, as many source tokens
    and 65 semantic: 65,585. 14.29B DiT parameters in bf16, 5.68B in UMT5-XXL's encoder. On 80 GB it fits;
    on 24 GB only with FP8, group offloading, one guidance branch a forward and VAE tiling."""
    res, plan = _plan("--gpu-memory", "80")
    plan_80 = plan
    assert res.returncode == 0, res.stderr
    assert plan["tokens"] == 65585 and plan["target_tokens"] == 32760 and plan["batch_per_forward"] == 2
    d, f, L = 5120, 13824, 65585
    block = 12 * L * d * d + 4 * L * L * d + 4 * 512 * d * d + 4 * L * 512 * d + 4 * L * d * f
    assert plan["flops_per_forward"] == pytest.approx(40 * block, rel=1e-3)
    assert plan["flops_per_edit"] == pytest.approx(plan["flops_per_forward"] * 2 * 50)
    dit, te = plan["stages"][1], plan["stages"][0]
    assert dit["weights_bytes"] / 2 == pytest.approx(14.29e9, rel=0.005)
    assert te["weights_bytes"] / 2 == pytest.approx(5.68e9, rel=0.005)
    assert plan["fits"] is True
    res, plan = _plan("--gpu-memory", "24")
    assert res.returncode == 1 and plan["fits"] is False and "does NOT fit 24 GB" in res.stderr
    res, plan = _plan("--gpu-memory", "24", "--fp8", "--offload", "group", "--no-batch-cfg", "--tiling")
    assert res.returncode == 0 and plan["fits"] is True, res.stderr
    assert plan["stages"][1]["weights_bytes"] < dit["weights_bytes"] * 0.51
    # --clip-batch 2: two clips through the DiT at once, twice its activations; text and VAE go clip by clip
    res, two = _plan("--gpu-memory", "80", "--clip-batch", "2")
    assert res.returncode == 0 and two["batch_per_forward"] == 4, res.stderr
    assert two["stages"][1]["activation_bytes"] == 2 * dit["activation_bytes"]
    assert two["stages"][0]["activation_bytes"] == te["activation_bytes"]
    assert two["stages"][2]["activation_bytes"] == plan_80["stages"][2]["activation_bytes"]
    assert two["flops_per_edit"] == plan_80["flops_per_edit"]


def test_the_14b_plan_on_eight_ranks_by_hand() -> None:
    """8 x 80 GB: guidance over 2 rank groups, the 65,585 tokens over 4 ranks each (40 heads / 4: Ulysses).
    A rank runs one branch on ceil(65585 / 4) = 16,397 tokens: an eighth of the FLOPs, and DiT activations of
    one sample of 16,397 tokens (the one-rank plan: a batch of 2 of 65,585)."""
    res, one = _plan("--gpu-memory", "80")
    res, plan = _plan("--gpu-memory", "80", "--plan-ranks", "8")
    assert res.returncode == 0, res.stderr
    assert plan["ranks"] == 8 and plan["layout"] == "guidance 2 x sequence 4 (ulysses)"
    assert plan["flops_per_edit"] == one["flops_per_edit"]
    assert plan["flops_per_rank_per_edit"] == pytest.approx(one["flops_per_edit"] / 8)
    assert plan["batch_per_forward"] == 1
    d, f = 5120, 13824
    per_token = max(9.5 * d, 6 * d + 2 * f)  # the DiT rule of edit/plan.py's docstring
    assert plan["stages"][1]["activation_bytes"] == int(16397 * per_token * 2)
    assert one["stages"][1]["activation_bytes"] == int(2 * 65585 * per_token * 2)
    assert plan["stages"][1]["weights_bytes"] == one["stages"][1]["weights_bytes"]  # each rank holds the DiT
    # 12 heads (Wan 1.3B) do not split 8 ways: each rank also holds every key and value
    res, small = _plan("--plan-ranks", "8", "--parallel", "sequence", model="wan2.1-t2v-1.3b")
    assert small["layout"] == "sequence 8 (kv-gather)"
