"""Pretext properties: what each perturbation does, exactly, and that a seed fixes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sama_cli.core.errors import InputError
from sama_cli.data.pretext import (
    TASK_PREFIXES,
    apply_task,
    choose_task,
    cube_inpaint,
    expected_masked_frames,
    perturb_latents,
    perturb_pixels,
    row_generator,
    speed,
    speed_indices,
    split_sizes,
    tube_shuffle,
    unshuffle,
)


def clip(t=17, h=16, w=24, seed=0) -> torch.Tensor:
    return torch.randint(1, 256, (t, h, w, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def g(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(6))
def test_cube_inpaint_release_masks_one_run_of_the_ratio_never_frame_0(seed: int) -> None:
    x = clip()
    out, rec = cube_inpaint(x, g(seed))
    black = (out == 0).flatten(1).all(1)
    assert int(black.sum()) == expected_masked_frames(17, 0.3) == 5
    assert not black[0] and black.nonzero().flatten().tolist() == list(range(rec["start"], rec["end"]))
    assert torch.equal(out[~black], x[~black])


def test_cube_inpaint_cube_mode_covers_about_the_ratio() -> None:
    x = clip(t=33, h=32, w=32)
    out, rec = cube_inpaint(x, g(1), mode="cube")
    t0, t1, y0, y1, x0, x1 = rec["box"]
    assert t0 >= 1 and abs((t1 - t0) * (y1 - y0) * (x1 - x0) / (32 * 32 * 32) - 0.3) < 0.05
    assert (out[t0:t1, y0:y1, x0:x1] == 0).all() and torch.equal(out[0], x[0])


def test_speed_2x_keeps_every_other_frame_and_half_repeats() -> None:
    x = clip(t=17)
    fast, rec = speed(x, g(), factor=2.0)
    # round(17 / 2) = 8 output frames (Python rounds half to even) -> trimmed to 5 (4k+1)
    assert rec["frames_out"] == 5 and torch.equal(fast, x[[0, 2, 4, 6, 8]])
    slow, rec = speed(x, g(), factor=0.5)
    idx = speed_indices(17, 0.5)  # round(i / 2): 0,0,1,2,2,2,3,4,4,4,... (half to even)
    assert idx[:6] == [0, 0, 1, 2, 2, 2] and len(idx) == 34
    assert slow.shape[0] == 33 and torch.equal(slow, x[idx[:33]])
    padded, _ = speed(x, g(), factor=2.0, fit="pad")
    assert padded.shape[0] == 9 and torch.equal(padded[8], x[14])
    drawn = {speed(x, g(s))[1]["factor"] for s in range(20)}
    assert drawn == {0.5, 2.0}


@pytest.mark.parametrize("splits", [(4, 4, 4), (2, 2, 2), (3, 4, 5)])
def test_tube_shuffle_permutes_whole_equal_tubes_and_inverts(splits) -> None:
    x = clip(t=17, h=16, w=24)
    out, rec = tube_shuffle(x, g(3), splits=splits)
    assert torch.equal(unshuffle(out, rec), x)
    assert sorted(rec["perm"]) == list(range(len(rec["perm"])))
    assert rec["perm"] != list(range(len(rec["perm"])))
    sizes = [split_sizes(n, p) for n, p in zip((17, 16, 24), splits, strict=True)]
    shapes = [(a, b, c) for a in sizes[0] for b in sizes[1] for c in sizes[2]]
    assert all(shapes[d] == shapes[s] for d, s in enumerate(rec["perm"]))  # only equal shapes swap
    assert torch.equal(out.sort(dim=0).values.sum(), x.sort(dim=0).values.sum())  # same pixels, moved


def test_same_seed_same_output_and_row_seeding() -> None:
    x = clip()
    for fn in (cube_inpaint, tube_shuffle, speed):
        a, ra = fn(x, g(7))
        b, rb = fn(x, g(7))
        assert torch.equal(a, b) and ra == rb
    assert choose_task((1, 2, 3, 4), row_generator(0, "a")) == choose_task((1, 2, 3, 4), row_generator(0, "a"))
    counts = {t: 0 for t in TASK_PREFIXES}
    for i in range(2000):
        counts[choose_task((1, 2, 3, 4), row_generator(0, f"r{i}"))] += 1
    shares = [counts[t] / 2000 for t in ("none", "cube-inpaint", "speed", "tube-shuffle")]
    assert all(abs(s - e) < 0.04 for s, e in zip(shares, (0.1, 0.2, 0.3, 0.4), strict=True))


def test_latent_fast_path_matches_pixel_codec_and_refuses_speed() -> None:
    from sama_cli.model.vae import load_codec

    codec = load_codec("pixel")
    x = clip(t=9, h=16, w=16)
    z = codec.encode(x.permute(3, 0, 1, 2)[None].float() / 127.5 - 1)[0]
    pixel, rec = cube_inpaint(x, g(2))
    latent, lrec = perturb_latents(z, "cube-inpaint", g(2), fill=-2.0)
    assert lrec["start"] == rec["start"] and lrec["space"] == "latent"
    back = ((codec.decode(latent[None])[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    assert torch.equal(back, pixel)  # with the pixel codec, masking latents == masking pixels
    with pytest.raises(InputError, match="speed perturbation"):
        perturb_latents(z, "speed", g())
    assert TASK_PREFIXES["cube-inpaint"] == "[Complete the missing regions in the video.]"


PIXEL_TASKS = ("cube-inpaint", "speed", "tube-shuffle")


# 48 frames in: inpaint and shuffle keep 48 -> 45 (trim) or 49 (pad); speed 2x gives 24 -> 21 or 25,
# 0.5x gives 96 -> 93 or 97
FRAMES_OUT_48 = {("trim", "speed"): {21, 93}, ("pad", "speed"): {25, 97}, ("trim", "other"): {45},
                 ("pad", "other"): {49}}


@pytest.mark.parametrize("fit", ["trim", "pad"])
@pytest.mark.parametrize("task", PIXEL_TASKS)
def test_pixel_outputs_have_4k1_frames_for_every_task(task: str, fit: str) -> None:
    x = clip(t=48)
    options = {"splits": (2, 2, 2)} if task == "tube-shuffle" else {}
    for seed in range(4):
        out, rec = perturb_pixels(x, task, g(seed), fit=fit, **options)
        n = out.shape[0]
        assert n % 4 == 1 and n in FRAMES_OUT_48[fit, "speed" if task == "speed" else "other"]
        assert rec["frames_in"] == 48 and rec["frames_out"] == n and rec["fit"] == fit and rec["space"] == "pixel"
        if task == "tube-shuffle":  # the recorded permutation inverts the frames written
            assert torch.equal(unshuffle(out, rec), x[:45] if fit == "trim" else torch.cat([x, x[-1:]]))
        if task == "cube-inpaint":  # the ratio holds for the frames written
            black = (out == 0).flatten(1).all(1)
            assert int(black.sum()) == expected_masked_frames(n, 0.3) and not black[0]


@pytest.mark.parametrize("task", PIXEL_TASKS)
def test_pixel_path_leaves_4k1_clips_as_the_plain_task_does(task: str) -> None:
    x = clip(t=17)
    for fit in ("trim", "pad"):
        out, rec = perturb_pixels(x, task, g(5), fit=fit)
        plain, plain_rec = apply_task(task, x, g(5), **({"fit": fit} if task == "speed" else {}))
        assert torch.equal(out, plain) and {k: rec[k] for k in plain_rec} == plain_rec


def test_perturb_video_writes_a_4k1_clip_and_its_record_beside_it(tmp_path: Path) -> None:
    from sama_cli.data.pretext_files import perturb_video, record_path, task_options
    from sama_cli.io.video import read_video, write_video

    src = write_video(tmp_path / "in.mp4", clip(t=10, h=16, w=16), 8, lossless=True)
    for task in PIXEL_TASKS:
        for fit, frames in (("trim", 9), ("pad", 13)):
            dst = tmp_path / f"{task}-{fit}.mp4"
            opts = task_options(task, splits=(2, 2, 2), factors=(0.5,))
            record = perturb_video(src, dst, task, 3, opts, fit=fit, lossless=True)
            n = read_video(dst).num_frames
            assert n % 4 == 1 and (task == "speed" or n == frames)
            saved = json.loads(record_path(dst).read_text())
            assert saved == json.loads(json.dumps(record)) and record_path(dst).name == f"{task}-{fit}.mp4.json"
            assert (saved["task"], saved["seed"], saved["prefix"]) == (task, 3, TASK_PREFIXES[task])
            assert saved["frames_in"] == 10 and saved["frames_out"] == n
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    with pytest.raises(InputError, match="too small") as e:  # a pure-tensor error names the file
        perturb_video(src, tmp_path / "x.mp4", "tube-shuffle", 0, task_options("tube-shuffle", splits=(4, 32, 4)),
                      lossless=True)
    assert str(src) in str(e.value) and not (tmp_path / "x.mp4").exists()
