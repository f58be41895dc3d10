"""`sama bench`: the OpenAI judge path end to end against a scripted localhost server, the cache,
each adapter's aggregation on hand-computed examples, the toy oracle through the CLI, compare and
the data filter."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sama_cli.core.errors import InputError
from sama_cli.eval.adapters import get_adapter
from sama_cli.eval.judges import JudgeResult, LocalJudge, OpenAIJudge, parse_scores
from sama_cli.eval.metrics import flicker, psnr, ssim
from sama_cli.eval.openve import OPENVE_RUBRICS, OpenVeBench
from sama_cli.eval.reco import RecoBench, geometric_mean
from sama_cli.eval.report import compare
from sama_cli.eval.runner import attach_edits, run
from sama_cli.eval.vie import VieBench, fixtures_dir
from sama_cli.io.video import write_video
from sama_cli.perf.judge_server import ScriptedServer
from sama_cli.toy.adapter import ToyBench

pytest.importorskip("openai")  # the bench extra; `make test` installs it


def sama(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


def _clip(path: Path, value: int, frames: int = 5) -> Path:
    video = torch.full((frames, 32, 32, 3), value, dtype=torch.uint8)
    video[:, 8:16, 8:16] = 255 - value
    return write_video(path, video, 8.0)


def _vie_folder(root: Path, tags: dict[str, str]) -> tuple[Path, Path]:
    """A VIE-Bench-shaped folder (vie_bench.jsonl + sources) and an edits folder, one sample per tag."""
    data, edits = root / "vie", root / "edits"
    (data / "videos").mkdir(parents=True)
    edits.mkdir()
    rows = []
    for i, (sid, tag) in enumerate(tags.items()):
        _clip(data / "videos" / f"{sid}.mp4", 40 + i)
        _clip(edits / f"{sid}.mp4", 90 + i)
        cat = ["Add", "Swap/Change", "Remove", "Style/Tone"][i % 4]
        rows.append({"id": sid, "category": cat, "instruction": f"make it red {tag}", "source": f"videos/{sid}.mp4"})
    (data / "vie_bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, edits


# ---- the judge against a scripted server -----------------------------------------------------------------
TAGS = {"s_good": "#good8", "s_prose": "#prose6", "s_garbage": "#garbage", "s_rate": "#rate", "s_slow": "#slow"}


def test_openai_judge_end_to_end_scores_retries_failures_and_cache(tmp_path: Path) -> None:
    data, edits = _vie_folder(tmp_path, TAGS)
    with ScriptedServer(slow_seconds=3.0) as server:
        judge = OpenAIJudge("scripted-vlm", base_url=server.base_url, timeout=1.0, retries=2, backoff=0.01)
        summary = run(VieBench(), data, edits, judge, tmp_path / "r1", workers=4)
        rows = {r["id"]: r for r in map(json.loads, (tmp_path / "r1" / "scores.jsonl").read_text().splitlines())}
        assert rows["s_good"]["scores"] == {"instruction_following": 8.0, "preservation": 8.0, "quality": 8.0}
        assert rows["s_good"]["attempts"] == 1 and rows["s_good"]["judge"] == "openai:scripted-vlm"
        assert rows["s_prose"]["scores"]["quality"] == 6.0  # JSON found inside prose and a fence
        assert rows["s_rate"]["status"] == "ok" and rows["s_rate"]["attempts"] == 2  # 429, then success
        assert rows["s_slow"]["status"] == "ok" and rows["s_slow"]["attempts"] == 2  # timed out, then success
        assert "APITimeoutError" not in str(rows["s_slow"].get("error"))  # cleared by the success
        bad = rows["s_garbage"]
        assert bad["status"] == "failed" and "score" not in bad and "scores" not in bad
        assert bad["attempts"] == 3 and len(bad["raw"]) == 3 and "unparseable" in bad["error"]
        assert all(r["prompt_version"] == "v2" for r in rows.values())
        assert summary["failed"] == 1 and summary["samples"] == 4
        # VIE categories follow the paper's: Add, Swap/Change, Remove, Style/Tone
        assert summary["categories"] == {"add": 7.5, "swap": 6.0, "style": 7.0}  # remove: its one sample failed
        assert math.isclose(summary["overall"], (7.5 + 6.0 + 7.0) / 3)

        before = sum(server.requests.values())
        again = run(VieBench(), data, edits, judge, tmp_path / "r1", workers=4)
        # every scored sample came from the cache; only the failure was asked again (3 attempts)
        assert again["cached"] == 4 and sum(server.requests.values()) - before == 3
        assert again["categories"] == summary["categories"]

        # a changed edited video is judged anew (the key holds its content hash)
        _clip(edits / "s_good.mp4", 200)
        before = server.requests["good"]
        run(VieBench(), data, edits, judge, tmp_path / "r1", workers=2)
        assert server.requests["good"] == before + 1


def test_strict_schema_fallback_costs_no_attempt_and_is_remembered(tmp_path: Path) -> None:
    import numpy as np

    frame = [np.zeros((8, 8, 3), np.uint8)]
    with ScriptedServer(reject_schema=True) as server:
        # retries=0: the one attempt must be the plain request, not the refused schema probe
        judge = OpenAIJudge("m", base_url=server.base_url, timeout=5.0, retries=0, backoff=0.01)
        res = judge.score("rate this #good9", frame, ["quality"], (1.0, 10.0))
        assert res.scores == {"quality": 9.0} and res.attempts == 1 and res.error is None
        assert server.schema_requests == 1 and sum(server.requests.values()) == 2
        res = judge.score("rate that #good8", frame, ["quality"], (1.0, 10.0))  # no second probe
        assert res.scores == {"quality": 8.0} and server.schema_requests == 1 and sum(server.requests.values()) == 3
        # through the runner: every sample scores with --retries 0
        data, edits = _vie_folder(tmp_path, {"a": "#good9", "b": "#good5"})
        judge = OpenAIJudge("m", base_url=server.base_url, timeout=5.0, retries=0, backoff=0.01)
        summary = run(VieBench(), data, edits, judge, tmp_path / "r", workers=1)
    assert summary["failed"] == 0 and summary["categories"] == {"add": 9.0, "swap": 5.0}


def test_parse_scores_is_tolerant_but_never_invents_a_score() -> None:
    keys = ["a", "b"]
    assert parse_scores('{"a": 3, "b": 4.5}', keys, (1, 5)) == {"a": 3.0, "b": 4.5}
    assert parse_scores('Scores: {"a": 2, "b": 2, "reason": "ok"} done', keys, (1, 5)) == {"a": 2.0, "b": 2.0}
    for bad in ('{"a": 3}', '{"a": 9, "b": 1}', "a=3 b=4", '{"a": "x", "b": 1}'):
        with pytest.raises(ValueError):
            parse_scores(bad, keys, (1, 5))


@pytest.mark.parametrize(("scale", "low", "high"), [((1.0, 5.0), 0, 6), ((1.0, 10.0), 0, 11), ((0.0, 10.0), -1, 10.5)])
def test_parse_scores_rejects_below_and_above_the_scale_and_keeps_both_ends(scale, low, high) -> None:
    lo, hi = scale
    assert parse_scores(json.dumps({"a": lo, "b": hi}), ["a", "b"], scale) == {"a": lo, "b": hi}
    for value in (low, high, lo - 0.01, hi + 0.01):  # one criterion outside is enough to refuse the reply
        with pytest.raises(ValueError, match="inside the scale"):
            parse_scores(json.dumps({"a": value, "b": hi}), ["a", "b"], scale)
    for value in ("NaN", "Infinity", "-Infinity"):  # Python's json reads these; none is a score
        with pytest.raises(ValueError, match="inside the scale"):
            parse_scores(f'{{"a": {value}, "b": {hi}}}', ["a", "b"], scale)
    # an out-of-scale object is skipped, not clipped: a later valid one in the same reply is the answer
    assert parse_scores(f'{{"a": {low}, "b": 3}} corrected: {{"a": 2, "b": 3}}', ["a", "b"], scale) == {"a": 2, "b": 3}


def test_bench_cli_exit_code_and_report_files(tmp_path: Path) -> None:
    data, edits = _vie_folder(tmp_path, {"a1": "#good9", "b1": "#good7", "c1": "#garbage"})
    with ScriptedServer() as server:
        res = sama("bench", "run", "vie", "--data", data, "--edits", edits, "--judge", "openai:m", "--base-url",
                   server.base_url, "--retries", "0", "--backoff", "0", "-o", tmp_path / "rep", "--json")
    assert res.returncode == 1, res.stderr  # a failed sample: the run is not clean
    summary = json.loads(res.stdout)
    assert summary["failed"] == 1 and summary["categories"] == {"add": 9.0, "swap": 7.0}
    rep = tmp_path / "rep"
    for name in ("scores.jsonl", "summary.json", "summary.csv", "report.md", "bars_add.png"):
        assert (rep / name).is_file(), name
    md = (rep / "report.md").read_text()
    assert "| **this run** | 9.000 | 7.000 | - | - |" in md and "SAMA (paper) | 8.711" in md
    assert "c1" in (rep / "scores.jsonl").read_text()


class _FlakyJudge:
    """Raises a non-SamaError for prompts tagged #boom, as a judge library or a codec might."""
    name = "stub:flaky"

    def score(self, prompt, images, keys, scale, max_side=512, request=None) -> JudgeResult:
        if "#boom" in prompt:
            raise RuntimeError("judge backend crashed (simulated)")
        return JudgeResult(scores=dict.fromkeys(keys, 8.0), raw=["{}"], attempts=1)


