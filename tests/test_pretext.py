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


def expected_masked_frames(n: int, ratio: float) -> int:
    """The release's run length (MaskRandomFrames): round(n * ratio) whole frames, never frame 0."""
    return min(int(round(n * ratio)), n - 1) if n > 1 else 0


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
            # the pretext is made on the clip's window: the release's trim keeps frames_down(10) = 9 of the 10
            # frames (LoadVideo_decord), pad keeps all 10 and pads the output
            window = {"start": 0, "count": {"trim": 9, "pad": 10}[fit], "stride": 1, "frames_total": 10}
            assert saved["window"] == window and saved["frames_in"] == window["count"] and saved["frames_out"] == n
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    with pytest.raises(InputError, match="too small") as e:  # a pure-tensor error names the file
        perturb_video(src, tmp_path / "x.mp4", "tube-shuffle", 0, task_options("tube-shuffle", splits=(4, 32, 4)),
                      lossless=True)
    assert str(src) in str(e.value) and not (tmp_path / "x.mp4").exists()


# ---- formulas written out by hand (docs/sama.md §5; release diffsynth/trainers/pretext.py) ---------
@pytest.mark.parametrize(("n", "parts", "sizes"), [
    (17, 4, [5, 4, 4, 4]),  # 17 = 4*4 + 1: the one extra frame goes to the first part
    (16, 4, [4, 4, 4, 4]),
    (5, 2, [3, 2]),
    (7, 3, [3, 2, 2]),  # 7 = 3*2 + 1
    (10, 4, [3, 3, 2, 2]),  # 10 = 4*2 + 2: the first two parts take one more
    (17, 2, [9, 8]),  # the paper's 2x2x2 on a 4k+1 clip
    (4, 4, [1, 1, 1, 1]),
])
def test_split_sizes_by_hand_larger_parts_first(n: int, parts: int, sizes: list[int]) -> None:
    # release SwapFourBlocks._split_sizes: base = n // parts, the first n % parts parts get base + 1
    assert split_sizes(n, parts) == sizes


def coords(t: int, h: int, w: int) -> torch.Tensor:
    """A (T, H, W, 3) clip whose every pixel holds its own (t, y, x): a moved value shows where it came from."""
    return torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), dim=-1)


# Hand-cut edges of each axis (from the sizes in the test above), and how many frames the tubes span
# when the last frame is held back (release keep_last_frame).
HAND_TUBES = [
    # 17x16x24 into 4x4x4: T 5,4,4,4; H 4,4,4,4; W 6,6,6,6
    ((17, 16, 24), (4, 4, 4), False, ([0, 5, 9, 13, 17], [0, 4, 8, 12, 16], [0, 6, 12, 18, 24])),
    # the paper's 2x2x2: T 9,8; H 8,8; W 12,12
    ((17, 16, 24), (2, 2, 2), False, ([0, 9, 17], [0, 8, 16], [0, 12, 24])),
    # 7x10x5 into 3x4x2: T 3,2,2; H 3,3,2,2; W 3,2 (several shape groups on every axis)
    ((7, 10, 5), (3, 4, 2), False, ([0, 3, 5, 7], [0, 3, 6, 8, 10], [0, 3, 5])),
    # keep_last_frame: frames 0..15 are cut (4,4,4,4), frame 16 stays where it is
    ((17, 16, 24), (4, 4, 4), True, ([0, 4, 8, 12, 16], [0, 4, 8, 12, 16], [0, 6, 12, 18, 24])),
]


