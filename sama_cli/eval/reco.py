"""ReCo-Bench (the HiDream-ai ReCo release, folder `ReCo-Bench/`; its two-step evaluation,
eval_step1_run_gemini_api.py and eval_step2_get_final_scores.py): four tasks, one sample a line in
`configs/<task>.txt` (`<source>.mp4: <instruction>`, an optional ` | <image>` tail), sources in
`ori_videos/`, edits named `all_results/<task>/<source stem>_<instruction, normalised, 80 characters>.mp4`.

One request per sample: source and edit frames side by side (every 8th frame, each pair 224 px high,
then enlarged so the short side is 512), images before the text; nine scores on 1-10 in three groups,
edit accuracy (SA, SP, CP), video quality (VF, TS, ES), naturalness (AN, SN, MN), 0 reserved for a
failed edit, and an edit identical to its source scores 0 everywhere. Per sample each group's geometric
mean, S the mean of the three; per task the mean over samples; SA..ES the arithmetic means over the
scored samples. A judge failure counts as 0 (the release's rule; `--failed-as excluded` for ours), a
missing video is left out. The prompt's wording is ours.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError
from sama_cli.eval.adapters import Adapter, BenchSample, Criterion, Line, Request, mean, register
from sama_cli.eval.judges import first_in_scale

TASKS = ("add", "remove", "replace", "style")
# release: eval_step2_get_final_scores.py, INDICATORS (the scores list of each group, in order)
RECO_GROUPS = {"accuracy": ("SA", "SP", "CP"), "quality": ("VF", "TS", "ES"), "naturalness": ("AN", "SN", "MN")}
RELEASE_GROUPS = {"edit_accuracy": "accuracy", "video_quality": "quality", "naturalness": "naturalness"}
RECO_DESCRIPTIONS = {
    "SA": "semantic accuracy: the edit does what the instruction asks (what is added, removed, replaced, styled)",
    "SP": "scope precision: the edit happens where the instruction says, locally or over the whole frame",
    "CP": "content preservation: what should not change is unchanged (for a style edit: its structure and motion)",
    "VF": "visual fidelity: the edited frames are sharp, without blur, melting or distortion",
    "TS": "temporal stability: no flicker or boiling textures from frame to frame",
    "ES": "edit persistence: the edit holds from the first frame to the last, never reverting or vanishing",
    "AN": "appearance naturalness: the edit matches the scene's light, shadows and texture",
    "SN": "scale naturalness: the edited content's size and proportions fit the scene",
    "MN": "motion naturalness: the edit moves and interacts as physics allows",
}
STRIDE = 8  # release: stride = 81 // (2 * 5), every 8th side-by-side frame
PAIR_HEIGHT = 224  # release: the side-by-side frame resized to 224 px high
SHORT_SIDE = 512  # release: encode_image_to_base64 enlarges so the short side is at least 512


def geometric_mean(values: list[float]) -> float:
    """(product) ** (1/n); a zero makes it 0 (the release's geometric_mean, which also maps a negative to 0)."""
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def release_name(source: str, instruction: str) -> str:
    """The release's edited-video name: the source's name without `.mp4`, `_`, then the instruction with
    spaces as `_`, `.` and `,` removed and `:` as a space, cut at 80 characters (eval_step1, __main__)."""
    words = instruction.replace(" ", "_").replace(".", "").replace(",", "").replace(":", " ")
    return f"{source.replace('.mp4', '')}_{words[:80]}.mp4"


def json_objects(text: str) -> list[Any]:
    """Every JSON value that starts at a `{` in the text (nested ones included), in order."""
    decoder, out = json.JSONDecoder(), []
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                out.append(decoder.raw_decode(text, i)[0])
            except json.JSONDecodeError:
                continue
    return out


def parse_reply(text: str, scale: tuple[float, float]) -> dict[str, float]:
    """The nine scores from the release's nested groups (`{"edit_accuracy": {"scores": [..]}, ...}`) or our
    flat object (`{"SA": n, ...}`). Raises ValueError when no object has all nine inside the scale."""
    keys = [k for group in RECO_GROUPS.values() for k in group]

    def extract(obj: dict) -> dict[str, float]:
        if all(g in obj for g in RELEASE_GROUPS):
            return {k: float(v) for g, ours in RELEASE_GROUPS.items()
                    for k, v in zip(RECO_GROUPS[ours], obj[g]["scores"], strict=True)}
        return {k: float(obj[k]) for k in keys}

    return first_in_scale(json_objects(text), extract, scale,
                          "no object with the nine scores (nested groups or flat) inside the scale")


@register
class RecoBench(Adapter):
    name = "reco"
    scale = (0.0, 10.0)
    criteria = [Criterion(k, RECO_DESCRIPTIONS[k]) for group in RECO_GROUPS.values() for k in group]
    categories = list(TASKS)
    max_side = 100_000  # the side-by-side images are sized by the release's rule, not shrunk again
    failed_as = "zero"  # release: a judge failure's groups are gmean([]) = 0 and still counted
    prompt_version = "v2"  # v2: the release's side-by-side frames, images first, nested replies, identical = 0
    column_titles = {"score": "S"}
    paper_rows = [
        {"method": "SAMA (paper)", "add": 8.92, "replace": 9.10, "remove": 8.09, "style": 9.25},
        {"method": "ReCo (paper)", "add": 8.23, "replace": 8.74, "remove": 7.00, "style": 9.17},
    ]

    # ---- samples and edits -------------------------------------------------------------------------------
    def samples(self, data: Path) -> list[BenchSample]:
        sources = Path(self.source_dir) if self.source_dir else Path("ori_videos")
        sources = sources if sources.is_absolute() else data / sources
        files = [data / "configs" / f"{t}.txt" for t in TASKS if (data / "configs" / f"{t}.txt").is_file()]
        if not files:
            raise InputError(f"no configs/{{{','.join(TASKS)}}}.txt (ReCo-Bench's layout)", path=data)
        return [self._sample(path, line, sources) for path in files for line in _config_lines(path)]

    def _sample(self, path: Path, line: Line, sources: Path) -> BenchSample:
        task = path.stem
        s = BenchSample(f"{task}-{line.number:03d}", task, line.row.get("instruction", ""),
                        sources / line.row.get("source", ""), error=line.error)
        if line.error is None:
            s.extra = {"name": release_name(line.row["source"], s.instruction), "line": line.number}
            if line.row.get("image"):
                s.extra["reference"] = line.row["image"]  # the release parses it but does not show it to the judge
        return s

    def edit_path(self, folder: Path, s: BenchSample) -> Path:
        """The release's `all_results/<task>/<name>` (the folder given may be all_results or the one above
        it, or a task's own folder), else `<id>.mp4`."""
        name = s.extra.get("name", "")
        candidates = [folder / s.category / name, folder / "all_results" / s.category / name, folder / name,
                      folder / f"{s.id}.mp4"]
        return next((c for c in candidates if name and c.is_file()), candidates[0] if name else candidates[-1])

    # ---- judging -----------------------------------------------------------------------------------------
    def request(self, s: BenchSample) -> Request:
        # release: images then text in one user message, no system message, no temperature set
        return Request(parse=lambda text: parse_reply(text, self.scale), temperature=None, images_first=True,
                       schema=False)

    def judge_images(self, source_frames, edit_frames, s: BenchSample) -> list:
        """Every 8th pair of frames side by side (source left), 224 px high, enlarged so the short side is 512."""
        import numpy as np
        from PIL import Image

        def height(frame, h: int) -> Image.Image:
            img = Image.fromarray(np.asarray(frame))
            return img.resize((max(1, round(img.width * h / img.height)), h), Image.BICUBIC)

        images = []
        for t in range(0, min(len(source_frames), len(edit_frames)), STRIDE):
            left, right = height(source_frames[t], PAIR_HEIGHT), height(edit_frames[t], PAIR_HEIGHT)
            pair = Image.new("RGB", (left.width + right.width, PAIR_HEIGHT))
            pair.paste(left, (0, 0))
            pair.paste(right, (left.width, 0))
            scale = max(SHORT_SIDE / min(pair.size), 1.0)
            images.append(np.asarray(pair.resize((int(pair.width * scale), int(pair.height * scale)), Image.LANCZOS)))
        return images

    def rule_scores(self, source_frames, edit_frames, s: BenchSample) -> dict[str, float] | None:
        """An edit identical to its source (decoded frames equal) failed: 0 on all nine, no judge asked."""
        import numpy as np

        src, edit = np.asarray(source_frames), np.asarray(edit_frames)
        if src.shape == edit.shape and np.array_equal(src, edit):
            return {c.key: 0.0 for c in self.criteria}
        return None

    def our_prompt(self, s: BenchSample) -> str:
        lines = [
            "You judge an instruction-based video edit. Each image above shows one moment of the video: the "
            "ORIGINAL on the left, the EDITED version on the right.",
            f"Editing instruction: \"{s.instruction}\"",
            "Score each criterion from 1 (worst) to 10 (best). If the edited video is identical to the original "
            "(the edit did nothing), score every criterion 0.",
            *(f"- {c.key}: {c.description}" for c in self.criteria),
        ]
        keys = ", ".join(f'"{c.key}": <number>' for c in self.criteria)
        lines.append(f'Reply with JSON only: {{{keys}, "reason": "<one sentence>"}}')
        return "\n".join(lines)

    # ---- aggregation -------------------------------------------------------------------------------------
    def groups(self, scores: dict[str, float]) -> dict[str, float]:
        return {g: geometric_mean([scores[k] for k in keys]) for g, keys in RECO_GROUPS.items()}

    def sample_score(self, scores: dict[str, float], category: str = "") -> float:
        g = self.groups(scores)
        return sum(g.values()) / len(g)  # S

    def columns(self) -> list[str]:
        return [*(c.key for c in self.criteria), *RECO_GROUPS, "score"]

    def row_values(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        """SA..ES: arithmetic means over the scored samples; each group: the mean of the samples' geometric
        means (a judge failure counted as 0 is 0 here); S: the mean of the three group means."""
        scored = [r for r in rows if "scores" in r]
        out = {k: mean([r["scores"][k] for r in scored]) for k in (c.key for c in self.criteria)}
        out |= {g: mean([self.groups(r["scores"])[g] if "scores" in r else 0.0 for r in rows]) for g in RECO_GROUPS}
        out["score"] = mean([out[g] for g in RECO_GROUPS]) if rows else float("nan")
        return out

    def overall(self, cats: dict[str, float], rows: list[dict[str, Any]]) -> float:
        return self.row_values(rows)["score"]  # ours: the release reports per task only

    def summarize(self, rows: list[dict[str, Any]], failed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        failed = failed or []
        zeros = [{"category": f["category"], "score": 0.0} for f in failed
                 if self.failed_as == "zero" and f.get("kind") == "judge"]
        out = super().summarize(rows + zeros, failed)
        for cat, row in out["table"].items():  # n counts the samples the judge scored
            row["n"] = sum(1 for r in rows if cat in ("overall", r["category"]))
            row["as_zero"] = sum(1 for r in zeros if cat in ("overall", r["category"]))
        out["samples"] = len(rows)
        out["failed_as"] = self.failed_as
        return out


def _config_lines(path: Path) -> list[Line]:
    """`<source>.mp4: <instruction>[ | <image>]` a line; blank and `#` lines skipped (as the release does);
    a line without `: ` is that sample's failure naming file:line."""
    out = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        source, sep, rest = text.partition(": ")
        instruction, _, image = rest.partition("|")
        if not sep or not source.strip() or not instruction.strip():
            out.append(Line(i, {}, f"{path}:{i}: expected '<source>.mp4: <instruction>', got {text[:60]!r}"))
            continue
        out.append(Line(i, {"source": source.strip(), "instruction": instruction.strip(), "image": image.strip()}))
    return out