def test_any_exception_in_a_sample_is_a_failed_row_and_the_report_is_written(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import sama_cli.eval.judges
    from sama_cli.cli import app

    monkeypatch.setattr(sama_cli.eval.judges, "make_judge", lambda *a, **k: _FlakyJudge())
    data, edits = _vie_folder(tmp_path, {"ok1": "#good8", "bad": "#boom", "ok2": "#good8"})
    res = CliRunner().invoke(app, ["bench", "run", "vie", "--data", str(data), "--edits", str(edits), "--judge",
                                   "stub:x", "-o", str(tmp_path / "rep"), "--workers", "3", "--json"])
    assert res.exit_code == 1, res.output  # samples failed: the exit code says so
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 1 and summary["samples"] == 2
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "rep" / "scores.jsonl").read_text().splitlines())}
    bad = rows["bad"]
    assert bad["status"] == "failed" and "score" not in bad and "scores" not in bad
    assert "RuntimeError: judge backend crashed (simulated)" in bad["error"] and "bad.mp4" in bad["error"]
    assert rows["ok1"]["status"] == rows["ok2"]["status"] == "ok"
    assert (tmp_path / "rep" / "summary.json").is_file() and (tmp_path / "rep" / "report.md").is_file()


# ---- aggregation, by hand --------------------------------------------------------------------------------
def test_vie_and_openve_aggregation_by_hand() -> None:
    vie = VieBench()
    rows = [{"category": "add", "score": vie.sample_score({"instruction_following": 8, "preservation": 9, "quality": 10})},
            {"category": "add", "score": vie.sample_score({"instruction_following": 6, "preservation": 6, "quality": 9})},
            {"category": "remove", "score": vie.sample_score({"instruction_following": 4, "preservation": 5, "quality": 6})}]
    s = vie.summarize(rows)
    assert s["categories"] == {"add": 8.0, "remove": 5.0} and s["overall"] == 6.5  # mean of category means
    ove = OpenVeBench()
    add = {"prompt_compliance": 5, "visual_temporal_naturalness": 4, "physical_detail_coherence": 3}
    sub = {"prompt_compliance": 2, "subtitle_attribute_fidelity": 1, "unedited_content_integrity": 1.5}
    r = [{"category": "local_add", "score": ove.sample_score(add, "local_add")},
         {"category": "subtitle_edit", "score": ove.sample_score(sub, "subtitle_edit")},
         {"category": "subtitle_edit", "score": ove.sample_score({**sub, "prompt_compliance": 3.5}, "subtitle_edit")}]
    s = ove.summarize(r)
    # the cap: the first subtitle sample's 2, 1, 1.5 stays (nothing above 2): 4.5/3; the second 3.5, 1, 1.5: 6/3
    assert s["categories"] == {"local_add": 4.0, "subtitle_edit": 1.75}  # (4.5/3 + 6/3) / 2
    assert list(s["categories"]) == ["local_add", "subtitle_edit"]  # the paper's column order
    assert s["overall"] == pytest.approx(2.5)  # release: (4 + 1.5 + 2) / 3 over samples, not (4 + 1.75) / 2
    with pytest.raises(KeyError):  # another type's criteria do not score a subtitle edit
        ove.sample_score(add, "subtitle_edit")


