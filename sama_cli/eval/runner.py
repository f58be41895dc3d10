"""`sama bench run`: pair each benchmark sample with its edited video, score it (judge or oracle) and
the weight-free metrics, then aggregate as the benchmark does and write the report."""

from __future__ import annotations

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


def attach_edits(samples: list[BenchSample], edits: Path | None, baseline: str | None,
                 adapter: Adapter | None = None) -> None:
    """Set each sample's edited video: a folder (`<id>.mp4`, or the benchmark's own naming), a file listing
    them (our manifest, or the benchmark's results file), the source or true target (`baseline`), or the
    fixtures' reference output."""
    adapter = adapter or Adapter()
    outputs: dict[str, Path] = {}
    if edits is not None and edits.is_file():
        outputs = adapter.edit_table(edits)
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
        elif edits.is_dir():
            s.edit = adapter.edit_path(edits, s)
        else:
            s.edit = outputs.get(adapter.edit_key(s))


def missing(s: BenchSample, needs_source: bool) -> str | None:
    """Why a sample cannot be scored before anything is decoded or judged: a broken line, no edited video,
    no source video."""
    if s.error:
        return s.error
    if s.edit is None or not s.edit.is_file():
        return f"no edited video for {s.id} ({s.edit})"
    if needs_source and not s.source.is_file():
        return f"{s.source}: source video not found for {s.id}"
    return None


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


def base_row(adapter: Adapter, s: BenchSample) -> dict[str, Any]:
    return {"id": s.id, "category": s.category, "instruction": s.instruction,
            "source": str(s.source), "edit": str(s.edit) if s.edit else None, "benchmark": adapter.name,
            "prompt_version": adapter.prompt_version, "wording": adapter.wording_label(s.category),
            "split": s.extra.get("split")}


def score_one(adapter: Adapter, s: BenchSample, judge, cache: JudgeCache | None) -> dict[str, Any]:
    """One sample's row. Never raises for the sample's own trouble: any exception (ours, a codec's, a
    judge's) becomes a failed row with its text and no score, so one bad sample cannot stop a run."""
    row = base_row(adapter, s)
    try:
        return _score(adapter, s, judge, cache, row)
    except SamaError as e:
        error = e.message
    except Exception as e:  # noqa: BLE001 - any failure in a worker is this sample's failure, not the run's
        error = f"{s.edit}: {type(e).__name__}: {e}"
    row = {k: v for k, v in row.items() if k not in ("score", "scores")}  # a failure never carries a score
    return {**row, "status": "failed", "kind": "judge", "error": error}


def _score(adapter: Adapter, s: BenchSample, judge, cache: JudgeCache | None, row: dict[str, Any]) -> dict[str, Any]:
    from sama_cli.io.video import read_video

    judged = adapter.needs_judge and judge is not None
    if judged:  # a cached judgement costs one hash, no decoding
        key = JudgeCache.key(adapter.name, s.id, content_hash(s.edit), judge.name, adapter.prompt_version,
                             adapter.wording_label(s.category))
        cached = cache.get(key) if cache else None
        if cached is not None:
            return {**cached, "cached": True}
    edit = read_video(s.edit)  # each video is decoded once per sample
    source = read_video(s.source) if s.source.is_file() else None
    row["metrics"] = weight_free(edit, source.info if source is not None else None)
    if not adapter.needs_judge:
        scores = adapter.oracle_scores(edit.frames, s)
        return {**row, "status": "ok", "judge": "oracle", "scores": scores, "score": scores[adapter.headline]}
    if not judged:  # no judge given: the weight-free metrics are the result
        return {**row, "status": "ok", "judge": NO_JUDGE}
    if source is None:
        raise InputError("source video not found", path=s.source)
    rule = adapter.rule_scores(source.frames, edit.frames, s)
    if rule is not None:  # the benchmark's own rule decides, the judge is not asked
        row.update(status="ok", judge=judge.name, rule="identical to the source", scores=rule,
                   score=adapter.sample_score(rule, s.category))
    else:
        _ask(adapter, s, judge, row, source.frames, edit.frames)
    if cache and row["status"] == "ok":
        cache.put(key, row)
    return row


def _ask(adapter: Adapter, s: BenchSample, judge, row: dict[str, Any], source_frames, edit_frames) -> None:
    keys = [c.key for c in adapter.criteria_for(s.category)]
    images = adapter.judge_images(source_frames, edit_frames, s)
    result = judge.score(adapter.prompt(s), images, keys, adapter.scale, adapter.max_side, adapter.request(s))
    row.update(judge=judge.name, raw=result.raw, attempts=result.attempts)
    if result.scores is None:
        row.update(status="failed", kind="judge", error=result.error)  # never a score: the raw replies are kept
    else:
        row.update(status="ok", scores=result.scores, score=adapter.sample_score(result.scores, s.category))


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
    attach_edits(samples, edits, baseline, adapter)
    cache = JudgeCache(out / "cache") if use_cache and judge is not None and adapter.needs_judge else None
    # a broken line, a missing source or edit is found before any decoding or judge call
    early = {s.id: missing(s, adapter.needs_judge and judge is not None) for s in samples}
    todo = [s for s in samples if early[s.id] is None]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        done = {r["id"]: r for r in progress(pool.map(lambda s: score_one(adapter, s, judge, cache), todo),
                                             f"bench {adapter.name}", total=len(todo))}
    rows = [done[s.id] if early[s.id] is None else
            {**base_row(adapter, s), "status": "failed", "kind": "input", "error": early[s.id]} for s in samples]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    if metrics_only:
        summary = {"categories": {}, "overall": float("nan"), "samples": len(ok)}
    else:
        summary = adapter.summarize(ok, failed) if adapter.needs_judge else adapter.summarize(ok)
    judge_name = NO_JUDGE if metrics_only else getattr(judge, "name", "oracle")
    summary.update(benchmark=adapter.name, judge=judge_name, prompt_version=adapter.prompt_version,
                   wording=_wordings(adapter, rows), failed=len(failed), cached=sum(1 for r in rows if r.get("cached")),
                   seconds=round(time.perf_counter() - t0, 3), metrics=_mean_metrics(ok))
    write_report(adapter, rows, summary, out)
    return summary


def _wordings(adapter: Adapter, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Which wording scored each category: ours, or a --prompt-file with its hash."""
    return {c: adapter.wording_label(c) for c in dict.fromkeys(r["category"] for r in rows)}


def _mean_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in rows for k in r.get("metrics", {})})
    return {k: sum(r["metrics"][k] for r in rows if k in r.get("metrics", {})) /
            max(1, sum(1 for r in rows if k in r.get("metrics", {}))) for k in keys}
