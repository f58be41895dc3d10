"""`sama bench run`: pair each benchmark sample with its edited video, score it (judge or oracle) and
the weight-free metrics, then aggregate as the benchmark does and write the report."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sama_cli.core.console import progress
from sama_cli.core.errors import InputError, SamaError
from sama_cli.eval.adapters import Adapter, BenchSample
from sama_cli.eval.judges import JudgeCache
from sama_cli.io.artifacts import content_hash

NO_JUDGE = "none (weight-free metrics only)"


def attach_edits(samples: list[BenchSample], edits: Path | None, baseline: str | None) -> None:
    """Set each sample's edited video: `DIR/<id>.mp4`, a manifest's `output` column, the source or true
    target (`baseline`), or the fixtures' reference output."""
    outputs: dict[str, str] = {}
    if edits is not None and edits.is_file():
        for i, line in enumerate(edits.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out = Path(row["output"])
                    outputs[str(row["id"])] = str(out if out.is_absolute() else edits.parent / out)
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{edits}:{i}: an edits manifest row needs 'id' and 'output'") from None
    elif edits is not None and not edits.is_dir():
        raise InputError("edits not found (a folder of <id>.mp4 or a manifest with id/output)", path=edits)
    for s in samples:
        if baseline == "source":
            s.edit = s.source
        elif baseline == "target":
            s.edit = Path(s.extra["target"]) if "target" in s.extra else None
        elif edits is None:
            ref = s.extra.get("reference_output")
            s.edit = Path(ref) if ref else None
        elif s.id in outputs:
            s.edit = Path(outputs[s.id])
        elif edits.is_dir():
            s.edit = edits / f"{s.id}.mp4"


def pick_frames(frames, count: int) -> np.ndarray:
    """`count` frames evenly spread over a (T, H, W, 3) clip (all of them when it is shorter)."""
    idx = np.linspace(0, frames.shape[0] - 1, num=min(count, frames.shape[0])).round().astype(int)
    return np.asarray(frames)[idx]


def sample_frames(path: Path, count: int) -> np.ndarray:
    from sama_cli.io.video import read_video

    return pick_frames(read_video(path).frames, count)


def weight_free(edit, source_info) -> dict[str, float]:
    """Judge-free metrics of an edited `Video` (read once by the caller) against the source's info."""
    from sama_cli.eval.metrics import agreement, flicker, warp_error

    frames = edit.frames[:33]
    out = {"flicker": flicker(frames), "warp_error": warp_error(frames)}
    if source_info is not None:
        out.update(agreement(source_info, edit.info))
    return out


def score_one(adapter: Adapter, s: BenchSample, judge, cache: JudgeCache | None) -> dict[str, Any]:
    """One sample's row. Never raises for the sample's own trouble: any exception (ours, a codec's, a
    judge's) becomes a failed row with its text and no score, so one bad sample cannot stop a run."""
    row: dict[str, Any] = {"id": s.id, "category": s.category, "instruction": s.instruction,
                           "edit": str(s.edit) if s.edit else None, "benchmark": adapter.name,
                           "prompt_version": adapter.prompt_version, "split": s.extra.get("split")}
    if s.edit is None or not s.edit.is_file():
        return {**row, "status": "failed", "error": f"no edited video for {s.id} ({s.edit})"}
    try:
        return _score(adapter, s, judge, cache, row)
    except SamaError as e:
        error = e.message
    except Exception as e:  # noqa: BLE001 - any failure in a worker is this sample's failure, not the run's
        error = f"{s.edit}: {type(e).__name__}: {e}"
    row = {k: v for k, v in row.items() if k not in ("score", "scores")}  # a failure never carries a score
    return {**row, "status": "failed", "error": error}


def _score(adapter: Adapter, s: BenchSample, judge, cache: JudgeCache | None, row: dict[str, Any]) -> dict[str, Any]:
    from sama_cli.io.video import read_video

    if adapter.needs_judge and judge is not None:  # a cached judgement costs one hash, no decoding
        keys = [c.key for c in adapter.criteria_for(s.category)]
        key = JudgeCache.key(adapter.name, s.id, content_hash(s.edit), judge.name, adapter.prompt_version)
        cached = cache.get(key) if cache else None
        if cached is not None:
            return {**cached, "cached": True}
    edit = read_video(s.edit)  # each video is decoded once per sample
    source = read_video(s.source) if s.source.is_file() else None
    row["metrics"] = weight_free(edit, source.info if source is not None else None)
    if judge is None and adapter.needs_judge:  # no judge given: the weight-free metrics are the result
        return {**row, "status": "ok", "judge": NO_JUDGE}
    if not adapter.needs_judge:
        scores = adapter.oracle_scores(edit.frames, s)
        return {**row, "status": "ok", "judge": "oracle", "scores": scores, "score": scores[adapter.headline]}
    if source is None:
        raise InputError("source video not found", path=s.source)
    images = list(pick_frames(source.frames, adapter.frames)) + list(pick_frames(edit.frames, adapter.frames))
    result = judge.score(adapter.prompt(s), images, keys, adapter.scale, adapter.max_side)
    row.update(judge=judge.name, raw=result.raw, attempts=result.attempts)
    if result.scores is None:
        row.update(status="failed", error=result.error)  # never a score: the raw replies are kept
    else:
        score = adapter.sample_score(result.scores, s.category)
        row.update(status="ok", scores=result.scores, score=score)
        if cache:
            cache.put(key, row)
    return row


def run(adapter: Adapter, data: Path, edits: Path | None, judge, out: Path, *, limit: int | None = None,
        workers: int = 4, baseline: str | None = None, use_cache: bool = True,
        split: str | None = None) -> dict[str, Any]:
    """Score every sample and write the report folder; returns the summary."""
    from sama_cli.eval.report import write_report

    t0 = time.perf_counter()
    metrics_only = adapter.needs_judge and judge is None
    samples = adapter.samples(data)
    if split is not None:
        samples = [s for s in samples if s.extra.get("split", "train") in split.split(",")]
    samples = samples[:limit] if limit else samples
    if not samples:
        raise InputError(f"the benchmark has no samples{f' in split {split!r}' if split else ''}", path=data)
    attach_edits(samples, edits, baseline)
    cache = JudgeCache(out / "cache") if use_cache and judge is not None and adapter.needs_judge else None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(progress(pool.map(lambda s: score_one(adapter, s, judge, cache), samples),
                             f"bench {adapter.name}", total=len(samples)))
    ok = [r for r in rows if r["status"] == "ok"]
    summary = ({"categories": {}, "overall": float("nan"), "samples": len(ok)} if metrics_only
               else adapter.summarize(ok))
    judge_name = NO_JUDGE if metrics_only else getattr(judge, "name", "oracle")
    summary.update(benchmark=adapter.name, judge=judge_name, prompt_version=adapter.prompt_version,
                   failed=len(rows) - len(ok), cached=sum(1 for r in rows if r.get("cached")),
                   seconds=round(time.perf_counter() - t0, 3), metrics=_mean_metrics(ok))
    write_report(adapter, rows, summary, out)
    return summary


def _mean_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in rows for k in r.get("metrics", {})})
    return {k: sum(r["metrics"][k] for r in rows if k in r.get("metrics", {})) /
            max(1, sum(1 for r in rows if k in r.get("metrics", {}))) for k in keys}
