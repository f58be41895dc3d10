"""`make bench` row: the SAMA forward+backward against the plain diffusers backbone on the same token count."""

from __future__ import annotations

import torch

from sama_cli.perf.timing import compare_seconds


def model_overhead_rows(quick: bool = False) -> list[dict]:
    from sama_cli.model.config import from_preset

    configs = {
        "tiny": from_preset("tiny"),
        "mid (dim 512, 4 layers)": from_preset("tiny", dim=512, num_heads=8, num_layers=4, ffn_dim=1536,
                                               text_dim=64, semantic_mlp_hidden=256),
    }
    return [_overhead_row(name, cfg, quick) for name, cfg in configs.items()]


def _overhead_row(name: str, cfg, quick: bool) -> dict:
    from diffusers import WanTransformer3DModel

    from sama_cli.model.transformer import build_model

    ours = build_model(cfg, seed=0)
    plain = WanTransformer3DModel(**cfg.diffusers_kwargs())
    plain.load_state_dict(ours.backbone.state_dict())
    g = torch.Generator().manual_seed(0)
    # ours: 256 source + 64 semantic + 256 target tokens = 576; plain: 9 frames of 8x8 = 576 tokens
    src = torch.randn(1, 16, 4, 16, 16, generator=g)
    tgt = torch.randn(1, 16, 4, 16, 16, generator=g)
    sem = torch.randn(1, 64, cfg.semantic_dim, generator=g)
    big = torch.randn(1, 16, 9, 16, 16, generator=g)
    ctx = torch.randn(1, 32, cfg.text_dim, generator=g)
    t = torch.tensor([500.0])

    def step_ours():
        out = ours(tgt, t, ctx, source_latents=src, semantic_latents=sem)
        (out.video.square().mean() + out.semantic.square().mean()).backward()

    def step_plain():
        plain(big, t, ctx, return_dict=False)[0].square().mean().backward()

    repeats = (5 if quick else 15) * (4 if name == "tiny" else 1)
    a, b = compare_seconds(step_ours, step_plain, repeats)
    return {"area": "model", "what": f"SAMA fwd+bwd vs diffusers backbone, 576 tokens, {name}",
            "value": f"{a * 1e3:.1f} ms vs {b * 1e3:.1f} ms ({(a / b - 1) * 100:+.1f}%)",
            "target": "overhead <= 5%", "ok": a / b - 1 <= 0.05}
