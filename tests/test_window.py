"""One frame window per row (issue 15): the pretext is made on exactly the frames that are encoded.

Release facts the expected values are worked from (Cynthiazxy123/SAMA @ 5c6bb5b):
- diffsynth/trainers/unified_dataset.py, LoadVideo_decord.get_num_frames: a clip gives its first
  num_frames = 81 frames (a shorter clip: its length brought down to 1 + 4k), consecutive, from frame 0.
- same file, UnifiedDataset.__getitem__: OpenVE-3M pairs drop the first 4 of those frames (`[4:]`), so
  they keep frames 4..80, 77 of them.
- diffsynth/trainers/pretext.py, SpeedChangeFrames._sample_speed: a toggle that starts False flips before
  each sample and returns speed_choices[1] when True: with (0.5, 2.0) the samples get 2x, 0.5x, 2x, ...
  Output frame i is input frame round(i * s), round(n / s) frames, trimmed to 1 + 4k.
- MaskRandomFrames: one run of round(0.3 n) frames, never frame 0.

The clips are 200 frames of 16x16 whose pixels carry their frame index (red = index, green = 255 - index,
so no frame is black), written losslessly; the `pixel` codec decodes latents back to those exact bytes,
so every test can read off which file frames were encoded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sama_cli.data.latents import EncodeOptions, encode
from sama_cli.data.pretext import speed_factor, unshuffle
from sama_cli.data.pretext_files import mix, perturb_file, task_options
from sama_cli.io.artifacts import load_artifact
from sama_cli.io.frames import Window, WindowRule, choose_window
from sama_cli.io.manifest import read_manifest
from sama_cli.io.video import write_video
from sama_cli.model.vae import load_codec

CPU = torch.device("cpu")
N = 200


def painted(n: int = N, blue: int = 7) -> torch.Tensor:
    """(n, 16, 16, 3) uint8: frame i is (i, 255 - i, blue) everywhere."""
    idx = torch.arange(n, dtype=torch.uint8)
    frames = torch.empty(n, 16, 16, 3, dtype=torch.uint8)
    frames[..., 0] = idx[:, None, None]
    frames[..., 1] = (255 - idx)[:, None, None]
    frames[..., 2] = blue
    return frames


def clip_file(path: Path, n: int = N, blue: int = 7) -> Path:
    return write_video(path, painted(n, blue), 24, lossless=True)


def decoded(path: str) -> torch.Tensor:
    """The frames a latent artifact holds, as uint8 (T, H, W, 3) (the pixel codec is exact)."""
    x = load_codec("pixel").decode(load_artifact(path, "latents")["latents"][None])[0]  # (3, T, H, W)
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)


def frame_ids(frames: torch.Tensor) -> list[int]:
    """The file frame each frame shows (its top-left pixel's red), -1 for a black frame."""
    return [int(f[0, 0, 0]) if f.any() else -1 for f in frames]


def t2v_manifest(folder: Path, ids: list[str], extra: dict | None = None) -> Path:
    clip_file(folder / "clip.mp4")
    rows = [{"id": i, "kind": "t2v", "target": "clip.mp4", "caption": "a painted clip", **(extra or {})} for i in ids]
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "m.jsonl"


def only(task: str) -> tuple[float, ...]:
    """A task ratio that draws `task` for every row (none:inpaint:speed:shuffle)."""
    return tuple(float(t == task) for t in ("none", "cube-inpaint", "speed", "tube-shuffle"))


def run_encode(manifest: Path, out: Path, **opts):
    summary, _ = encode([str(manifest)], out, codec=load_codec("pixel"), device=CPU,
                        opts=EncodeOptions(size=(16, 16), **opts))
    rows = read_manifest(out / "manifest.jsonl").rows if (out / "manifest.jsonl").is_file() else []
    return summary, {r["id"]: r for r in rows}


# ---- the window rule, by hand ----------------------------------------------------------------------
@pytest.mark.parametrize(("total", "kwargs", "expect"), [
    (200, {}, (0, 81, 1)),  # the first 81 frames: 0..80
    (200, {"skip": 4}, (4, 77, 1)),  # OpenVE-3M: 81 read, [4:] keeps 4..80 = 77 (already 1 + 4k)
    (81, {"skip": 4}, (4, 77, 1)),
    (200, {"skip": 2}, (2, 77, 1)),  # 2..80 = 79 frames, trimmed to 77 = 1 + 4*19
    (200, {"skip": 2, "fit": "pad"}, (2, 79, 1)),  # pad keeps the 79 (the encoder pads them)
    (46, {}, (0, 45, 1)),  # a short clip: 46 brought down to 45 = 1 + 4*11 (get_num_frames)
    (46, {"fit": "pad"}, (0, 46, 1)),
    (200, {"stride": 2}, (0, 81, 2)),  # frames 0, 2, ..., 160
    (200, {"stride": 2, "skip": 4}, (4, 77, 2)),  # 0 and 2 dropped from the 81: 4, 6, ..., 156
    (200, {"stride": 3, "skip": 4}, (6, 65, 3)),  # only 67 strided frames (0..198); 0 and 3 lie before 4: 65
    (200, {"max_frames": None}, (0, 197, 1)),  # no budget: 200 -> 197 = 1 + 4*49
    (200, {"max_frames": 49, "skip": 4}, (4, 45, 1)),  # 49 read, 45 after the skip
    (1, {"skip": 4}, (0, 1, 1)),  # an image has nothing to skip
    (5, {"skip": 4}, (4, 1, 1)),
])
def test_choose_window_follows_the_release_rule_worked_by_hand(total, kwargs, expect) -> None:
    w = choose_window(total, **kwargs)
    assert (w.start, w.count, w.stride, w.frames_total) == (*expect, total)
    assert w.end <= total and w.indices()[:2] == [expect[0], expect[0] + expect[2]][: expect[1]]


def test_window_refusals_and_records() -> None:
    with pytest.raises(ValueError, match="leaves none"):
        choose_window(3, skip=4)
    with pytest.raises(ValueError, match="runs past"):
        Window(190, 81, 1, 200)
    with pytest.raises(ValueError, match="unknown window keys"):
        Window.from_dict({"start": 0, "count": 5, "length": 5})
    assert Window.from_dict({"start": 4, "count": 77}).as_dict() == {"start": 4, "count": 77, "stride": 1}
    assert Window(4, 3, 2).indices() == [4, 6, 8] and Window(4, 3, 2).end == 9


def test_speed_alternation_is_the_release_toggle_worked_by_hand() -> None:
    # toggle off; sample 0: on -> choices[1] = 2.0; sample 1: off -> choices[0] = 0.5; ...
    assert [speed_factor(k) for k in range(5)] == [2.0, 0.5, 2.0, 0.5, 2.0]
    assert [speed_factor(k, (2.0,)) for k in range(3)] == [2.0, 2.0, 2.0]
    assert [speed_factor(k, (0.75, 1.5)) for k in range(3)] == [1.5, 0.75, 1.5]
    with pytest.raises(ValueError, match="one or two"):
        speed_factor(0, (0.5, 1.0, 2.0))


# ---- the long clip: each pretext, source and target on the same window ----------------------------
def mixed(tmp_path: Path, task: str, ids: list[str], extra: dict | None = None, **kw) -> tuple[dict, dict]:
    manifest = t2v_manifest(tmp_path, ids, extra)
    rows, _ = mix(str(manifest), tmp_path / "mix", seed=0, task_ratio=only(task), **kw)
    summary, enc = run_encode(tmp_path / "mix" / "manifest.jsonl", tmp_path / "lat")
    assert not summary.failed, summary.failed
    return {r["id"]: r for r in rows}, enc


def assert_target_is_window(row: dict, start: int, count: int) -> torch.Tensor:
    """The encoded target is exactly file frames start..start+count-1, and its meta says so."""
    window = {"start": start, "count": count, "stride": 1, "frames_total": N}
    assert row["window"] == window
    art = load_artifact(row["artifacts"]["target_latents"], "latents")
    assert art.meta["window"] == window and art.meta["read"] == "window"
    target = decoded(row["artifacts"]["target_latents"])
    assert torch.equal(target, painted()[start : start + count])
    return target


def test_none_encodes_the_window_only(tmp_path: Path) -> None:
    rows, enc = mixed(tmp_path, "none", ["a"])
    assert rows["a"]["window"] == {"start": 0, "count": 81, "stride": 1, "frames_total": N}
    assert "source_latents" not in enc["a"]["artifacts"]
    assert_target_is_window(enc["a"], 0, 81)


def test_cube_inpaint_masks_inside_the_window(tmp_path: Path) -> None:
    rows, enc = mixed(tmp_path, "cube-inpaint", ["a"])
    rec = rows["a"]["pretext"]
    target = assert_target_is_window(enc["a"], 0, 81)
    assert rec["window"] == enc["a"]["window"] and rec["frames_in"] == rec["frames_out"] == 81
    assert 1 <= rec["start"] and rec["end"] == rec["start"] + 24 <= 81  # round(0.3 * 81) = 24 of the 81
    source = decoded(enc["a"]["artifacts"]["source_latents"])
    ids = frame_ids(source)
    assert ids == [-1 if rec["start"] <= i < rec["end"] else i for i in range(81)]
    kept = [i for i in range(81) if ids[i] >= 0]
    assert torch.equal(source[kept], target[kept])
    meta = load_artifact(enc["a"]["artifacts"]["source_latents"], "latents").meta
    assert meta["read"] == "whole" and meta["window"] == enc["a"]["window"]


def test_speed_2x_then_half_alternate_and_stay_inside_the_window(tmp_path: Path) -> None:
    rows, enc = mixed(tmp_path, "speed", ["a", "b", "c"])
    assert [rows[i]["pretext"]["factor"] for i in "abc"] == [2.0, 0.5, 2.0]  # the release's toggle, in row order
    assert [rows[i]["pretext"]["speed_index"] for i in "abc"] == [0, 1, 2]
    for i in "abc":
        assert_target_is_window(enc[i], 0, 81)
    # 2x: round(81 / 2) = round(40.5) = 40 frames (half to even), trimmed to 37: file frames 0, 2, ..., 72
    fast = rows["a"]["pretext"]
    assert fast["indices"] == list(range(0, 74, 2)) and fast["frames_out"] == 37
    assert frame_ids(decoded(enc["a"]["artifacts"]["source_latents"])) == list(range(0, 74, 2))
    # 0.5x: round(81 / 0.5) = 162 frames, trimmed to 161; frame j is round(j / 2) half to even
    slow = rows["b"]["pretext"]
    assert slow["frames_out"] == 161 and slow["indices"][:10] == [0, 0, 1, 2, 2, 2, 3, 4, 4, 4]
    assert slow["indices"][-3:] == [79, 80, 80] and max(slow["indices"]) == 80  # never past the window's last
    assert frame_ids(decoded(enc["b"]["artifacts"]["source_latents"])) == slow["indices"]


def test_tube_shuffle_moves_tubes_of_the_window_only(tmp_path: Path) -> None:
    rows, enc = mixed(tmp_path, "tube-shuffle", ["a"])
    rec = rows["a"]["pretext"]
    target = assert_target_is_window(enc["a"], 0, 81)
    source = decoded(enc["a"]["artifacts"]["source_latents"])
    assert source.shape == target.shape and not torch.equal(source, target)
    assert int(source[..., 0].max()) <= 80  # no pixel comes from beyond the window (old bug: up to 199)
    assert torch.equal(unshuffle(source, rec), target)


def test_skip_frames_moves_the_window_start(tmp_path: Path) -> None:
    """Per row (skip_frames 4, OpenVE-3M) and per manifest (--skip-frames 2), for a pretext row and an
    edit pair, at perturb time and at encode time."""
    rows, enc = mixed(tmp_path / "row", "cube-inpaint", ["a"], {"skip_frames": 4})
    assert rows["a"]["window"] == {"start": 4, "count": 77, "stride": 1, "frames_total": N}
    rec = rows["a"]["pretext"]
    assert rec["end"] - rec["start"] == 23  # round(0.3 * 77) = 23
    source = frame_ids(decoded(enc["a"]["artifacts"]["source_latents"]))
    assert source == [-1 if rec["start"] <= i < rec["end"] else 4 + i for i in range(77)]
    assert_target_is_window(enc["a"], 4, 77)
    manifest = t2v_manifest(tmp_path, ["b", "c"])
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    lines[1]["skip_frames"] = 4  # a row's own skip wins over the manifest's
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    mixed_rows, _ = mix(str(manifest), tmp_path / "mix2", seed=0, task_ratio=only("none"), rule=WindowRule(skip=2))
    assert [r["window"]["start"] for r in mixed_rows] == [2, 4] and [r["window"]["count"] for r in mixed_rows] == [77, 77]
    # edit pairs get their window at encode time: one for both clips; --fit pad (encode's default) keeps 79
    clip_file(tmp_path / "src.mp4", blue=50)
    pair = {"id": "e", "kind": "video_edit", "source": "src.mp4", "target": "clip.mp4", "instruction": "x"}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(pair) + "\n" + json.dumps({**pair, "id": "f", "skip_frames": 4})
                                          + "\n")
    summary, enc = run_encode(tmp_path / "pairs.jsonl", tmp_path / "lat_pairs", skip_frames=2)
    assert not summary.failed
    assert enc["e"]["window"] == {"start": 2, "count": 79, "stride": 1, "frames_total": N}
    assert enc["f"]["window"] == {"start": 4, "count": 77, "stride": 1, "frames_total": N}
    for rid, start, count in (("e", 2, 79), ("f", 4, 77)):
        for key, blue in (("source", 50), ("target", 7)):
            frames = decoded(enc[rid]["artifacts"][f"{key}_latents"])
            assert torch.equal(frames, painted(blue=blue)[start : start + count]), (rid, key)


