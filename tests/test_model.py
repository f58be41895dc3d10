"""The SAMA model: parity with plain diffusers Wan, options, gradients, losses."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import WanTransformer3DModel

from sama_cli.core.errors import ConfigError
from sama_cli.model.config import ModelConfig, from_preset
from sama_cli.model.flow import (
    add_noise,
    dual_cfg_combine,
    inference_sigmas,
    sama_loss,
    sample_training_sigmas,
    shift_sigma,
    velocity_target,
)
from sama_cli.model.transformer import build_model


def tiny_inputs(cfg: ModelConfig, seed: int = 0, frames: int = 2, src_frames: int | None = 2, sem: int | None = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_channels, frames, 4, 6, generator=g)
    src = None if src_frames is None else torch.randn(1, cfg.in_channels, src_frames, 4, 6, generator=g)
    s = None if sem is None else torch.randn(1, sem, cfg.semantic_dim, generator=g)
    ctx = torch.randn(1, 7, cfg.text_dim, generator=g)
    return x, torch.tensor([640.0]), ctx, src, s


@pytest.fixture(scope="module")
def tiny():
    return build_model(from_preset("tiny"), seed=0).eval()


def test_plain_path_equals_diffusers_with_zero_type_embedding(tiny) -> None:
    """Freshly random tiny model: with no source, no semantic tokens and a zero type embedding, the
    SAMA forward is exactly diffusers' WanTransformer3DModel."""
    ref = WanTransformer3DModel(**tiny.config.diffusers_kwargs()).eval()
    ref.load_state_dict(tiny.backbone.state_dict())
    assert torch.count_nonzero(tiny.type_embedding.weight) == 0
    x, t, ctx, _, _ = tiny_inputs(tiny.config)
    with torch.no_grad():
        ours = tiny(x, t, ctx).video
        theirs = ref(x, t, ctx, return_dict=False)[0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_type_embedding_changes_plain_output(tiny) -> None:
    model = build_model(tiny.config, seed=0).eval()
    x, t, ctx, _, _ = tiny_inputs(model.config)
    with torch.no_grad():
        before = model(x, t, ctx).video
        model.type_embedding.weight[2].fill_(0.5)  # target type: applied even without a source
        after = model(x, t, ctx).video
        model.type_embedding.weight[0].fill_(3.0)  # source type: no source tokens here, no effect
        same = model(x, t, ctx).video
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, same, rtol=0, atol=0)


def test_shapes_and_source_with_other_frame_count(tiny) -> None:
    x, t, ctx, src, s = tiny_inputs(tiny.config, frames=3, src_frames=2)
    with torch.no_grad():
        out = tiny(x, t, ctx, source_latents=src, semantic_latents=s)
    assert out.video.shape == x.shape
    assert out.semantic.shape == s.shape
    assert tiny.sequence_length(tuple(x.shape[1:]), tuple(src.shape[1:])) == 2 * 2 * 3 + 5 + 3 * 2 * 3


