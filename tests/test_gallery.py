"""The gallery pages without a browser: which clips get preview copies (frame count and fps kept, even
sides), what each command writes and says, relative quoted paths, escaping, stable anchors, and bad
input refused with nothing written. tests/test_gallery_browser.py plays the pages in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers_gallery import PLANTED_INSTRUCTION, SAMPLES, edit_folder, moving_square, vie_reports

from sama_cli.core.errors import InputError
from sama_cli.eval.gallery import anchors, edit_page, url
from sama_cli.eval.report import compare_page, page_from_report
from sama_cli.io.preview import playable, preview_size
from sama_cli.io.video import probe, read_video, write_video


def sama(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _rgb_clip(path: Path, frames: int, fps: float, height: int, width: int) -> Path:
    """Lossless RGB H.264 (what --lossless writes) at any size, odd sides included."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt, stream.width, stream.height = "rgb24", width, height
        stream.options = {"qp": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ---- preview copies ---------------------------------------------------------------------------------------
def test_a_clip_the_browser_plays_is_shown_as_it_is(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "plain.mp4", moving_square(9, 200), 6.0)
    shown = playable(clip, tmp_path / "previews")
    assert shown.path == clip and shown.note == "" and (shown.frames, shown.fps) == (9, 6.0)
    assert not (tmp_path / "previews").exists()


@pytest.mark.parametrize(("height", "width", "frames", "fps", "expect", "said"), [
    (32, 32, 5, 5.0, (128, 128), "shown 4x by whole pixels"),  # a toy clip: 4:2:0 would smear its 1-px edges
    (31, 33, 7, 7.0, (62, 66), "shown 2x by whole pixels"),  # an even multiple: even sides
    (65, 67, 3, 7.0, (66, 68), "padded from 67x65 to 68x66"),  # 4:2:0 needs even sides
    (100, 300, 3, 10.0, (54, 160), "scaled from 300x100 to 160x54"),  # longer side to max_side=160
])
def test_a_preview_copy_keeps_frames_and_fps_with_even_sides(tmp_path: Path, height, width, frames, fps, expect,
                                                             said) -> None:
    clip = _rgb_clip(tmp_path / f"rgb {height}x{width}.mp4", frames, fps, height, width)
    assert probe(clip).pix_fmt == "gbrp"
    shown = playable(clip, tmp_path / "previews", max_side=160)
    assert shown.path.parent == tmp_path / "previews" and shown.note.startswith("preview copy")
    assert said in shown.note
    info = probe(shown.path)
    assert (info.codec, info.pix_fmt, info.frames, info.fps) == ("h264", "yuv420p", frames, fps)
    assert (info.height, info.width) == expect
    again = playable(clip, tmp_path / "previews", max_side=160)  # reused, not written again
    assert again.path == shown.path and again.path.stat().st_mtime_ns == shown.path.stat().st_mtime_ns


def test_preview_sizes_are_even_and_bounded() -> None:
    assert preview_size(480, 832, 480) == (278, 480)  # 480 * 480 / 832 = 276.9 -> 277 -> even 278
    assert preview_size(31, 33, 480) == (32, 34)
    assert preview_size(1, 1, 480) == (2, 2)


# ---- page parts -------------------------------------------------------------------------------------------
def test_video_paths_are_relative_to_the_page_and_url_quoted(tmp_path: Path) -> None:
    page_dir = tmp_path / "out" / "report"
    assert url(tmp_path / "out" / "edits" / "my clip #1?.mp4", page_dir) == "../edits/my%20clip%20%231%3F.mp4"
    assert url(page_dir / "previews" / "a%b.mp4", page_dir) == "previews/a%25b.mp4"


def test_anchors_are_stable_safe_and_unique() -> None:
    assert anchors(["vid0001", "a b", "a_b", "<x>", ""]) == ["s-vid0001", "s-a_b", "s-a_b-2", "s-_x_", "s-_"]


# ---- the pages each command writes ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    return vie_reports(tmp_path_factory.mktemp("reports"))


def test_a_judged_report_page_has_the_tables_every_sample_and_escapes_text(reports) -> None:
    text = (reports["a"] / "index.html").read_text()
    assert "SAMA (paper)" in text and "Kling-Omni (paper)" in text  # the paper's rows
    assert 'src="bars_add.png"' in text and 'src="bars_remove.png"' in text
    for sid in SAMPLES:
        assert f'id="s-{sid}"' in text and f'href="#s-{sid}"' in text
    assert "<script>window" not in text and "onerror=\"window" not in text  # planted markup only as text
    assert "&lt;script&gt;window.__pwnedInstruction = true&lt;/script&gt;" in text
    assert text.count("<script>") == 1  # the page's own
    # sources play as they are (H.264 4:2:0), lossless edits through preview copies
    assert 'data-src="../vie/videos/a.mp4"' in text
    assert len(list((reports["a"] / "previews").glob("*.mp4"))) == 3 and text.count("preview copy: H.264") == 3
    assert "no edited video for d" in text and "unparseable reply" in text  # failed samples with their error
    assert "flicker" in text and "warp_error" in text  # weight-free metrics
    assert "&lt;img src=x onerror=" in text  # the judge's reason, escaped
    scores = [json.loads(line) for line in (reports["a"] / "scores.jsonl").read_text().splitlines()]
    assert all(r["source"].endswith(f"videos/{r['id']}.mp4") for r in scores)  # rows record their source


def test_compare_page_puts_both_edits_beside_the_source(reports, tmp_path: Path) -> None:
    page = compare_page(reports["a"], reports["b"], tmp_path / "cmp")
    text = page.read_text()
    card = text[text.index('id="s-a"'):text.index('id="s-b"')]
    assert card.count("<video") == 3 and "edit A" in card and "edit B" in card
    assert "B - A +0.000" in card  # the scripted judge gives both edits of a the same score
    assert "&lt;script&gt;window.__pwnedInstruction" in card


def test_edit_page_shows_instruction_timings_and_failures(reports, tmp_path: Path) -> None:
    out, rows, done, failed = edit_folder(tmp_path, reports)
    text = edit_page(out, rows, done, failed).read_text()
    card = text[text.index('id="s-b"'):text.index('id="s-e"')]
    assert "remove the square" in card and "3.50 s" in card and "denoise" in card and "512 MB" in card
    assert "e.mp4: out of memory" in text
    assert "<script>window" not in text and text.count("<script>") == 1


def test_toy_bench_run_compare_and_page_through_the_cli(tmp_path: Path) -> None:
    res = sama("synth", tmp_path / "toy", "--clips", "3", "--images", "0", "--t2v", "0", "--frames", "5", "--size",
               "32", "--seed", "1")
    assert res.returncode == 0, res.stderr
    for name in ("source", "target"):
        res = sama("bench", "run", "toy", "--data", tmp_path / "toy", "--baseline", name, "-o", tmp_path / name,
                   "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["page"] == str(tmp_path / name / "index.html")
        assert f"page: {tmp_path / name / 'index.html'}" in res.stderr
    text = (tmp_path / "target" / "index.html").read_text()
    assert text.count('class="card"') == 3 and "edit_accuracy 1.000" in text  # the true target scores 1
    assert len(list((tmp_path / "target" / "previews").glob("*.mp4"))) == 6  # RGB sources and targets
    res = sama("bench", "compare", tmp_path / "source", tmp_path / "target", "-o", tmp_path / "cmp", "--json")
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), list) and (tmp_path / "cmp" / "index.html").is_file()
    (tmp_path / "target" / "index.html").unlink()
    res = sama("bench", "page", tmp_path / "target", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["page"] == str(tmp_path / "target" / "index.html")
    assert (tmp_path / "target" / "index.html").read_text() == text


def test_sama_edit_manifest_writes_its_page(tmp_path: Path) -> None:
    res = sama("synth", tmp_path / "toy", "--clips", "2", "--images", "0", "--t2v", "0", "--frames", "5", "--size",
               "32", "--seed", "2")
    assert res.returncode == 0, res.stderr
    res = sama("edit", "--manifest", tmp_path / "toy" / "manifest.jsonl", "-o", tmp_path / "ed", "--steps", "1",
               "--lossless", "--json")
    assert res.returncode == 0, res.stderr
    page = tmp_path / "ed" / "index.html"
    assert json.loads(res.stdout)["page"] == str(page) and f"page: {page}" in res.stderr
    text = page.read_text()
    rows = [json.loads(line) for line in (tmp_path / "toy" / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        card = text[text.index(f'id="s-{r["id"]}"'):]
        assert r["instruction"] in card.split("</article>")[0] and "denoise" in card.split("</article>")[0]
    assert len(re.findall(r"<video", text)) == 4


def test_a_broken_report_is_one_line_naming_the_file_and_writes_nothing(reports, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(reports["b"], bad)
    (bad / "index.html").unlink()
    with (bad / "scores.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(InputError, match=r"scores.jsonl: line 5 is not JSON"):
        page_from_report(bad)
    res = sama("bench", "page", bad)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "scores.jsonl: line 5" in res.stderr
    assert not (bad / "index.html").exists()
    res = sama("bench", "page", tmp_path / "nothing")
    assert res.returncode == 2 and "not a bench report" in res.stderr


def test_a_missing_clip_is_said_on_its_card(reports, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "r"
    shutil.copytree(reports["b"], moved)
    rows = [json.loads(line) for line in (moved / "scores.jsonl").read_text().splitlines()]
    rows[1]["edit"] = str(tmp_path / "gone.mp4")
    (moved / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = page_from_report(moved).read_text()
    card = text[text.index('id="s-b"'):text.index('id="s-c"')]
    assert "gone.mp4: no such file" in card and card.count("<video") == 1
    assert read_video(reports["data"] / "videos" / "b.mp4").num_frames == SAMPLES["b"][0]
    assert PLANTED_INSTRUCTION not in text  # only escaped


def test_the_demo_without_a_browser_says_how_to_get_one(reports, tmp_path: Path, monkeypatch, capsys) -> None:
    import shutil

    from sama_cli.eval import browser
    from sama_cli.toy import demo

    shutil.copytree(reports["a"], tmp_path / "report")
    monkeypatch.setattr(browser, "find", lambda: "no chromium on PATH (apt-get install chromium ...)")
    assert demo.pages(tmp_path) == []
    said = capsys.readouterr().err
    assert f"page: {tmp_path / 'report' / 'index.html'}" in said
    assert "screenshot skipped: no chromium on PATH (apt-get install chromium" in said
    assert not (tmp_path / "report" / "index.png").exists()
