"""Whole videos (issue 16): clips longer than the model's window are denoised as one trajectory over
overlapping windows whose velocities are blended at every step. Expected values by hand."""

from __future__ import annotations

import pytest
import torch
from conftest import write_clip_with_audio

from sama_cli.core.errors import ConfigError
from sama_cli.edit.sampler import SamplingConfig, sample
from sama_cli.edit.windows import WindowPlan, blend_weights, default_overlap, plan_spans
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import SamaOutput, SamaTransformer


def test_spans_by_hand() -> None:
    assert plan_spans(5, 5, 2) == [(0, 5)]  # fits: one window, the plain sampler
    assert plan_spans(3, 5, 2) == [(0, 3)]
    # 13 latent frames, window 5, overlap >= 2: ceil((13 - 2) / 3) = 4 windows, starts k * 8 // 3
    assert plan_spans(13, 5, 2) == [(0, 5), (2, 7), (5, 10), (8, 13)]
    # Wan: 51 latent frames (201 frames), window 21, overlap 6: ceil(45 / 15) = 3, starts 0, 15, 30
    assert plan_spans(51, 21, 6) == [(0, 21), (15, 36), (30, 51)]
    assert (default_overlap(81, 4), default_overlap(5, 1), default_overlap(9, 4), default_overlap(1, 1)) == (24, 2, 4, 0)
    with pytest.raises(ConfigError, match="overlap must be shorter than the window"):
        plan_spans(13, 5, 5)


def test_blend_weights_ramp_across_the_overlap_and_sum_to_one() -> None:
    # two windows of 5 over 7 frames share frames 2-4: ramps 3/4 2/4 1/4 and 1/4 2/4 3/4
    w = blend_weights([(0, 5), (2, 7)], 7)
    expect = torch.tensor([[1, 1, 0.75, 0.5, 0.25, 0, 0], [0, 0, 0.25, 0.5, 0.75, 1, 1]], dtype=torch.float64)
    assert torch.equal(w, expect)
    for total, window, overlap in ((13, 5, 2), (37, 21, 6), (22, 21, 6), (100, 9, 4), (9, 5, 1)):
        w = blend_weights(plan_spans(total, window, overlap), total)
        assert torch.allclose(w.sum(0), torch.ones(total, dtype=torch.float64), atol=1e-12), (total, window, overlap)
        assert (w >= 0).all()


class FrameIndexModel(torch.nn.Module):
    """Velocity of frame f of the batch it is given = f (its index inside the slice it sees) + 100 x the
    source there: shows which slice each window saw and from where its frames count."""

    def __init__(self) -> None:
        super().__init__()
        self.config = from_preset("tiny")
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []

    device = property(lambda self: self.p.device)
    dtype = property(lambda self: self.p.dtype)

    def forward(self, x, t, ctx, source_latents=None, semantic_latents=None):
        self.seen.append(tuple(x.shape))
        idx = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1).expand_as(x)
        return SamaOutput(video=idx + 100 * source_latents, semantic=None)


def test_windows_see_their_own_slice_from_frame_zero_and_blend() -> None:
    """One Euler step from sigma 1 to 0: out = noise - v. With windows (0,5) and (2,7) over 7 frames the
    blended v of frame g is sum_k w[k, g] (g - start_k + 100 src[g])."""
    model = FrameIndexModel()
    shape = (1, 2, 7, 2, 2)
    src = torch.arange(7.0).view(1, 1, 7, 1, 1).expand(shape) / 1000
    cfg = SamplingConfig(steps=1, guidance=1.0, semantic_tokens=0)
    plan = WindowPlan.make(7, 5, 3)
    assert plan.spans == [(0, 5), (2, 7)]
    out = sample(model, shape, torch.zeros(1, 4, 32), None, src, cfg, windows=plan).latents
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(cfg.seed))
    local = torch.tensor([[0, 1, 2, 3, 4, 0, 0], [0, 0, 0, 1, 2, 3, 4]], dtype=torch.float32)
    w = torch.tensor([[1, 1, 0.75, 0.5, 0.25, 0, 0], [0, 0, 0.25, 0.5, 0.75, 1, 1]])
    v = (w * local).sum(0).view(1, 1, 7, 1, 1) + 100 * src
    assert torch.allclose(out, noise - v, atol=1e-5)
    assert model.seen == [(1, 2, 5, 2, 2), (1, 2, 5, 2, 2)]  # each window at its trained length, one at a time
    model.seen.clear()
    batched = sample(model, shape, torch.zeros(1, 4, 32), None, src, cfg, windows=WindowPlan.make(7, 5, 3, batch=2))
    assert model.seen == [(2, 2, 5, 2, 2)] and torch.equal(batched.latents, out)


@pytest.fixture(scope="module")
def tiny() -> SamaTransformer:
    torch.manual_seed(0)
    return SamaTransformer(from_preset("tiny", in_channels=4, out_channels=4, text_dim=32, text_len=8)).eval()


def test_a_clip_of_one_window_is_the_plain_sampler_bit_for_bit(tiny: SamaTransformer) -> None:
    shape = (1, 4, 3, 4, 4)
    g = torch.Generator().manual_seed(3)
    ctx, src = torch.randn(1, 8, 32, generator=g), torch.randn(shape, generator=g)
    cfg = SamplingConfig(steps=3, guidance=1.0)
    with torch.no_grad():
        plain = sample(tiny, shape, ctx, None, src, cfg)
        one = sample(tiny, shape, ctx, None, src, cfg, windows=WindowPlan.make(3, 5, 2))
    assert torch.equal(plain.latents, one.latents) and torch.equal(plain.semantic, one.semantic)


