"""OpenVE-Bench (the OpenVE-3M release, github.com/OpenVE-Team/OpenVE-3M, folder `OpenVE-Bench/`): 431 pairs
in `benchmark_videos.csv` (edited_type, prompt, original_video), videos in `videos/`. Each edit type is
judged on its own three 1-5 criteria, the second and third never above the first; a sample's score is
the mean of its three, a type's the mean over its scored samples, overall the mean over every scored
sample (the release's `*_benchmark.py`, `process_csv`). The criteria (names, order, display names, what
they weigh), the cap rule, the decoding settings and the `Name: n` reply lines are the release's; the
wording of our prompt is ours, not a copy of the release's prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sama_cli.core.errors import InputError
from sama_cli.eval.adapters import (
    Adapter,
    BenchSample,
    Criterion,
    Request,
    broken,
    column,
    norm,
    read_lines,
    register,
)


@dataclass
class Rubric:
    task: str  # what kind of edit is being graded
    criteria: list[Criterion]


_COMPLIANCE = "prompt_compliance"
OPENVE_RUBRICS: dict[str, Rubric] = {
    "global_style": Rubric("a style transfer applied to the whole video", [
        Criterion("style_fidelity", "1: the requested style is missing or wrong; 3: its key traits (palette, "
                  "brushwork, texture) show but patchily or not in every frame; 5: the style is carried faithfully "
                  "through every region and frame", "Style Fidelity"),
        Criterion("content_preservation", "1: objects, layout or motion are lost and the scene is hard to recognise; "
                  "3: structure and motion are right with some local warping; 5: every object, spatial relation and "
                  "motion is kept, only restyled", "Content Preservation"),
        Criterion("temporal_stability", "1: the style boils or flickers so much the video is unwatchable; 3: visible "
                  "but tolerable flicker during motion; 5: the style sticks to the scene with no flicker", "Temporal Stability"),
    ]),
    "background_change": Rubric("a replacement of the video's background", [
        Criterion("instruction_compliance", "1: no change, an unrelated background, or the foreground replaced too; "
                  "3: the main background is replaced but elements are missing or extra, or it spills onto the "
                  "subject; 5: the background matches the instruction exactly and the foreground is untouched", "Instruction Compliance"),
        Criterion("visual_temporal_seamlessness", "1: tearing, halos or jittering edges obvious at a glance; 3: the "
                  "blend shows on a closer look (soft edges, slight shimmer); 5: an indistinguishable composite, "
                  "edges and colour stable over the whole video", "Visual & Temporal Seamlessness"),
        Criterion("physical_consistency", "1: wrong horizon, conflicting light, a floating subject, or a background "
                  "that stays still while the camera moves; 3: believable with small errors in shadows, perspective "
                  "or tracking; 5: light, shadows, perspective, depth and parallax agree through all motion", "Physical Consistency"),
    ]),
    "local_change": Rubric("a replacement of an object or part of the video", [
        Criterion(_COMPLIANCE, "1: the target is not replaced or something unrelated is edited; 3: mostly replaced "
                  "but with remnants, other objects altered, or the count or position wrong; 5: all and only the "
                  "named objects are replaced for the whole video, class, number, position, scale, pose and motion "
                  "as asked", "Prompt Compliance"),
        Criterion("visual_naturalness_temporal_stability", "1: the new object is deformed, flickers or jitters badly; "
                  "3: lighting or palette clash, soft edges or minor flicker are noticeable; 5: seamless in every "
                  "frame, the edited area cannot be told apart", "Visual Naturalness & Temporal Stability"),
        Criterion("physical_motion_integrity", "1: the new object floats or slides, perspective and light are wrong, "
                  "the background warps; 3: light, perspective and tracking mostly right with small drifts; 5: "
                  "motion, perspective, shadows and reflections move with the scene and camera, background untouched", "Physical & Motion Integrity"),
    ]),
    "local_remove": Rubric("a removal of an object from the video", [
        Criterion(_COMPLIANCE, "1: no edit, a corrupted video, or a wrong edit; 3: the right object is removed but "
                  "fragments or ghosts remain, or other objects go too; 5: all and only the named objects are "
                  "removed, everything else untouched", "Prompt Compliance"),
        Criterion("visual_temporal_naturalness", "1: broken, full of artefacts or severe flicker; 3: the filled-in "
                  "background clashes in light or colour or changes between frames; 5: the removal is stable and "
                  "looks like a clean background", "Visual & Temporal Naturalness"),
        Criterion("physical_detail_coherence", "1: the fill hides original content, hallucinates structure, or stays "
                  "static in a moving scene; 3: the reconstruction is mostly right and stable with small flaws; 5: "
                  "the filled area follows the surrounding motion, texture and detail over time", "Physical & Detail Coherence"),
    ]),
    "local_add": Rubric("an addition of an object to the video", [
        Criterion(_COMPLIANCE, "1: no edit, a corrupted video, or a wrong edit; 3: the right object is added but key "
                  "attributes (position, colour, count, size) are wrong; 5: all and only the requested objects are "
                  "added as described, everything else untouched", "Prompt Compliance"),
        Criterion("visual_temporal_naturalness", "1: broken, full of artefacts or severe flicker; 3: the added "
                  "object's light or colour clashes or changes between frames; 5: stable and indistinguishable from "
                  "the original footage", "Visual & Temporal Naturalness"),
        Criterion("physical_detail_coherence", "1: the object floats, has wrong perspective or light, hides key "
                  "content or moves wrongly; 3: light, perspective and motion mostly right with small flaws; 5: "
                  "contact, occlusion, shadows, reflections and motion are physically right in every frame", "Physical & Detail Coherence"),
    ]),
    "subtitle_edit": Rubric("a subtitle or on-screen text edit", [
        Criterion(_COMPLIANCE, "1: the subtitle is not added, removed or replaced, or the wrong one is; 3: the right "
                  "action and content with clear spelling errors or small edits to other subtitles; 5: exactly and "
                  "only the requested subtitles change, with the exact text", "Prompt Compliance"),
        Criterion("subtitle_attribute_fidelity", "1: position, font or colour ignore the instruction (or, when "
                  "unspecified, make the text unreadable); 3: the right general placement or look with clear errors; "
                  "5: every requested attribute matched (or, when unspecified, consistent with existing subtitles)", "Subtitle Attribute Fidelity"),
        Criterion("unedited_content_integrity", "1: the video is corrupted or other subtitles are deleted or altered; "
                  "3: slight local artefacts or small changes to nearby subtitles; 5: the video and every other "
                  "subtitle stay identical to the original", "Integrity of Unedited Content"),
    ]),
    "creative_edit": Rubric("a creative edit (effects, transformations, imaginative changes)", [
        Criterion(_COMPLIANCE, "1: the instruction is ignored; 3: it is followed with large deviations in style, "
                  "motion or concept, or only for part of the video; 5: the intended creative effect is fully and "
                  "consistently achieved", "Prompt Compliance"),
        Criterion("temporal_visual_coherence", "1: strobing, flicker or artefacts make it unwatchable; 3: mostly "
                  "stable with boiling textures or edge jitter; 5: seamless, stable, like part of the original "
                  "footage", "Temporal & Visual Coherence"),
        Criterion("physical_plausibility_detail_preservation", "1: no believable light, shadow or motion, original "
                  "detail badly degraded; 3: physics and light generally believable, unedited parts mostly kept; 5: "
                  "edits behave like a real recording and original detail is fully kept", "Physical Plausibility & Detail Preservation"),
    ]),
    "camera_edit": Rubric("a change of camera shot type (long, medium, close-up)", [
        Criterion(_COMPLIANCE, "1: the shot is unchanged or changed to a wrong type; 3: the right shot type with poor "
                  "framing; 5: exactly the requested shot type with ideal framing", "Prompt Compliance"),
        Criterion("visual_quality_stability", "1: heavy distortion, glitches or noise; 3: small but visible warping or "
                  "breathing; 5: stable and clear, as if filmed that way", "Visual Quality & Stability"),
        Criterion("consistency_detail_fidelity", "1: subject, background or action differ from the original; 3: the "
                  "same scene with visible continuity errors; 5: subject, lighting, background and action fully kept, "
                  "as if the same scene were filmed from another position", "Consistency & Detail Fidelity"),
    ]),
}

OPENVE_TYPES = {norm(k): k for k in OPENVE_RUBRICS} | {"subtitle": "subtitle_edit", "creative": "creative_edit",
                                                      "camera": "camera_edit"}
# release: gemini_benchmark.py, call_gemini_model: temperature 0.7 and a plain system message (our words)
SYSTEM = "You are an assistant who rates edited videos."
TEMPERATURE = 0.7
LINE = re.compile(r"^[\s*#>-]*([A-Za-z][^:\n]*?)[\s*]*:[\s*]*(\d+(?:\.\d+)?)", re.M)


def parse_reply(text: str, criteria: list[Criterion], scale: tuple[float, float]) -> dict[str, float]:
    """Scores from our JSON shape, or from the release's `Name: n` lines (any free text before them, names
    matched case- and punctuation-free). Raises ValueError when neither shape has all three in the scale."""
    from sama_cli.eval.judges import parse_scores

    keys = [c.key for c in criteria]
    try:
        return parse_scores(text, keys, scale)
    except ValueError:
        pass
    names = {norm(c.label): c.key for c in criteria} | {norm(c.key): c.key for c in criteria}
    found: dict[str, float] = {}
    for name, value in LINE.findall(text):
        key = names.get(norm(name))
        if key is not None and key not in found:
            found[key] = float(value)
    if len(found) < len(keys):
        raise ValueError(f"neither JSON nor 'Name: n' lines for {', '.join(c.label for c in criteria)}")
    if not all(scale[0] <= v <= scale[1] for v in found.values()):
        raise ValueError("a 'Name: n' score outside the scale")
    return {k: found[k] for k in keys}


def capped(scores: dict[str, float], criteria: list[Criterion]) -> dict[str, float]:
    """The release's rule: the second and third scores are never above the first."""
    first, *rest = (c.key for c in criteria)
    return {first: scores[first], **{k: min(scores[k], scores[first]) for k in rest}}