def test_openve_judges_each_edit_type_on_its_own_rubric(tmp_path: Path) -> None:
    ove = OpenVeBench()
    assert set(ove.categories) <= set(OPENVE_RUBRICS) and ove.prompt_version != "v1"
    for kind, rubric in OPENVE_RUBRICS.items():
        keys = [c.key for c in rubric.criteria]
        labels = [c.label for c in rubric.criteria]
        prompt = ove.prompt(_sample(kind))
        assert len(keys) == 3 and all(f"- {c}:" in prompt for c in labels), kind
        assert "from 1 (worst) to 5 (best)" in prompt and f"higher than {labels[0]}." in prompt
        others = {c.label for k, r in OPENVE_RUBRICS.items() if k != kind for c in r.criteria} - set(labels)
        assert not any(f"- {c}:" in prompt for c in others), kind
    assert "Style Fidelity" in ove.prompt(_sample("global_style"))
    assert "Subtitle Attribute Fidelity" in ove.prompt(_sample("subtitle_edit"))
    # end to end: the judge is asked for, and scored on, the sample's own criteria
    data, edits = tmp_path / "ove", tmp_path / "edits"
    (data / "videos").mkdir(parents=True)
    edits.mkdir()
    lines = ["edited_type,prompt,original_video"]
    for i, (kind, tag) in enumerate((("global_style", "#good4"), ("subtitle_edit", "#good2"))):
        _clip(data / "videos" / f"v{i}.mp4", 40 + i)
        _clip(edits / f"v{i}.mp4", 90 + i)
        lines.append(f"{kind},edit it {tag},videos/v{i}.mp4")
    (data / "benchmark_videos.csv").write_text("\n".join(lines) + "\n")
    with ScriptedServer() as server:
        judge = OpenAIJudge("m", base_url=server.base_url, timeout=5.0, retries=0)
        summary = run(OpenVeBench(), data, edits, judge, tmp_path / "r", workers=2)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "r" / "scores.jsonl").read_text().splitlines())}
    assert set(rows["v0"]["scores"]) == {c.key for c in OPENVE_RUBRICS["global_style"].criteria}
    assert set(rows["v1"]["scores"]) == {c.key for c in OPENVE_RUBRICS["subtitle_edit"].criteria}
    assert rows["v1"]["category"] == "subtitle_edit" and rows["v1"]["prompt_version"] == ove.prompt_version
    assert summary["categories"] == {"global_style": 4.0, "subtitle_edit": 2.0} and summary["overall"] == 3.0