def test_edit_pair_of_unequal_lengths_shares_the_shorter_window(tmp_path: Path) -> None:
    clip_file(tmp_path / "long.mp4", 200)
    clip_file(tmp_path / "short.mp4", 60, blue=50)
    pair = {"id": "p", "kind": "video_edit", "source": "short.mp4", "target": "long.mp4", "instruction": "x"}
    (tmp_path / "m.jsonl").write_text(json.dumps(pair) + "\n")
    summary, enc = run_encode(tmp_path / "m.jsonl", tmp_path / "lat", max_frames=None)
    assert not summary.failed
    assert enc["p"]["window"] == {"start": 0, "count": 60, "stride": 1, "frames_total": 60}
    assert frame_ids(decoded(enc["p"]["artifacts"]["source_latents"])) == list(range(60))
    assert frame_ids(decoded(enc["p"]["artifacts"]["target_latents"])) == list(range(60))


def test_single_file_perturb_records_its_window(tmp_path: Path) -> None:
    src = clip_file(tmp_path / "clip.mp4")
    rec = perturb_file(src, tmp_path / "s.mp4", "speed", 0, task_options("speed"))
    assert rec["window"] == {"start": 0, "count": 81, "stride": 1, "frames_total": N}
    assert (rec["factor"], rec["speed_index"], rec["order"]) == (2.0, 0, "alternate")  # one clip: the first sample
    assert json.loads((tmp_path / "s.mp4.json").read_text())["window"] == rec["window"]
    rec = perturb_file(src, tmp_path / "m.mp4", "cube-inpaint", 0, task_options("cube-inpaint"),
                       rule=WindowRule(skip=4))
    assert rec["window"]["start"] == 4 and rec["frames_in"] == 77 and rec["end"] <= 77
    rec = perturb_file(src, tmp_path / "r.mp4", "speed", 0, task_options("speed", speed_order="random"))
    assert rec["order"] == "random" and rec["factor"] in (0.5, 2.0) and "speed_index" not in rec