def test_semantic_rope_zero_vs_identity() -> None:
    cfg = from_preset("tiny")
    zero = build_model(cfg, seed=1).eval()
    ident = build_model(cfg.replace(semantic_rope="identity"), seed=1).eval()
    x, t, ctx, src, s = tiny_inputs(cfg)
    with torch.no_grad():
        a, b = zero(x, t, ctx, src, s), ident(x, t, ctx, src, s)
    assert not torch.allclose(a.video, b.video)
    # zero rotation: the semantic tokens' q and k vanish, so every query gives them the same score
    # whatever their content; the content still flows in through the values
    s2 = s + torch.randn(s.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert not torch.allclose(zero(x, t, ctx, src, s2).video, a.video)


def self_attention_qk(model, inputs, monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Per block, the self-attention's query and key before RoPE (the outputs of diffusers' `norm_q`/`norm_k`,
    (B, L, heads, head_dim)) and after it (what `WanAttnProcessor` hands to `dispatch_attention_fn`)."""
    import diffusers.models.transformers.transformer_wan as wan

    seen: list[dict[str, torch.Tensor]] = []
    inside: list[bool] = []  # True while a block's attn1 runs (attn2, the text attention, is not recorded)
    original = wan.dispatch_attention_fn

    def recording(query, key, value, **kwargs):
        if inside:
            seen[-1].update(q=query.clone(), k=key.clone())
        return original(query, key, value, **kwargs)

    monkeypatch.setattr(wan, "dispatch_attention_fn", recording)
    hooks = []
    for block in model.backbone.blocks:
        attn = block.attn1
        hooks.append(attn.register_forward_pre_hook(lambda m, a: seen.append({}) or inside.append(True)))
        hooks.append(attn.register_forward_hook(lambda m, a, out: inside.clear()))
        for name in ("q", "k"):
            hooks.append(getattr(attn, f"norm_{name}").register_forward_hook(
                lambda m, a, out, name=name, heads=attn.heads: seen[-1].update(
                    {f"{name}_pre": out.unflatten(2, (heads, -1)).clone()})))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == len(model.backbone.blocks) and all(len(s) == 4 for s in seen)
    return seen


def scores(qk: dict[str, torch.Tensor], pre: bool = False) -> torch.Tensor:
    """Attention logits before scaling, q_i . k_j per head: (B, heads, L, L)."""
    q, k = (qk["q_pre"], qk["k_pre"]) if pre else (qk["q"], qk["k"])
    return torch.einsum("blhd,bmhd->bhlm", q, k)


def test_semantic_rope_zero_gives_every_semantic_score_exactly_zero(monkeypatch) -> None:
    """docs/sama.md §3 (release: the semantic tokens' rotation is a complex zero, model_fn_wan_video):
    in `zero` mode every logit with a semantic token as query or key is exactly 0; in `identity` mode the
    semantic q and k are their unrotated projections; the source and target logits are the same in both."""
    cfg = from_preset("tiny")
    x, t, ctx, src, s = tiny_inputs(cfg)  # 12 source tokens (2x2x3), 5 semantic, 12 target
    sem = slice(12, 17)
    video = torch.tensor([*range(12), *range(17, 29)])
    zero = self_attention_qk(build_model(cfg, seed=1).eval(), (x, t, ctx, src, s), monkeypatch)
    ident = self_attention_qk(build_model(cfg.replace(semantic_rope="identity"), seed=1).eval(),
                              (x, t, ctx, src, s), monkeypatch)
    for z, i in zip(zero, ident, strict=True):
        assert z["q"].shape[1] == 29 and z["q_pre"][:, sem].abs().min() > 0  # the projections are not 0
        sz = scores(z)
        assert torch.count_nonzero(sz[..., sem, :]) == 0 and torch.count_nonzero(sz[..., :, sem]) == 0
        assert torch.equal(i["q"][:, sem], i["q_pre"][:, sem]) and torch.equal(i["k"][:, sem], i["k_pre"][:, sem])
        si = scores(i)
        assert torch.equal(si[..., sem, sem], scores(i, pre=True)[..., sem, sem])  # semantic x semantic: unrotated
        assert torch.count_nonzero(si[..., sem, :]) == si[..., sem, :].numel()  # and no semantic logit is 0
        # video tokens are rotated by their grid positions: their logits are not the unrotated ones
        assert not torch.allclose(sz[..., video[:, None], video], scores(z, pre=True)[..., video[:, None], video])
    # block 0 sees the same input in both modes: the source/target logits agree exactly
    torch.testing.assert_close(scores(zero[0])[..., video[:, None], video], scores(ident[0])[..., video[:, None], video],
                               rtol=0, atol=0)


def test_per_token_timestep_mode() -> None:
    cfg = from_preset("tiny")
    shared = build_model(cfg, seed=2).eval()
    per_tok = build_model(cfg.replace(timestep_mode="per_token"), seed=2).eval()
    x, t, ctx, src, s = tiny_inputs(cfg)
    with torch.no_grad():
        # without a source every token is at t: identical
        torch.testing.assert_close(shared(x, t, ctx, None, s).video, per_tok(x, t, ctx, None, s).video)
        # with a source at t=0 the result differs
        assert not torch.allclose(shared(x, t, ctx, src, s).video, per_tok(x, t, ctx, src, s).video)
        # at t=0 every token is at 0 in both modes: identical again
        zero = torch.tensor([0.0])
        torch.testing.assert_close(shared(x, zero, ctx, src, s).video, per_tok(x, zero, ctx, src, s).video)


def test_channel_source_mode() -> None:
    cfg = from_preset("tiny", source_mode="channel")
    model = build_model(cfg, seed=3).eval()
    assert model.backbone.patch_embedding.weight.shape[1] == 2 * cfg.in_channels
    x, t, ctx, src, s = tiny_inputs(cfg)
    with torch.no_grad():
        out = model(x, t, ctx, src, s)
        plain = model(x, t, ctx, None, s)
    assert out.video.shape == x.shape and not torch.allclose(out.video, plain.video)


def test_batch_matches_single_samples(tiny) -> None:
    cfg = tiny.config
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, cfg.in_channels, 2, 4, 4, generator=g)
    src = torch.randn(2, cfg.in_channels, 2, 4, 4, generator=g)
    s = torch.randn(2, 5, cfg.semantic_dim, generator=g)
    ctx = torch.randn(2, 6, cfg.text_dim, generator=g)
    t = torch.tensor([100.0, 900.0])
    with torch.no_grad():
        both = tiny(x, t, ctx, src, s)
        one = tiny(x[1:], t[1:], ctx[1:], src[1:], s[1:])
    torch.testing.assert_close(both.video[1:], one.video, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both.semantic[1:], one.semantic, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_part_and_not_the_semantic_target() -> None:
    cfg = from_preset("tiny")
    model = build_model(cfg, seed=4).train()
    x0, t, ctx, src, sem0 = tiny_inputs(cfg)
    sem0.requires_grad_(True)  # if the loss leaked into the target, this would receive a gradient
    g = torch.Generator().manual_seed(9)
    eps, eps_s = torch.randn(x0.shape, generator=g), torch.randn(sem0.shape, generator=g)
    sigma = torch.tensor([0.6])
    out = model(add_noise(x0, eps, sigma), t, ctx, src, add_noise(sem0, eps_s, sigma).detach())
    loss = sama_loss(out.video, velocity_target(x0, eps), out.semantic, velocity_target(sem0, eps_s))
    loss.total.backward()
    for name in ("type_embedding.weight", "semantic_projector.fc1.weight", "semantic_head.proj.weight",
                 "backbone.blocks.0.attn1.to_q.weight", "backbone.patch_embedding.weight", "backbone.proj_out.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert sem0.grad is None


def test_gradient_checkpointing_same_result() -> None:
    cfg = from_preset("tiny")
    a, b = build_model(cfg, seed=6), build_model(cfg, seed=6)
    b.enable_gradient_checkpointing()
    x, t, ctx, src, s = tiny_inputs(cfg)
    la, lb = a(x, t, ctx, src, s).video.square().mean(), b(x, t, ctx, src, s).video.square().mean()
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(a.backbone.blocks[0].attn1.to_q.weight.grad, b.backbone.blocks[0].attn1.to_q.weight.grad)


def param_count(cfg: ModelConfig) -> int:
    """Parameters of the SAMA model for `cfg`, counted by hand from the layer shapes (backbone + type
    embedding + projector + head): the expected value for `num_parameters()`."""
    d, f, L = cfg.dim, cfg.ffn_dim, cfg.num_layers
    p = math.prod(cfg.patch_size)
    block = 4 * (d * d + d) + 4 * (d * d + d) + (d * f + f) + (f * d + d) + 6 * d + 4 * d
    block += 2 * d if cfg.cross_attn_norm else 0
    embed = cfg.backbone_in_channels * p * d + d
    cond = cfg.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d + cfg.text_dim * d + d + d * d + d
    head = d * cfg.out_channels * p + cfg.out_channels * p + 2 * d
    s, h = cfg.semantic_dim, cfg.semantic_mlp_hidden
    sama = 3 * d + (2 * s + s * h + h + h * d + d) + (2 * d + d * s + s)
    return L * block + embed + cond + head + sama


def test_presets_and_param_count() -> None:
    assert from_preset("wan2.1-t2v-14b").dim == 5120 and from_preset("wan2.1-t2v-14b").num_layers == 40
    small = from_preset("wan2.1-t2v-1.3b")
    assert (small.dim, small.num_layers, small.num_heads, small.ffn_dim, small.head_dim) == (1536, 30, 12, 8960, 128)
    assert from_preset("wan2.1-t2v-14b").semantic_tokens == 65
    for cfg in (from_preset("tiny"), from_preset("tiny", source_mode="channel", cross_attn_norm=False)):
        assert param_count(cfg) == build_model(cfg).num_parameters()
    # the real 14B: about 14 billion (backbone) parameters
    assert 13.5e9 < param_count(from_preset("wan2.1-t2v-14b")) < 14.5e9


def test_config_rejects_mistakes() -> None:
    with pytest.raises(ConfigError, match="unknown key 'dimm'"):
        ModelConfig.from_dict({"dimm": 3})
    with pytest.raises(ConfigError, match="semantic_rope"):
        from_preset("tiny", semantic_rope="half")
    with pytest.raises(ConfigError, match="unknown model preset"):
        from_preset("wan3")


def test_flow_helpers_by_hand() -> None:
    assert float(shift_sigma(0.5, 5.0)) == pytest.approx(5 * 0.5 / (1 + 4 * 0.5))
    sig = inference_sigmas(50, 5.0)
    assert sig.shape == (51,) and float(sig[0]) == 1.0 and float(sig[-1]) == 0.0
    assert bool((sig[1:] < sig[:-1]).all())
    # release: FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True): grid 1, 49/50, ..., 1/50, then 0
    assert float(sig[-2]) == pytest.approx(5 * 0.02 / (1 + 4 * 0.02), abs=1e-12)  # 0.0926
    assert float(sig[-3]) == pytest.approx(5 * 0.04 / (1 + 4 * 0.04), abs=1e-12)  # 0.1724
    assert [float(v) for v in inference_sigmas(2, 5.0)] == pytest.approx([1.0, 2.5 / 3.0, 0.0], abs=1e-12)
    train = sample_training_sigmas(4096, torch.Generator().manual_seed(0), shift=1.0)
    assert float(train.max()) == 1.0 and float(train.min()) >= 0.001 - 1e-7  # grid 1, 0.999, ..., 0.001
    assert torch.allclose(train * 1000, (train * 1000).round(), atol=1e-3)
    x0, eps = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    torch.testing.assert_close(add_noise(x0, eps, torch.tensor([0.25])), torch.tensor([[1.5, 1.25]]))
    v_pred, s_pred = torch.tensor([[2.0, -3.0]]), torch.tensor([[[0.5, 1.0]]])
    parts = sama_loss(v_pred, velocity_target(x0, eps), s_pred, torch.tensor([[[1.0, 1.0]]]), 0.1)
    # MSE: ((2-2)^2 + (-3+3)^2)/2 = 0; L1: (0.5 + 0)/2 = 0.25
    assert float(parts.flow) == 0.0 and float(parts.semantic) == 0.25
    assert float(parts.total) == pytest.approx(0.025)
    v = dual_cfg_combine(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.25), 2.0, 3.0)
    assert float(v) == pytest.approx(1 + 2 * 0.5 + 3 * 0.75)