def _sample(kind: str):
    from sama_cli.eval.adapters import BenchSample

    return BenchSample("x", kind, "make it so", Path("x.mp4"))


def test_openve_ids_are_unique_and_stable_when_edits_share_a_source(tmp_path: Path) -> None:
    (tmp_path / "benchmark_videos.csv").write_text(
        "edited_type,prompt,original_video\n"
        "local_add,add a hat,videos/a.mp4\nlocal_remove,remove the cup,videos/a.mp4\n"
        "subtitle_edit,add a caption,videos/b.mp4\nlocal_change,swap the dog,videos/a.mp4\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").touch()
    (tmp_path / "videos" / "b.mp4").touch()
    samples = OpenVeBench().samples(tmp_path)
    assert [s.id for s in samples] == ["a_r1", "a_r2", "b", "a_r4"]  # a unique stem stays as it is
    assert [s.id for s in OpenVeBench().samples(tmp_path)] == [s.id for s in samples]  # stable
    assert [s.category for s in samples] == ["local_add", "local_remove", "subtitle_edit", "local_change"]
    edits = tmp_path / "edits"
    edits.mkdir()
    attach_edits(samples, edits, None, OpenVeBench())
    assert len({s.edit for s in samples}) == 4 and samples[1].edit == edits / "a_r2.mp4"
    # an id column wins; a repeated id is an error naming the file
    (tmp_path / "benchmark_videos.csv").write_text(
        "id,edited_type,prompt,original_video\nk1,local_add,p,videos/a.mp4\nk1,local_add,q,videos/a.mp4\n")
    with pytest.raises(InputError, match=r"benchmark_videos.csv:3: sample id 'k1' repeats line 2"):
        OpenVeBench().samples(tmp_path)
    (tmp_path / "benchmark_videos.csv").write_text("edited_type,prompt,original_video\nzoom_blur,p,videos/a.mp4\n")
    (bad,) = OpenVeBench().samples(tmp_path)  # that row's failure, naming the file's own line
    assert "benchmark_videos.csv:2: unknown edited type 'zoom_blur'" in bad.error


class _Inputs(dict):
    def to(self, device):
        return self