@register
class OpenVeBench(Adapter):
    name = "openve"
    scale = (1.0, 5.0)
    criteria: list[Criterion] = []  # per edit type: OPENVE_RUBRICS
    # the paper's table: seven types; camera_edit is in the release and gets a row of its own
    categories = ["global_style", "background_change", "local_change", "local_remove", "local_add", "subtitle_edit",
                  "creative_edit"]
    extra_rows = ["camera_edit"]
    # release: internvl_benchmark.py samples 17 frames per video at 448 px (the Gemini and Qwen3-VL scripts
    # send whole videos, which an image-only chat endpoint cannot take)
    frames = 17
    max_side = 448
    prompt_version = "v3"  # v3: the release's type names, temperature 0.7 and a system message, `Name: n` replies
    paper_rows = [{"method": "SAMA (paper)", "global_style": 4.05, "background_change": 2.59, "local_change": 3.93,
                   "local_remove": 3.32, "local_add": 2.54, "subtitle_edit": 3.63, "creative_edit": 3.11}]

    def category_of(self, name: str) -> str:
        return OPENVE_TYPES.get(norm(name), name)

    def criteria_for(self, category: str) -> list[Criterion]:
        if category not in OPENVE_RUBRICS:
            raise InputError(f"unknown OpenVE-Bench edit type {category!r} (known: {', '.join(OPENVE_RUBRICS)})")
        return OPENVE_RUBRICS[category].criteria

    def columns(self) -> list[str]:
        return ["score"]  # the paper's table: one number per type

    def overall(self, cats: dict[str, float], rows: list[dict]) -> float:
        # release: the overall number is the mean over every scored sample (camera_edit's too), not over the types
        return sum(r["score"] for r in rows) / len(rows) if rows else float("nan")

    def overall_rows(self, rows: list[dict]) -> list[dict]:
        return rows  # release: every scored sample, camera_edit's too

    def sample_score(self, scores: dict[str, float], category: str = "") -> float:
        criteria = self.criteria_for(category)
        return sum(capped(scores, criteria).values()) / len(criteria)

    def request(self, s: BenchSample) -> Request:
        criteria = self.criteria_for(s.category)
        return Request(parse=lambda text: parse_reply(text, criteria, self.scale), system=SYSTEM,
                       temperature=TEMPERATURE, images_first=False, schema=False)

    def our_prompt(self, s: BenchSample) -> str:
        criteria = self.criteria_for(s.category)
        first, *rest = (c.label for c in criteria)
        return "\n".join([
            f"You are an expert judge of instruction-based video editing, grading {OPENVE_RUBRICS[s.category].task}.",
            f"Editing instruction: \"{s.instruction}\"",
            "The images after this text are frames of the ORIGINAL video, then the same frames of the EDITED video.",
            "Rate the edit on each criterion with a whole number from 1 (worst) to 5 (best); the scale's anchors:",
            *(f"- {c.label}: {c.description}" for c in criteria),
            f"Neither {' nor '.join(rest)} may be higher than {first}.",
            "Answer with one short line of reasons, then one line per criterion, `<criterion name>: <score>`, "
            "in the order above.",
        ])

    def samples(self, data: Path) -> list[BenchSample]:
        """Rows of benchmark_videos.csv. A sample's id is the `id` column when there is one; else the source
        video's file stem, and when several rows share a stem (edits of one source) each of them gets
        `<stem>_r<row>` (row: 1-based data row), so ids are unique and stay put while the file does."""
        path = data / "benchmark_videos.csv"
        lines = read_lines(path)
        out = [broken(path, ln) if ln.error else self._sample(data, path, ln.row, ln.number) for ln in lines]
        stems = [s.extra.get("stem", s.id) for s in out]
        counts = Counter(stems)
        seen: dict[str, int] = {}
        for row, (s, stem, ln) in enumerate(zip(out, stems, lines, strict=True), start=1):
            if s.extra.get("stem") is not None:
                s.id = stem if counts[stem] == 1 else f"{stem}_r{row}"
            if s.error is None and s.id in seen:
                raise InputError(f"{path}:{ln.number}: sample id {s.id!r} repeats line {seen[s.id]}; give the rows "
                                 "an 'id' column")
            seen.setdefault(s.id, ln.number)
        return out

    def _sample(self, data: Path, path: Path, row: dict, i: int) -> BenchSample:
        try:
            kind = column(row, ("edited type", "edited_type", "type"), path, i)
            prompt = column(row, ("prompt", "instruction"), path, i)
            given = column(row, ("original video", "original_video", "video"), path, i)
        except InputError as e:
            return BenchSample(f"{path.name}:{i}", "unreadable", "", path, error=e.message)
        cat = OPENVE_TYPES.get(norm(kind))
        source = resolve(given, data, data.parent)
        s = BenchSample(str(row.get("id") or ""), cat or "unreadable", prompt, source or data / given,
                        extra={"original_video": given, "line": i})
        if not row.get("id"):
            s.extra["stem"] = Path(given).stem
        if cat is None:
            s.error = (f"{path}:{i}: unknown edited type {kind!r} (known: {', '.join(OPENVE_RUBRICS)})")
        elif source is None:
            s.error = f"{path}:{i}: original_video {given!r} found neither in {data}, nor in {data.parent}, nor as given"
        return s

    def edit_table(self, path: Path) -> dict[str, Path]:
        """The release's results CSV (`new_result.csv`: the four columns plus `edited_result_path`; paths
        relative to the CSV's folder, then its parent, then as given), else our manifest. Rows are matched
        to samples by (original_video, prompt)."""
        if path.suffix != ".csv":
            return super().edit_table(path)
        table: dict[str, Path] = {}
        for ln in read_lines(path):
            if ln.error:
                continue  # a broken results row leaves its sample without an edit: that sample's failure
            given = ln.row.get("editedresultpath")
            if not given:
                raise InputError(f"{path}:{ln.number}: no 'edited_result_path' (the release's results CSV adds it)")
            key = _pair_key(str(ln.row.get("originalvideo", "")), str(ln.row.get("prompt", "")))
            table[key] = resolve(given, path.parent, path.parent.parent) or path.parent / given
        return table

    def edit_key(self, s: BenchSample) -> str:
        return _pair_key(s.extra.get("original_video", ""), s.instruction) if "original_video" in s.extra else s.id


def _pair_key(original_video: str, prompt: str) -> str:
    return f"{Path(original_video).as_posix().strip()}\x1f{prompt.strip()}"


def resolve(given: str, *folders: Path) -> Path | None:
    """`given` relative to each folder in turn, then as given; None when it is nowhere."""
    for candidate in (*(f / given for f in folders), Path(given)):
        if candidate.is_file():
            return candidate
    return None
