"""`make bench` rows for issue 17: what batched guidance, compiled blocks and the step caches buy on the CPU.

Ratios of two runs timed alternately in one process (timing.compare_seconds), so that machine drift hits
both alike. Batched guidance and compiled blocks: a mid-size random DiT (dim 512, 4 blocks) through the
sampler. Caches: the embedded toy model editing a fresh toy clip with its defaults (`--cache fbc`,
`--cache taylorseer`); a random model's residuals say nothing about when a cache may skip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sama_cli.perf.timing import compare_seconds, run_sama, skipped_row

SHAPE = (1, 16, 5, 16, 16)  # 5 latent frames of 16x16: 5 x 8 x 8 = 320 target tokens


def _mid_model():
    from sama_cli.model.config import from_preset
    from sama_cli.model.transformer import build_model

    return build_model(from_preset("tiny", dim=512, num_heads=8, num_layers=4, ffn_dim=1536), seed=0).eval()


def _sampler(model, cfg, batch: bool):
    from sama_cli.edit.sampler import sample

    g = torch.Generator().manual_seed(0)
    ctx, neg = torch.randn(1, 16, 32, generator=g), torch.randn(1, 16, 32, generator=g)
    src = torch.randn(*SHAPE, generator=g)

    def run():
        with torch.no_grad():
            return sample(model, SHAPE, ctx, neg, src, cfg, batch_guidance=batch)

    return run


def guidance_rows(quick: bool) -> list[dict]:
    from sama_cli.edit.sampler import SamplingConfig

    model, steps, repeats = _mid_model(), (3 if quick else 8), (2 if quick else 5)
    rows = []
    for name, cfg, forwards in (("classifier-free (2 branches)", SamplingConfig(steps=steps, guidance=5.0), 2),
                                ("dual (3 branches)", SamplingConfig(steps=steps, source_guidance=1.5,
                                                                     text_guidance=5.0), 3)):
        batched, alone = compare_seconds(_sampler(model, cfg, True), _sampler(model, cfg, False), repeats)
        rows.append({"area": "edit speed", "what": f"batched guidance, {name}, dim-512 DiT, 645 tokens, CPU",
                     "value": f"{alone / batched:.2f}x faster than {forwards} forwards a step "
                              f"({batched / steps * 1e3:.0f} vs {alone / steps * 1e3:.0f} ms/step)",
                     "target": "exact; on by default on GPUs only (not measured here), off on the CPU",
                     "ok": True})
    return rows


def compile_rows(quick: bool) -> list[dict]:
    from sama_cli.edit.sampler import SamplingConfig
    from sama_cli.edit.speed import compile_blocks

    plain, compiled = _mid_model(), _mid_model()
    try:
        compile_blocks(compiled, dynamic=False)
        cfg = SamplingConfig(steps=3 if quick else 8, guidance=5.0)
        _sampler(compiled, cfg, True)()  # compile outside the timing
        a, b = compare_seconds(_sampler(plain, cfg, True), _sampler(compiled, cfg, True), 2 if quick else 5)
    except Exception as e:  # no C++ compiler for inductor, ...: say so
        return [skipped_row("edit speed", "--compile", f"{type(e).__name__}: {e}"[:200])]
    return [{"area": "edit speed", "what": "--compile (torch.compile per block), dim-512 DiT, CPU",
             "value": f"{a / b:.2f}x the eager speed ({b / cfg.steps * 1e3:.0f} vs {a / cfg.steps * 1e3:.0f} ms/step)",
             "target": "exact; faster on GPU (CPU gains are small)", "ok": True}]


def _toy_clips(n: int) -> list[tuple[torch.Tensor, str]]:
    """`n` fresh toy clips (5 frames, 32x32) with their instructions."""
    from sama_cli.edit.editor import manifest_rows
    from sama_cli.io.video import read_video

    with tempfile.TemporaryDirectory() as tmp:
        run_sama("synth", Path(tmp) / "toy", "--clips", n, "--images", 0, "--t2v", 0, "--frames", 5, "--seed", 7,
                 "--heldout-frac", 0)
        rows_ = manifest_rows(Path(tmp) / "toy" / "manifest.jsonl")[0]
        return [(read_video(r["source"]).frames, r["instruction"]) for r in rows_]


def _toy_editor():
    from sama_cli.edit.loading import default_model, load_editor

    model = default_model()
    return None if model is None else load_editor(model=model, device="cpu")


def cache_rows(quick: bool) -> list[dict]:
    from sama_cli.edit.editor import EditRequest

    editor = _toy_editor()
    if editor is None:
        return [skipped_row("edit speed", "--cache", "no embedded toy model")]
    clips = _toy_clips(6)
    out = []
    for cache in ("fbc", "taylorseer"):
        plain = EditRequest().resolve(editor.defaults)
        cached = EditRequest(cache=cache).resolve(editor.defaults)
        skipped: list[float] = []

        def run(sampling_settings, keep=None):
            for frames, text in clips:
                _, report = editor.edit_frames(frames, text, *sampling_settings)
                if keep is not None:
                    keep.append(report.blocks_skipped)

        a, b = compare_seconds(lambda p=plain: run(p), lambda c=cached, k=skipped: run(c, k), 1 if quick else 3)
        from sama_cli.edit.speed import CacheSpec

        out.append({"area": "edit speed", "what": f"--cache {cache} (= {CacheSpec.parse(cache)}), embedded "
                                                  f"toy model, 6 toy clips, 20 steps, CPU",
                    "value": f"{sum(skipped) / len(skipped):.0%} of block evaluations skipped; {a / b:.2f}x faster "
                             "per edit (fixed costs dominate the toy model)",
                    "target": "≤ 0.01 toy accuracy lost (docs/caches.md)", "ok": True})
    return out


def clip_batch_rows(quick: bool) -> list[dict]:
    """`sama edit --manifest --clip-batch 8`: 16 toy clips denoised 8 at a time against one at a time."""
    from sama_cli.edit.editor import EditRequest

    editor = _toy_editor()
    if editor is None:
        return [skipped_row("edit speed", "--clip-batch", "no embedded toy model")]
    clips, batch = _toy_clips(16), 8
    sampling, settings = EditRequest().resolve(editor.defaults)

    def alone():
        for clip in clips:
            editor.edit_clips([clip], sampling, settings)

    def together():
        for i in range(0, len(clips), batch):
            editor.edit_clips(clips[i:i + batch], sampling, settings)

    a, b = compare_seconds(alone, together, 1 if quick else 3)
    return [{"area": "edit speed", "what": f"--clip-batch {batch}, embedded toy model, 16 toy clips, "
                                           f"{sampling.steps} steps, CPU",
             "value": f"{a / b:.2f}x faster than one clip at a time ({b / len(clips):.2f} vs {a / len(clips):.2f} "
                      "s a clip)",
             "target": "the same edits within float rounding (tests/test_edit.py)", "ok": True}]


def fast_edit_rows(quick: bool = False) -> list[dict]:
    from sama_cli.perf.multi_rank import multi_rank_rows

    return [*guidance_rows(quick), *compile_rows(quick), *cache_rows(quick), *clip_batch_rows(quick),
            *multi_rank_rows(quick)]