def test_a_shared_semantic_state_is_the_same_in_every_window_at_every_step(tiny: SamaTransformer) -> None:
    seen: list[torch.Tensor] = []
    hook = tiny.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["semantic_latents"].clone()),
                                          with_kwargs=True)
    shape = (1, 4, 7, 4, 4)
    g = torch.Generator().manual_seed(4)
    ctx, src = torch.randn(1, 8, 32, generator=g), torch.randn(shape, generator=g)
    try:
        with torch.no_grad():
            sample(tiny, shape, ctx, None, src, SamplingConfig(steps=3, guidance=1.0), windows=WindowPlan.make(7, 3, 1))
            n = len(plan_spans(7, 3, 1))
            shared = list(seen)
            seen.clear()
            sample(tiny, shape, ctx, None, src, SamplingConfig(steps=3, guidance=1.0),
                   windows=WindowPlan.make(7, 3, 1, semantic="per-window"))
    finally:
        hook.remove()
    assert n == 3 and len(shared) == 3 * n
    for step in range(3):
        calls = shared[step * n:(step + 1) * n]
        assert all(torch.equal(c, calls[0]) for c in calls)
    assert not torch.equal(seen[0], seen[1])  # per-window: each window its own state, from its own noise


# ---- sama edit on a clip several windows long ----------------------------------------------------------------
def _clip_with_audio(path, frames: int, fps: int = 12, width: int = 32) -> None:
    write_clip_with_audio(path, frames, fps=fps, width=width)


@pytest.fixture(scope="module")
def ckpt(tiny_edit_checkpoint):
    return tiny_edit_checkpoint


def _edit(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sama_cli", "edit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_clip_of_several_windows_keeps_every_frame_its_fps_and_audio(ckpt, tmp_path) -> None:
    import json

    from sama_cli.io.video import probe

    clip, out = tmp_path / "long.mp4", tmp_path / "out.mp4"
    _clip_with_audio(clip, 45)  # 45 frames = 12 latent frames; windows of 17 frames = 5 latent frames
    res = _edit(clip, "make it winter", "-o", out, "--model", ckpt, "--steps", "2", "--size", "32x32",
                "--window", "17", "--overlap", "8", "--device", "cpu", "--json")
    assert res.returncode == 0, res.stderr
    info, summary = probe(out), json.loads(res.stdout)
    # 12 latent frames, window 5, overlap 2: ceil(10 / 3) = 4 windows (the clip is 2.6 windows long)
    assert info.frames == 45 and info.fps == 12 and info.has_audio
    assert summary["frames"] == 45 and summary["windows"] == 4 and summary["frames_left_out"] == 0
    assert "45 frames in 4 windows" in res.stderr


def test_max_frames_edits_the_first_frames_and_says_how_many_are_left_out(ckpt, tmp_path) -> None:
    import json

    from sama_cli.io.video import probe

    clip, out = tmp_path / "long.mp4", tmp_path / "out.mp4"
    _clip_with_audio(clip, 45)
    res = _edit(clip, "make it winter", "-o", out, "--model", ckpt, "--steps", "1", "--size", "32x32",
                "--max-frames", "21", "--device", "cpu", "--json")
    assert res.returncode == 0, res.stderr
    assert probe(out).frames == 21 and json.loads(res.stdout)["frames_left_out"] == 24
    assert "editing the first 21 of 45 frames" in res.stderr and "24 frames are left out" in res.stderr


def test_a_window_the_codec_cannot_hold_is_a_one_line_error(ckpt, tmp_path) -> None:
    clip = tmp_path / "long.mp4"
    _clip_with_audio(clip, 13)
    res = _edit(clip, "x", "-o", tmp_path / "out.mp4", "--model", ckpt, "--steps", "1", "--size", "32x32",
                "--window", "10", "--device", "cpu")
    assert res.returncode != 0 and "--window must be 4k+1 frames for this codec (e.g. 9), not 10" in res.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_unresize_undoes_each_fit_by_hand() -> None:
    from sama_cli.io.video import unresize_frames

    g = torch.Generator().manual_seed(0)
    source = torch.randint(0, 256, (2, 32, 64, 3), generator=g, dtype=torch.uint8)
    # crop 32x64 -> 32x32: scale 1, the middle 32 columns (16..47); the borders keep the source's pixels
    out = unresize_frames(torch.full((2, 32, 32, 3), 255, dtype=torch.uint8), source, "crop")
    assert out.shape == (2, 32, 64, 3) and (out[:, :, 16:48] == 255).all()
    assert torch.equal(out[:, :, :16], source[:, :, :16]) and torch.equal(out[:, :, 48:], source[:, :, 48:])
    # letterbox 32x64 -> 32x32: scale 0.5, the picture is rows 8..23; the bars go
    boxed = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    boxed[:, 8:24] = 100
    assert (unresize_frames(boxed, source, "letterbox") == 100).all()
    assert (unresize_frames(torch.full((2, 32, 32, 3), 7, dtype=torch.uint8), source, "stretch") == 7).all()


def test_output_size_source_writes_the_sources_size(ckpt, tmp_path) -> None:
    import json

    from sama_cli.io.video import probe

    clip = tmp_path / "wide.mp4"
    _clip_with_audio(clip, 9, width=64)
    for size, expect in (("working", (32, 32)), ("source", (32, 64))):
        out = tmp_path / f"{size}.mp4"
        res = _edit(clip, "x", "-o", out, "--model", ckpt, "--steps", "1", "--size", "32x32", "--device", "cpu",
                    "--output-size", size, "--json")
        assert res.returncode == 0, res.stderr
        assert (probe(out).height, probe(out).width) == expect and json.loads(res.stdout)["output_size"] == list(expect)
