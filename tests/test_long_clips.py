"""Whole videos on the toy world (issue 16, `make long-videos`): which frames sit next to a window boundary,
the frame-to-frame measures, the document, and batch mode over a long and a short clip. Expected values by
hand from the window plan."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from conftest import write_clip_with_audio

from sama_cli.edit.windows import plan_spans
from sama_cli.toy.long_clips import (
    change_error,
    cut_spans,
    frame_classes,
    frame_differences,
    pair_classes,
    render_doc,
    score_clip,
    summarise,
)


def test_frames_next_to_a_boundary_by_hand() -> None:
    # 13 latent frames, window 5, overlap 2: windows (0,5) (2,7) (5,10) (8,13) (tests/test_long_edit.py);
    # frame -> windows: 0 {0} 1 {0} 2-4 {0,1} 5-6 {1,2} 7 {2} 8-9 {2,3} 10-12 {3}
    spans = plan_spans(13, 5, 2)
    assert spans == [(0, 5), (2, 7), (5, 10), (8, 13)]
    b, m, e = "boundary", "middle", "end"
    assert frame_classes(spans, 13, 1) == [e, e, b, b, b, b, b, m, b, b, e, e, e]
    # a window starts or ends between t and t+1 at t = 1 (window 1 starts), 4 (0 ends), 6 (1 ends),
    # 7 (3 starts... no: 2 alone -> 2,3), 9 (2 ends)
    across = [1, 4, 6, 7, 9]
    assert pair_classes(spans, 13, 1) == ["across" if t in across else "inside" for t in range(12)]
    # the toy model's own plan for a 29-frame clip: windows start 0, 3, ..., 24; overlaps {3,4} ... {24,25}
    classes = frame_classes(plan_spans(29, 5, 2), 29, 1)
    assert [f for f, c in enumerate(classes) if c == m] == [5, 8, 11, 14, 17, 20, 23]
    assert [f for f, c in enumerate(classes) if c == e] == [0, 1, 2, 26, 27, 28]
    assert classes.count(b) == 16
    # the Wan VAE's latent frames: frame 0 alone, then frames 1-4, 5-8; windows (0,2) and (1,3) share latent 1
    assert frame_classes([(0, 2), (1, 3)], 9, 4) == [e] + [b] * 4 + [e] * 4
    assert pair_classes([(0, 2), (1, 3)], 9, 4) == ["across"] + ["inside"] * 3 + ["across"] + ["inside"] * 3
    # one window: nothing is next to a boundary; cut pieces meet without overlap
    assert frame_classes([(0, 5)], 5, 1) == [e] * 5 and pair_classes([(0, 5)], 5, 1) == ["inside"] * 4
    assert cut_spans(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert [t for t, p in enumerate(pair_classes(cut_spans(12, 5), 12, 1)) if p == "across"] == [4, 9]


def test_frame_differences_on_a_hand_made_clip() -> None:
    # two pixels: frame 0 black; frame 1 pixel 0 at 30; frame 2 pixel 1 at 30 (pixel 0 back to 0); frame 3
    # white -> |f1 - f0| = (30*3 + 0) / 6 = 15; |f2 - f1| = (30*3 + 30*3) / 6 = 30 (one up, one down: no
    # cancelling); |f3 - f2| = (255*3 + 225*3) / 6 = 240
    clip = torch.zeros(4, 1, 2, 3, dtype=torch.uint8)
    clip[1, 0, 0] = 30
    clip[2, 0, 1] = 30
    clip[3] = 255
    assert frame_differences(clip).tolist() == [15.0, 30.0, 240.0]
    # the truth moves the other way: its change 0 -> 30 at pixel 1; the edit's change at pixel 0.
    # error of the change, pair 0: |30 - 0| at pixel 0 and |0 - 30| at pixel 1 -> (30*3 + 30*3) / 6 = 30
    truth = torch.zeros(4, 1, 2, 3, dtype=torch.uint8)
    truth[1:, 0, 1] = 30
    assert change_error(clip, truth)[0].item() == 30.0
    assert change_error(truth, truth).tolist() == [0.0, 0.0, 0.0]  # the truth's own motion is no error


def _toy_record(frames: int) -> dict:
    from sama_cli.toy.world import generate

    sample = generate(1, 0, 0, seed=5, frames=frames)[0]
    return {**sample.record(8.0), "id": sample.id}


def test_score_clip_pools_each_class_like_the_oracle() -> None:
    from sama_cli.toy.world import Edit, Scene, edit_mask, oracle_scores, render

    record = _toy_record(13)
    src, tgt = Scene.from_dict(record["source"]), Scene.from_dict(record["target"])
    truth, mask = render(tgt), edit_mask(src, tgt, Edit(**record["edit"]))
    spans = plan_spans(13, 5, 2)
    classes, pairs = frame_classes(spans, 13, 1), pair_classes(spans, 13, 1)
    # right on frames next to a boundary and mid-clip, 128 off in every channel (beyond the tolerance of 48)
    # on the clip's end frames (0, 1, 10, 11, 12)
    end = torch.tensor([c == "end" for c in classes])
    interior = torch.tensor([c != "boundary" for c in classes])
    pred = torch.where(end.view(-1, 1, 1, 1), truth + 128, truth)
    s = score_clip(pred, record, classes, pairs)
    assert s["acc"]["boundary"] == 1.0 and s["acc"]["middle"] == 1.0
    assert s["acc"]["interior"] == pytest.approx(int(mask[interior & ~end].sum()) / int(mask[interior].sum()))
    assert 0 < s["acc"]["interior"] < 1
    assert s["acc"]["all"] == pytest.approx(int(mask[~end].sum()) / int(mask.sum()))
    # over all frames it is the oracle's own edit accuracy (here of the unedited source)
    source = render(src)
    got = score_clip(source, record, classes, pairs)["acc"]["all"]
    assert got == pytest.approx(oracle_scores(source, record)["edit_accuracy"], abs=1e-12)
    # the truth itself: every class right, no error of the change anywhere
    exact = score_clip(truth, record, classes, pairs)
    assert all(v == 1.0 for v in exact["acc"].values())
    assert exact["diff"]["across"]["error"] == 0.0 and exact["diff"]["inside"]["error"] == 0.0
    assert exact["diff"]["across"]["edit"] == exact["diff"]["across"]["truth"]
    assert exact["classes"] == {"boundary": 7, "middle": 1, "end": 5} and exact["pairs"] == {"across": 5, "inside": 7}


def _clip(acc: dict, across: float, inside: float) -> dict:
    return {"acc": acc, "diff": {"across": {"edit": across, "truth": 1.0, "error": across - 1.0},
                                 "inside": {"edit": inside, "truth": 1.0, "error": inside - 1.0}}}


def test_the_document_holds_the_table_of_a_small_fake_result() -> None:
    runs = []
    # shared: boundary 0.5 / 0.7, interior 0.8 / 0.8 over seeds 1 / 2 (one clip each)
    for seed, b in ((1, 0.5), (2, 0.7)):
        acc = {"all": 0.65, "boundary": b, "interior": 0.8, "middle": 0.9, "end": 0.7}
        runs.append({"seed": seed, "arm": "shared", "clips": [_clip(acc, 3.0, 2.0)]})
        acc = {"all": 0.6, "boundary": 0.6, "interior": 0.6, "middle": 0.6, "end": 0.6}
        runs.append({"seed": seed, "arm": "per-window", "clips": [_clip(acc, 2.0, 2.0), _clip(acc, 4.0, 2.0)]})
    summary = summarise(runs)
    # by hand: mean(0.5, 0.7) = 0.6, std = sqrt(2 * 0.1^2 / 1) = 0.141; paired gaps to the interior -0.3, -0.1
    # -> -0.2 ± 0.141, to mid-clip frames -0.4, -0.2 -> -0.3 ± 0.141
    assert statistics.stdev([0.5, 0.7]) == pytest.approx(0.14142, abs=1e-5)
    doc = render_doc(summary, {"seconds": 90, "frames": 29, "windows": 9})
    assert "| shared semantic tokens (default) | 0.650 ± 0.000 | 0.600 ± 0.141 | 0.800 ± 0.000 | 0.900 ± 0.000 | " \
           "0.700 ± 0.000 | -0.200 ± 0.141 | -0.300 ± 0.141 |" in doc
    # per-window: the mean of two clips (across 2 and 4 -> 3) in each seed; error = edit - 1
    assert "| per-window semantic tokens | 3.00 ± 0.00 | 2.00 ± 0.00 | 1.00 ± 0.00 | 1.00 ± 0.00 | 2.00 ± 0.00 | " \
           "1.00 ± 0.00 | 1.00 ± 0.00 |" in doc
    # the reading judges the gap (-0.2) against the interior's spread (0.000): the claim does not hold
    assert "a gap of -0.200 against the interior's seed-to-seed spread 0.000: the claim does not hold" in doc
    assert "1.5 min" in doc and "29 frames = 9 windows" in doc


# ---- sama edit --manifest over a long and a short clip ----------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tiny_edit_checkpoint):
    return tiny_edit_checkpoint


def test_batch_mode_edits_every_frame_of_a_long_and_a_short_clip(ckpt, tmp_path) -> None:
    """`sama edit --manifest`, in process (the CLI's own app; a subprocess would spend its time importing)."""
    from typer.testing import CliRunner

    from sama_cli.cli import app
    from sama_cli.io.video import probe

    write_clip_with_audio(tmp_path / "long.mp4", 45, fps=12)  # 45 frames: 2.6 windows of 17 (see below)
    write_clip_with_audio(tmp_path / "short.mp4", 9, fps=10)
    rows = [{"id": "long", "kind": "video_edit", "source": "long.mp4", "instruction": "make it winter"},
            {"id": "short", "kind": "video_edit", "source": "short.mp4", "instruction": "make it winter"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "edits"
    res = CliRunner().invoke(app, ["edit", "--manifest", str(tmp_path / "rows.jsonl"), "-o", str(out), "--model",
                                   str(ckpt), "--steps", "1", "--size", "32x32", "--window", "17", "--overlap", "8",
                                   "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    done = {d["id"]: d for d in json.loads(res.stdout.strip().splitlines()[-1])["done"]}
    # 45 frames = 12 latent frames, windows of 5 with overlap >= 2: ceil(10 / 3) = 4; 9 frames = 3 latent: one
    assert (done["long"]["windows"], done["short"]["windows"]) == (4, 1)
    for name, frames, fps in (("long", 45, 12), ("short", 9, 10)):
        info = probe(out / f"{name}.mp4")
        assert (info.frames, info.fps, info.has_audio) == (frames, fps, True), name
        assert done[name]["frames"] == frames and done[name]["frames_left_out"] == 0
    assert [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()] == ["long", "short"]


def test_the_bench_clips_are_exactly_one_two_and_four_windows_long() -> None:
    """`make bench` (perf/long_edit_speed.py): window + (n - 1) x (window - overlap) latent frames."""
    from types import SimpleNamespace

    from sama_cli.edit.editor import Editor, ModelDefaults
    from sama_cli.perf.long_edit_speed import _setup

    def editor(k: int, window: int | None):
        fake = SimpleNamespace(codec=SimpleNamespace(temporal_factor=k),
                               defaults=ModelDefaults(working_size=(32, 32), window_frames=window, steps=1))
        fake.window_plan = lambda latent, settings: Editor.window_plan(fake, latent, settings)
        return fake

    # the toy model: window 5, overlap 2 -> 5, 5 + 3, 5 + 3 x 3 frames; work per frame 1, 10/8, 20/14
    toy = [_setup(editor(1, 5), n, 1) for n in (1, 2, 4)]
    assert [s[0].shape[0] for s in toy] == [5, 8, 14]
    assert [s[3] for s in toy] == pytest.approx([1.0, 10 / 8, 20 / 14])
    # Wan: 81 frames = 21 latent, overlap 24 frames = 6 latent -> 21 + 15 = 36 latent = 1 + 35 x 4 = 141 frames
    assert _setup(editor(4, 81), 2, 1)[0].shape[0] == 141
