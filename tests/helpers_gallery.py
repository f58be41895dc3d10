"""Tiny reports for the gallery tests: a judged VIE-Bench run (a scripted judge), a second run of other
edits to compare with, and a batch-edit folder; each clip's frame count and fps chosen here, so a page's
durations are known without running our code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from sama_cli.eval.judges import JudgeResult
from sama_cli.eval.runner import run
from sama_cli.eval.vie import VieBench
from sama_cli.io.video import write_video

PLANTED_INSTRUCTION = "<script>window.__pwnedInstruction = true</script> add a red ball"
PLANTED_REPLY = '<img src=x onerror="window.__pwnedJudge = true"><script>window.__pwnedJudge = true</script>'
# id -> (frames, fps, category in the file, category as VIE-Bench names it, instruction)
SAMPLES = {
    "a": (5, 5.0, "Add", "add", PLANTED_INSTRUCTION),
    "b": (9, 6.0, "Remove", "remove", "remove the square"),
    "c": (7, 7.0, "Style/Tone", "style", "make it a watercolour #fail"),
    "d": (5, 5.0, "Swap/Change", "swap", "swap the square for a circle"),  # its edit is missing
}
JUDGED = {"a": 8.0, "b": 4.0}  # c: the judge fails (no score), d: no edited video


def moving_square(frames: int, value: int) -> torch.Tensor:
    """(T, 32, 32, 3): a square moving one step right per frame, so that each frame differs."""
    video = torch.full((frames, 32, 32, 3), 30, dtype=torch.uint8)
    for t in range(frames):
        video[t, 10:18, 2 + 2 * t:10 + 2 * t] = value
    return video


class ScriptedJudge:
    """Scores by the sample: JUDGED's value on every criterion with a reply whose reason holds a planted
    script; '#fail' in the prompt: no score, the planted reply kept as raw text."""

    name = "scripted"

    def score(self, prompt, images, keys, scale, max_side, request) -> JudgeResult:
        if "#fail" in prompt:
            return JudgeResult(None, raw=[PLANTED_REPLY], error="unparseable reply", attempts=1)
        value = JUDGED["a"] if "red ball" in prompt else JUDGED["b"]
        reply = json.dumps({**dict.fromkeys(keys, value), "reason": PLANTED_REPLY + " looks right"})
        return JudgeResult(dict.fromkeys(keys, value), raw=[reply], attempts=1)


def vie_reports(root: Path) -> dict[str, Path]:
    """A VIE-Bench folder (H.264 4:2:0 sources), lossless RGB edits (report A) and 4:2:0 edits (report B),
    both judged by ScriptedJudge."""
    data, edits_a, edits_b = root / "vie", root / "edits_a", root / "edits_b"
    for folder in (data / "videos", edits_a, edits_b):
        folder.mkdir(parents=True)
    rows = []
    for i, (sid, (frames, fps, cat, _, instruction)) in enumerate(SAMPLES.items()):
        write_video(data / "videos" / f"{sid}.mp4", moving_square(frames, 200), fps)
        if sid != "d":
            write_video(edits_a / f"{sid}.mp4", moving_square(frames, 60 + 40 * i), fps, lossless=True)
            write_video(edits_b / f"{sid}.mp4", moving_square(frames, 250 - 40 * i), fps)
        rows.append({"id": sid, "category": cat, "instruction": instruction, "source": f"videos/{sid}.mp4"})
    (data / "vie_bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run(VieBench(), data, edits_a, ScriptedJudge(), root / "report_a", workers=1, use_cache=False)
    run(VieBench(), data, edits_b, ScriptedJudge(), root / "report_b", workers=1, use_cache=False)
    return {"data": data, "a": root / "report_a", "b": root / "report_b", "edits_a": edits_a}


def edit_folder(root: Path, reports: dict[str, Path]) -> tuple[Path, list[dict], list[dict], list[dict]]:
    """A `sama edit --manifest` output folder as edit_batch leaves it (lossless edits), with its rows, the
    edits' reports (timings) and a failed row."""
    out = root / "batch"
    out.mkdir()
    rows, done = [], []
    for sid in ("a", "b"):
        frames, fps, _, _, instruction = SAMPLES[sid]
        shutil.copy(reports["edits_a"] / f"{sid}.mp4", out / f"{sid}.mp4")
        rows.append({"id": sid, "kind": "video_edit", "source": str(reports["data"] / "videos" / f"{sid}.mp4"),
                     "instruction": instruction, "split": "test"})
        done.append({"id": sid, "output": str(out / f"{sid}.mp4"), "frames": frames, "fps": fps, "size": [32, 32],
                     "steps": 4, "seconds": {"encode": 0.25, "denoise": 2.0, "total": 2.5 + len(done)},
                     "seconds_per_step": 0.5, "peak_memory_mb": 512.0, "windows": 1})
    rows.append({"id": "e", "kind": "video_edit", "source": str(reports["data"] / "videos" / "c.mp4"),
                 "instruction": "make it night"})
    failed = [{"id": "e", "error": "e.mp4: out of memory"}]
    return out, rows, done, failed