@pytest.mark.parametrize(("shape", "splits", "keep_last", "edges"), HAND_TUBES)
def test_tube_shuffle_moves_whole_hand_cut_tubes_of_equal_shape(shape, splits, keep_last, edges) -> None:
    x = coords(*shape)
    out, rec = tube_shuffle(x, g(3), splits=splits, keep_last_frame=keep_last)
    spans = [list(zip(e[:-1], e[1:], strict=True)) for e in edges]
    tubes = [(a, b, c) for a in spans[0] for b in spans[1] for c in spans[2]]  # T/H/W order, as the record
    moved = set()
    for dst, ((t0, t1), (y0, y1), (x0, x1)) in enumerate(tubes):
        block = out[t0:t1, y0:y1, x0:x1]
        # the block's first pixel names the tube it came from: one of the hand tubes, of the same shape
        src = tubes.index(tuple(zip(block[0, 0, 0].tolist(), block[-1, -1, -1].add(1).tolist(), strict=True)))
        (s0, s1), (r0, r1), (q0, q1) = tubes[src]
        assert (s1 - s0, r1 - r0, q1 - q0) == (t1 - t0, y1 - y0, x1 - x0)
        assert torch.equal(block, x[s0:s1, r0:r1, q0:q1]) and rec["perm"][dst] == src
        if src != dst:
            moved.add(dst)
    assert moved  # not the identity
    if keep_last:
        assert torch.equal(out[16], x[16])


def test_tube_shuffle_4x4x4_on_17_frames_keeps_the_first_5_frames_apart() -> None:
    # T splits 5,4,4,4: tubes 0..15 (frames 0-4) form one group, tubes 16..63 (4 frames each) the other
    out, rec = tube_shuffle(coords(17, 16, 24), g(3))
    perm = rec["perm"]
    assert sorted(perm[:16]) == list(range(16)) and sorted(perm[16:]) == list(range(16, 64))
    assert perm[:16] != list(range(16)) and perm[16:] != list(range(16, 64))
    assert set(out[:5, ..., 0].unique().tolist()) == set(range(5))  # frames 0-4 only ever hold frames 0-4


@pytest.mark.parametrize(("n", "k"), [(17, 5), (9, 3), (33, 10), (49, 15), (81, 24), (3, 1), (2, 1)])
def test_cube_inpaint_release_run_length_and_every_start_by_hand(n: int, k: int) -> None:
    # k = round(0.3 n): 5.1, 2.7, 9.9, 14.7, 24.3, 0.9, 0.6; the run starts at 1..n-k (never frame 0, and
    # it may end on the last frame), uniformly (release MaskRandomFrames)
    x = clip(t=n, h=2, w=2)
    starts = set()
    for seed in range(20 * (n - k)):  # 20 draws per possible start: missing one has odds below 1e-7
        out, rec = cube_inpaint(x, g(seed))
        black = (out == 0).flatten(1).all(1).nonzero().flatten().tolist()
        assert black == list(range(rec["start"], rec["start"] + k))
        starts.add(rec["start"])
    assert starts == set(range(1, n - k + 1))


def test_cube_inpaint_cube_mode_box_sides_by_hand() -> None:
    # each side is ratio^(1/3) = 0.6694 of its axis, the time axis being the 32 frames after frame 0:
    # round(32 * 0.6694) = round(21.42) = 21 on every axis of a 33x32x32 clip
    _, rec = cube_inpaint(clip(t=33, h=32, w=32), g(1), mode="cube")
    t0, t1, y0, y1, x0, x1 = rec["box"]
    assert (t1 - t0, y1 - y0, x1 - x0) == (21, 21, 21) and t0 >= 1


def test_speed_indices_by_hand_half_to_even_and_clipped() -> None:
    # release SpeedChangeFrames: n_out = round(n / s), frame i is input round(i s), at most n - 1;
    # Python rounds halves to even
    assert speed_indices(9, 2.0) == [0, 2, 4, 6]  # round(4.5) = 4 output frames, not 5
    assert speed_indices(16, 2.0) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert speed_indices(18, 0.5) == [0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6, 6, 6, 7, 8, 8, 8, 9, 10, 10, 10,
                                      11, 12, 12, 12, 13, 14, 14, 14, 15, 16, 16, 16, 17, 17]  # 17.5 -> 18 -> 17
    assert speed_indices(5, 4.0) == [0]  # round(1.25) = 1 frame