# ---- disagreements are the row's error ---------------------------------------------------------------
def test_rows_whose_window_disagrees_fail_by_name(tmp_path: Path) -> None:
    mixed(tmp_path, "tube-shuffle", ["a"])
    base = json.loads((tmp_path / "mix" / "manifest.jsonl").read_text())
    mix_dir = tmp_path / "mix"
    clip_file(mix_dir / "short.mp4", 60)
    bad = {
        "shorter": {**base, "id": "shorter", "target": "short.mp4"},  # the target changed since perturb
        "nowindow": {k: v for k, v in {**base, "id": "nowindow"}.items() if k != "window"},
        "otherwin": {**base, "id": "otherwin", "window": {"start": 4, "count": 77, "stride": 1, "frames_total": N}},
    }
    (mix_dir / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad.values()))
    summary, enc = run_encode(mix_dir / "bad.jsonl", tmp_path / "lat_bad")
    errors = {f["id"]: f["error"] for f in summary.failed}
    assert set(errors) == {"shorter", "nowindow", "otherwin"} and not enc
    assert errors["shorter"].startswith("row 'shorter':") and "chosen from a clip of 200 frames" in errors["shorter"]
    assert errors["nowindow"].startswith("row 'nowindow':") and "no frame window" in errors["nowindow"]
    assert errors["otherwin"].startswith("row 'otherwin':") and "made on 81 frames" in errors["otherwin"]
    # --max-frames below the window would cut the target and not the perturbed source
    summary, enc = run_encode(mix_dir / "manifest.jsonl", tmp_path / "lat_cut", max_frames=49)
    [failed] = summary.failed
    assert failed["id"] == "a" and failed["error"].startswith("row 'a':") and "--max-frames is 49" in failed["error"]