class _StubProcessor:
    """Stands in for a transformers processor: records the image sizes it is handed."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def apply_chat_template(self, messages, add_generation_prompt=True) -> str:
        return "chat"

    def __call__(self, text, images, return_tensors="pt") -> _Inputs:
        self.sizes += [im.size for im in images]
        return _Inputs(input_ids=torch.zeros(1, 3, dtype=torch.long))

    def batch_decode(self, out, skip_special_tokens=True) -> list[str]:
        return ['{"instruction_following": 8, "preservation": 7, "quality": 6}']


class _StubVlm:
    """Stands in for the model: counts how many threads are inside generate at once."""
    device = "cpu"

    def __init__(self) -> None:
        self.inside, self.most, self.calls, self.guard = 0, 0, 0, threading.Lock()

    def generate(self, **inputs):
        with self.guard:
            self.inside += 1
            self.most, self.calls = max(self.most, self.inside), self.calls + 1
        time.sleep(0.02)
        with self.guard:
            self.inside -= 1
        return torch.zeros(1, 5, dtype=torch.long)


def test_local_judge_resizes_frames_and_takes_turns_on_one_model(tmp_path: Path) -> None:
    processor, model = _StubProcessor(), _StubVlm()
    judge = LocalJudge(processor, model, name="local:stub")
    data, edits = _vie_folder(tmp_path, {f"s{i}": "#x" for i in range(6)})
    vie = VieBench()
    vie.max_side = 16  # the 32x32 clips must reach the processor at 16x16
    summary = run(vie, data, edits, judge, tmp_path / "r", workers=4, use_cache=False)
    assert summary["failed"] == 0 and model.calls == 6
    assert model.most == 1  # four workers, one model: calls never overlap
    assert set(processor.sizes) == {(16, 16)} and len(processor.sizes) == 6 * 2 * 5  # 5-frame clips, source + edit


class _ReplyProcessor(_StubProcessor):
    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    def batch_decode(self, out, skip_special_tokens=True) -> list[str]:
        return [self.reply]


@pytest.mark.parametrize(("value", "scored"), [(0, False), (6, False), (1, True), (5, True)])
def test_a_reply_below_or_above_the_scale_leaves_the_sample_unscored(value: int, scored: bool) -> None:
    # OpenVE-Bench's 1-5 scale (docs/sama.md §7): 0 and 6 are no scores, 1 and 5 are
    judge = LocalJudge(_ReplyProcessor(json.dumps({"q": value})), _StubVlm(), name="local:stub", retries=1)
    result = judge.score("rate", [], ["q"], (1.0, 5.0))
    assert result.attempts == (1 if scored else 2) and len(result.raw) == result.attempts
    assert result.scores == ({"q": float(value)} if scored else None)
    assert (result.error is None) == scored


class _RecordingJudge:
    name = "stub:recording"

    def __init__(self) -> None:
        self.seen: list[tuple[int, tuple[int, ...], int]] = []

    def score(self, prompt, images, keys, scale, max_side=512, request=None) -> JudgeResult:
        self.seen.append((len(images), images[0].shape, max_side))
        return JudgeResult(scores=dict.fromkeys(keys, scale[1]), raw=["{}"], attempts=1)


def test_each_benchmark_samples_its_own_frames(tmp_path: Path) -> None:
    assert (OpenVeBench.frames, OpenVeBench.max_side) == (17, 448)  # the release's InternVL script
    assert (VieBench.frames, VieBench.max_side) == (8, 512)  # ours (ReCo's are the release's: tests/test_bench_reco.py)
    data, edits = tmp_path / "ove", tmp_path / "edits"
    (data / "videos").mkdir(parents=True)
    edits.mkdir()
    _clip(data / "videos" / "v.mp4", 40, frames=21)
    _clip(edits / "v.mp4", 90, frames=21)
    (data / "benchmark_videos.csv").write_text("edited_type,prompt,original_video\nlocal_add,add it,videos/v.mp4\n")
    judge = _RecordingJudge()
    run(OpenVeBench(), data, edits, judge, tmp_path / "r", use_cache=False)
    assert judge.seen == [(2 * 17, (32, 32, 3), 448)]


def test_reco_geometric_means_by_hand() -> None:
    reco = RecoBench()
    scores = {"SA": 8, "SP": 2, "CP": 4, "AN": 1, "SN": 3, "MN": 9, "VF": 5, "TS": 5, "ES": 5}
    g = reco.groups(scores)
    assert g["accuracy"] == pytest.approx(4.0)  # (8*2*4)^(1/3)
    assert g["naturalness"] == pytest.approx(3.0)  # (1*3*9)^(1/3)
    assert g["quality"] == pytest.approx(5.0)
    assert reco.sample_score(scores) == pytest.approx(4.0)  # S = mean of the groups
    assert geometric_mean([0, 9, 9]) == 0.0  # a zero sub-score zeroes its group
    flat = {"SA": 6, "SP": 6, "CP": 6, "AN": 6, "SN": 6, "MN": 6, "VF": 6, "TS": 6, "ES": 6}
    s = reco.summarize([{"category": "add", "scores": scores, "score": 4.0},
                        {"category": "add", "scores": flat, "score": 6.0},
                        {"category": "style", "scores": {**flat, "SA": 9, "SP": 9, "CP": 9}, "score": 7.0}])
    assert s["categories"] == {"add": pytest.approx(5.0), "style": pytest.approx(7.0)}  # (9 + 6 + 6) / 3


def test_adapters_read_their_layouts_and_name_malformed_files(tmp_path: Path) -> None:
    (tmp_path / "benchmark_videos.csv").write_text(
        "edited type,prompt,original video\nLocal Remove,remove the cup,videos/a.mp4\nSubtitle,add a caption,videos/b.mp4\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").touch()
    (tmp_path / "videos" / "b.mp4").touch()
    samples = OpenVeBench().samples(tmp_path)
    assert [(s.id, s.category, s.instruction) for s in samples] == [("a", "local_remove", "remove the cup"),
                                                                     ("b", "subtitle_edit", "add a caption")]
    assert samples[0].source == tmp_path / "videos" / "a.mp4"
    (tmp_path / "vie_bench.jsonl").write_text("{not json\n")
    (bad,) = VieBench().samples(tmp_path)  # a broken line is that sample's failure, not the run's
    assert bad.error.startswith(f"{tmp_path / 'vie_bench.jsonl'}:1: not a JSON object")
    with pytest.raises(InputError, match="no configs"):
        RecoBench().samples(tmp_path)
    with pytest.raises(InputError, match="unknown benchmark"):
        get_adapter("nope")


def test_weight_free_metrics_by_hand() -> None:
    still = torch.full((4, 16, 16, 3), 100, dtype=torch.uint8)
    assert flicker(still) == 0.0
    blink = still.clone()
    blink[1::2] = 110
    assert flicker(blink) == pytest.approx(10.0)
    other = still.clone()
    other[:, :, :8] = 110  # MSE 50: the left half differs by 10
    mask = torch.zeros(4, 16, 16, dtype=torch.bool)
    mask[:, :, 12:] = True  # the right part, clear of the 7x7 SSIM windows that see the left half
    assert psnr(still, other, mask) == 100.0 and ssim(still, other, mask) == pytest.approx(1.0, abs=1e-6)
    assert psnr(still, other) == pytest.approx(10 * math.log10(255**2 / 50))
    assert ssim(still, other) < 1.0


def test_warp_error_tells_smooth_motion_from_flicker_and_agreement_flags() -> None:
    """A textured square sliding 1 px a frame warps onto itself (the flow explains it); the same frames in
    shuffled order cannot be explained by smooth flow, so their warp error is clearly higher."""
    from types import SimpleNamespace

    from sama_cli.eval.metrics import agreement, warp_error

    g = torch.Generator().manual_seed(0)
    texture = torch.randint(0, 256, (16, 16, 3), generator=g, dtype=torch.uint8)
    frames = torch.full((8, 48, 48, 3), 60, dtype=torch.uint8)
    for t in range(8):
        frames[t, 16:32, 10 + t: 26 + t] = texture
    assert warp_error(frames[:1]) == 0.0 and warp_error(torch.full((3, 8, 8, 3), 7, dtype=torch.uint8)) == 0.0
    smooth, jumbled = warp_error(frames), warp_error(frames[[0, 5, 2, 7, 1, 6, 3, 4]])
    assert smooth < 0.5 * jumbled and jumbled > 2.0
    src = SimpleNamespace(frames=49, fps=24.0, width=832, height=480)
    assert agreement(src, src) == {"same_frames": 1.0, "same_fps": 1.0, "same_size": 1.0}
    assert agreement(src, SimpleNamespace(frames=48, fps=24.0004, width=480, height=832)) == {
        "same_frames": 0.0, "same_fps": 1.0, "same_size": 0.0}


# ---- the toy oracle through the CLI, compare ---------------------------------------------------------------
def test_toy_oracle_ranks_target_source_and_wrong_edit(tmp_path: Path) -> None:
    res = sama("synth", tmp_path / "toy", "--clips", "6", "--images", "0", "--t2v", "0", "--frames",
               "5", "--size", "32", "--seed", "3")
    assert res.returncode == 0, res.stderr
    data = tmp_path / "toy"
    reports = {}
    for name in ("target", "source"):
        res = sama("bench", "run", "toy", "--data", data, "--baseline", name, "-o", tmp_path / name, "--json")
        assert res.returncode == 0, res.stderr
        reports[name] = json.loads(res.stdout)["overall"]
    # a wrong edit: every sample gets another sample's true target
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "video_edit"]
    wrong = [{"id": r["id"], "output": str(data / rows[(i + 1) % len(rows)]["target"])} for i, r in enumerate(rows)]
    (tmp_path / "wrong.jsonl").write_text("".join(json.dumps(w) + "\n" for w in wrong))
    res = sama("bench", "run", "toy", "--data", data, "--edits", tmp_path / "wrong.jsonl", "-o", tmp_path / "wrong",
               "--json")
    assert res.returncode == 0, res.stderr
    reports["wrong"] = json.loads(res.stdout)["overall"]
    t, s, w = reports["target"], reports["source"], reports["wrong"]
    assert t["edit_accuracy"] == 1.0 and t["psnr"] == 100.0 and t["preservation_ssim"] == pytest.approx(1.0)
    assert t["trajectory_error"] < 1.5  # centroids of partly occluded shapes sit off their true centre
    assert s["edit_accuracy"] < 0.7 and s["psnr"] < 40.0
    assert w["edit_accuracy"] < 0.7 and w["preservation_psnr"] < 30.0 and w["trajectory_error"] > t["trajectory_error"]
    # compare: target minus source is a positive edit accuracy gap, per category and overall
    res = sama("bench", "compare", tmp_path / "source", tmp_path / "target", "--json")
    assert res.returncode == 0, res.stderr
    diff = {r["category"]: r for r in json.loads(res.stdout)}
    assert diff["overall"]["delta"] == pytest.approx(1.0 - s["edit_accuracy"])
    assert all(r["delta"] >= 0 for r in diff.values())
    # --split selects held-out rows only (the demo edits just those)
    res = sama("bench", "run", "toy", "--data", data, "--baseline", "target", "--split", "nosuch", "-o",
               tmp_path / "none")
    assert res.returncode != 0 and "no samples in split 'nosuch'" in res.stderr


def test_compare_refuses_different_benchmarks(tmp_path: Path) -> None:
    for name, bench in (("a", "toy"), ("b", "vie")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"benchmark": bench, "categories": {}, "overall": 1}))
    with pytest.raises(InputError, match="cannot compare toy with vie"):
        compare(tmp_path / "a", tmp_path / "b")


def test_toy_summary_has_splits() -> None:
    rows = [{"category": "recolour", "split": "heldout", "scores": dict.fromkeys(
        ("edit_accuracy", "preservation_psnr", "preservation_ssim", "trajectory_error", "psnr"), v)} for v in (0.2, 0.4)]
    s = ToyBench().summarize(rows)
    assert s["splits"]["heldout"]["edit_accuracy"] == pytest.approx(0.3)
    assert s["categories"]["recolour"]["psnr"] == pytest.approx(0.3)


def test_toy_summary_has_each_kind_per_split() -> None:
    """Issue 19: the demo and the model card show every kind on every split. Means by hand: test/recolour
    (0.2 + 0.4) / 2, test/add 0.9 alone, heldout/recolour 0.6 alone (the test rows do not leak into it)."""
    keys = ("edit_accuracy", "preservation_psnr", "preservation_ssim", "trajectory_error", "psnr")
    rows = [{"category": c, "split": sp, "scores": dict.fromkeys(keys, v)}
            for c, sp, v in (("recolour", "test", 0.2), ("recolour", "test", 0.4), ("add", "test", 0.9),
                             ("recolour", "heldout", 0.6))]
    s = ToyBench().summarize(rows)["split_categories"]
    assert set(s) == {"test", "heldout"} and set(s["heldout"]) == {"recolour"}
    assert s["test"]["recolour"]["edit_accuracy"] == pytest.approx(0.3)
    assert s["test"]["add"]["trajectory_error"] == pytest.approx(0.9)
    assert s["heldout"]["recolour"]["psnr"] == pytest.approx(0.6)


def test_toy_summary_reports_the_opt_in_kinds() -> None:
    """`make toy-lora` scores `recolour_new` (issue 18): a summary that dropped it had no row for the very
    edit the LoRA learns. Default data have none, and then no row appears for it."""
    keys = ("edit_accuracy", "preservation_psnr", "preservation_ssim", "trajectory_error", "psnr")
    rows = [{"category": c, "split": "test", "scores": dict.fromkeys(keys, v)}
            for c, v in (("recolour_new", 0.25), ("recolour_new", 0.75), ("remove", 1.0))]
    s = ToyBench().summarize(rows)
    assert s["split_categories"]["test"]["recolour_new"]["edit_accuracy"] == pytest.approx(0.5)
    assert s["categories"]["recolour_new"]["psnr"] == pytest.approx(0.5)
    assert "recolour_new" not in ToyBench().summarize(rows[2:])["categories"]


# ---- the data filter ---------------------------------------------------------------------------------------
def test_filter_keeps_rows_that_pass_the_papers_thresholds(tmp_path: Path) -> None:
    rows = []
    for sid, kind, tag in (("v_ok", "video_edit", "#motion9"), ("v_motion8", "video_edit", "#motion8"),
                           ("i_ok", "image_edit", "#good9"), ("i_low", "image_edit", "#good8.5"),
                           ("v_bad", "video_edit", "#garbage")):
        src, tgt = _clip(tmp_path / f"{sid}_s.mp4", 30), _clip(tmp_path / f"{sid}_t.mp4", 60)
        rows.append({"id": sid, "kind": kind, "source": src.name, "target": tgt.name, "instruction": f"do it {tag}"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with ScriptedServer() as server:
        res = sama("bench", "filter", tmp_path / "m.jsonl", "--judge", "openai:m", "--base-url", server.base_url,
                   "--retries", "0", "--backoff", "0", "-o", tmp_path / "kept.jsonl", "--json")
    assert res.returncode == 1, res.stderr  # one row never got a score
    summary = json.loads(res.stdout)
    assert summary["kept"] == 2 and summary["dropped"] == 2 and [f["id"] for f in summary["failed"]] == ["v_bad"]
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["v_ok", "i_ok"]  # motion must be > 8; images >= 9 on each
    assert kept[0]["filter"]["scores"]["motion_consistency"] == 9.0
    scored = (tmp_path / "kept.scored.jsonl").read_text()
    assert '"v_motion8"' in scored and '"passed": false' in scored


def test_fixtures_bench_runs_from_any_folder_with_the_shipped_clips(tmp_path: Path) -> None:
    """`sama bench run fixtures --baseline source` needs nothing beside the package: no environment
    variable, any working directory, no judge (weight-free metrics only; a source scored against itself
    agrees with itself in frames, fps and size)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SAMA_SHARED_DIR", "SAMA_REFERENCE_DIR")}
    res = subprocess.run([sys.executable, "-m", "sama_cli", "bench", "run", "fixtures", "--baseline", "source",
                          "-o", "rep", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["samples"] == 7 and summary["failed"] == 0 and summary["judge"].startswith("none")
    assert summary["metrics"]["same_frames"] == summary["metrics"]["same_fps"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "rep" / "scores.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows} == {"add-03", "add-04", "replace-03", "remove-04", "remove-05", "style-02",
                                       "style-03"}
    assert all("site-packages" in r["edit"] or "sama_cli/assets/fixtures/real" in r["edit"] for r in rows)
    assert "No judge was given" in (tmp_path / "rep" / "report.md").read_text()


def test_sama_shared_dir_points_the_fixtures_bench_elsewhere(tmp_path: Path) -> None:
    real = tmp_path / "more" / "fixtures" / "real"
    real.mkdir(parents=True)
    shipped = get_adapter("fixtures").samples(fixtures_dir())[0]
    shutil.copy(shipped.source, real / "only-source.mp4")
    (real / "manifest.jsonl").write_text(json.dumps({"id": "only", "category": "add", "instruction": "x",
                                                     "source": "only-source.mp4"}) + "\n")
    env = {**os.environ, "SAMA_SHARED_DIR": str(tmp_path / "more")}
    res = sama("bench", "run", "fixtures", "--baseline", "source", "-o", tmp_path / "rep", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["samples"] == 1
