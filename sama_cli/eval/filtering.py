"""The paper's VLM data filter (docs/sama.md §6): judge edit pairs and keep the ones that pass.

Images are kept at >= 9 on instruction following, visual quality and content preservation; videos at
>= 8 on those and > 8 on motion consistency. The scores are written into every row (kept or not) of
a side report; the filtered manifest holds the kept rows with their scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sama_cli.eval.adapters import Criterion
from sama_cli.eval.judges import JudgeCache, JudgeResult
from sama_cli.eval.runner import sample_frames

CRITERIA = [
    Criterion("instruction_following", "the target does exactly what the instruction asks"),
    Criterion("visual_quality", "the target is sharp, natural and artifact-free"),
    Criterion("content_preservation", "everything the instruction does not mention is unchanged"),
]
MOTION = Criterion("motion_consistency", "the target's motion matches the source's and is smooth")


@dataclass
class Thresholds:
    image_min: float = 9.0  # images: >= 9 on each criterion
    video_min: float = 8.0  # videos: >= 8 on most criteria...
    video_motion_above: float = 8.0  # ...and > 8 on motion consistency

    def passes(self, scores: dict[str, float], video: bool) -> bool:
        if not video:
            return all(scores[c.key] >= self.image_min for c in CRITERIA)
        return all(scores[c.key] >= self.video_min for c in CRITERIA) and scores[MOTION.key] > self.video_motion_above


def prompt(instruction: str, video: bool) -> str:
    crits = CRITERIA + ([MOTION] if video else [])
    keys = ", ".join(f'"{c.key}": <number>' for c in crits)
    return "\n".join([
        "You are checking training data for instruction-based editing.",
        "The first images show the SOURCE, the next images the TARGET (the supposed edit).",
        f'Instruction: "{instruction}"', "Rate from 1 (worst) to 10 (best):",
        *(f"- {c.key}: {c.description}" for c in crits),
        f'Reply with JSON only: {{{keys}, "reason": "<one sentence>"}}'])


def judge_row(row: dict[str, Any], judge, cache: JudgeCache | None, frames: int = 6) -> tuple[JudgeResult, bool]:
    from sama_cli.io.artifacts import content_hash

    video = row["kind"] == "video_edit"
    keys = [c.key for c in CRITERIA + ([MOTION] if video else [])]
    key = JudgeCache.key("filter", row["id"], content_hash(row["target"]), judge.name, "filter-v1")
    if cache and (hit := cache.get(key)):
        return JudgeResult(scores=hit["scores"], raw=hit["raw"], cached=True), video
    images = list(sample_frames(Path(row["source"]), frames)) + list(sample_frames(Path(row["target"]), frames))
    result = judge.score(prompt(row["instruction"], video), images, keys, (1.0, 10.0))
    if cache and result.scores is not None:
        cache.put(key, {"scores": result.scores, "raw": result.raw})
    return result, video