# ---- the flags ---------------------------------------------------------------------------------------
def sama(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_cli_window_flags_reach_perturb_and_encode(tmp_path: Path) -> None:
    manifest = t2v_manifest(tmp_path, ["a", "b"])
    res = sama("perturb", "--mix", manifest, "-o", tmp_path / "mix", "--task-ratio", "0,0,1,0", "--skip-frames", "4",
               "--stride", "2")
    assert res.returncode == 0, res.stderr
    res = sama("encode", tmp_path / "mix" / "manifest.jsonl", "-o", tmp_path / "lat", "--vae", "pixel", "--size",
               "16x16", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in read_manifest(tmp_path / "lat" / "manifest.jsonl").rows}
    for rid, factor in (("a", 2.0), ("b", 0.5)):
        row = rows[rid]
        # stride 2 from frame 0: 0, 2, ..., 160 are the 81; 0 and 2 lie before frame 4: 4, 6, ..., 156 (77)
        assert row["window"] == {"start": 4, "count": 77, "stride": 2, "frames_total": N}
        assert row["pretext"]["factor"] == factor
        assert frame_ids(decoded(row["artifacts"]["target_latents"])) == list(range(4, 157, 2))
        source = frame_ids(decoded(row["artifacts"]["source_latents"]))
        assert source == [4 + 2 * i for i in row["pretext"]["indices"]] and max(source) <= 156
    # 2x of 77 frames: round(38.5) = 38 (half to even) -> 37 frames, window frames 0, 2, ..., 72
    assert rows["a"]["pretext"]["indices"] == list(range(0, 73, 2))
    from sama_cli.commands.perturb import _task_options
    from sama_cli.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--speed-order random"):  # the release alternates two factors
        _task_options(fit="trim", ratio=0.3, mask_mode="temporal", factors="0.5,1,2", splits="4,4,4")
    assert _task_options(fit="trim", ratio=0.3, mask_mode="temporal", factors="0.5,1,2", splits="4,4,4",
                         speed_order="random")["speed"] == {"factors": (0.5, 1.0, 2.0), "order": "random"}
