"""Benchmark adapters: where each benchmark's samples come from, what is judged, and how scores
aggregate into the numbers its paper table reports. See docs/bench.md for folder layouts.

- vie (VIE-Bench, from InstructX; 140 videos): instruction following, preservation, quality, 1-10;
  a sample's score is the mean of its three criteria; a category's the mean over its samples.
- openve (OpenVE-Bench; 431 pairs in benchmark_videos.csv): 1-5 per criterion, per-type averages.
- reco (ReCo-Bench; 480 pairs): nine 0-10 sub-scores in three groups, accuracy (SA, SP, CP),
  naturalness (AN, SN, MN), quality (VF, TS, ES); per sample the geometric mean of each group, and
  S = the mean of the three group scores; a category's S is the mean over its samples.
- toy: the toy world's exact oracle (no judge).
- fixtures: the seven real clips of shared/fixtures/real, judged with VIE-Bench's criteria.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sama_cli.errors import InputError

PROMPT_VERSION = "v1"


@dataclass
class BenchSample:
    id: str
    category: str
    instruction: str
    source: Path
    edit: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Criterion:
    key: str
    description: str


class Adapter:
    name = ""
    scale = (1.0, 10.0)
    criteria: list[Criterion] = []
    categories: list[str] = []
    frames = 8  # frames sampled per video for the judge
    max_side = 512  # judge images are resized so that the longer side is at most this
    needs_judge = True
    paper_rows: list[dict[str, Any]] = []  # published rows for the report (SPEC §7)
    paper_source = "SAMA paper (arXiv 2603.19228), tables quoted in SPEC §7"

    def samples(self, data: Path) -> list[BenchSample]:
        raise NotImplementedError

    def prompt(self, s: BenchSample) -> str:
        lines = [
            "You are an expert judge of instruction-based video editing.",
            "The first images are frames of the ORIGINAL video, the next images the same frames of the EDITED video.",
            f"Editing instruction: \"{s.instruction}\"",
            f"Rate the edit on each criterion from {self.scale[0]:g} (worst) to {self.scale[1]:g} (best):",
        ]
        lines += [f"- {c.key}: {c.description}" for c in self.criteria]
        keys = ", ".join(f'"{c.key}": <number>' for c in self.criteria)
        lines.append(f'Reply with JSON only: {{{keys}, "reason": "<one sentence>"}}')
        return "\n".join(lines)

    def sample_score(self, scores: dict[str, float]) -> float:
        return sum(scores[c.key] for c in self.criteria) / len(self.criteria)

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """rows: per-sample {category, score, scores{...}} (failures excluded) -> per-category means."""
        by_cat: dict[str, list[float]] = {}
        for r in rows:
            by_cat.setdefault(r["category"], []).append(r["score"])
        cats = {c: sum(v) / len(v) for c, v in by_cat.items()}
        ordered = {c: cats[c] for c in self.categories if c in cats} | {c: v for c, v in cats.items()
                                                                         if c not in self.categories}
        overall = sum(ordered.values()) / len(ordered) if ordered else float("nan")
        return {"categories": ordered, "overall": overall, "samples": len(rows)}


# ---- helpers --------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _read_table(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError("benchmark file not found", path=path)
    try:
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                return [{_norm(k): v for k, v in row.items() if k} for row in csv.DictReader(f)]
        if path.suffix == ".jsonl":
            return [{_norm(k): v for k, v in json.loads(line).items()} for line in path.read_text().splitlines()
                    if line.strip()]
        data = json.loads(path.read_text())
        return [{_norm(k): v for k, v in row.items()} for row in (data if isinstance(data, list) else data["samples"])]
    except (json.JSONDecodeError, KeyError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"malformed benchmark file ({e})", path=path) from None


def _field(row: dict[str, Any], names: tuple[str, ...], path: Path, line: int) -> str:
    for n in names:
        if row.get(_norm(n)) not in (None, ""):
            return str(row[_norm(n)])
    raise InputError(f"{path}:{line}: missing column {names[0]!r}")


def _first_existing(folder: Path, *names: str) -> Path:
    for n in names:
        if (folder / n).is_file():
            return folder / n
    raise InputError(f"none of {', '.join(names)} found", path=folder)


# ---- the benchmarks -------------------------------------------------------------------------------
VIE_CRITERIA = [
    Criterion("instruction_following", "does the edited video do exactly what the instruction asks?"),
    Criterion("preservation", "is everything the instruction does not mention unchanged (identity, layout, motion)?"),
    Criterion("quality", "is the edited video natural, sharp and temporally stable, without artifacts?"),
]


class VieBench(Adapter):
    name = "vie"
    criteria = VIE_CRITERIA
    categories = ["add", "swap", "remove", "style"]
    paper_rows = [
        {"method": "SAMA (paper)", "add": 8.711, "swap": 9.340, "remove": 9.144, "style": 9.259},
        {"method": "Kling-Omni (paper)", "add": 9.181, "swap": 9.194, "remove": 9.133, "style": 9.341},
    ]
    _cat = {"add": "add", "addition": "add", "swap": "swap", "change": "swap", "swapchange": "swap",
            "replace": "swap", "remove": "remove", "removal": "remove", "style": "style", "styletone": "style",
            "tone": "style"}

    def samples(self, data: Path) -> list[BenchSample]:
        path = _first_existing(data, "vie_bench.jsonl", "annotations.jsonl", "vie_bench.json", "vie_bench.csv")
        out = []
        for i, row in enumerate(_read_table(path), start=1):
            cat = _norm(_field(row, ("category", "type", "edit_type"), path, i))
            src = data / _field(row, ("source", "video", "original_video", "src"), path, i)
            out.append(BenchSample(_field(row, ("id", "name"), path, i), self._cat.get(cat, cat),
                                   _field(row, ("instruction", "prompt"), path, i), src))
        return out


class OpenVeBench(Adapter):
    name = "openve"
    scale = (1.0, 5.0)
    criteria = [
        Criterion("instruction_compliance", "how completely and precisely the requested edit is carried out"),
        Criterion("consistency", "how well unedited content, identity and motion are kept"),
        Criterion("visual_quality", "how natural and artifact-free the edited video looks over time"),
    ]
    categories = ["global_style", "background_change", "local_change", "local_remove", "local_add", "subtitle",
                  "creative"]
    paper_rows = [{"method": "SAMA (paper)", "global_style": 4.05, "background_change": 2.59, "local_change": 3.93,
                   "local_remove": 3.32, "local_add": 2.54, "subtitle": 3.63, "creative": 3.11}]

    def samples(self, data: Path) -> list[BenchSample]:
        path = data / "benchmark_videos.csv"
        out = []
        for i, row in enumerate(_read_table(path), start=1):
            kind = _field(row, ("edited type", "edited_type", "type"), path, i).strip().lower().replace(" ", "_")
            src = _field(row, ("original video", "original_video", "video"), path, i)
            sid = row.get("id") or Path(src).stem or str(i)
            out.append(BenchSample(str(sid), kind, _field(row, ("prompt", "instruction"), path, i), data / src))
        return out


RECO_GROUPS = {"accuracy": ("SA", "SP", "CP"), "naturalness": ("AN", "SN", "MN"), "quality": ("VF", "TS", "ES")}
RECO_DESCRIPTIONS = {
    "SA": "semantic accuracy: the edited content is what the instruction asks for",
    "SP": "scope precision: only the intended region changes",
    "CP": "content preservation: the rest of the video is unchanged",
    "AN": "appearance naturalness of the edited content",
    "SN": "scale naturalness: size and proportions fit the scene",
    "MN": "motion naturalness of the edited content",
    "VF": "visual fidelity: sharp, artifact-free frames",
    "TS": "temporal stability: no flicker or jitter",
    "ES": "edit stability: the edit stays consistent across frames",
}


def geometric_mean(values: list[float]) -> float:
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


class RecoBench(Adapter):
    name = "reco"
    scale = (0.0, 10.0)
    criteria = [Criterion(k, RECO_DESCRIPTIONS[k]) for group in RECO_GROUPS.values() for k in group]
    categories = ["add", "replace", "remove", "style"]
    paper_rows = [
        {"method": "SAMA (paper)", "add": 8.92, "replace": 9.10, "remove": 8.09, "style": 9.25},
        {"method": "ReCo (paper)", "add": 8.23, "replace": 8.74, "remove": 7.00, "style": 9.17},
    ]

    def groups(self, scores: dict[str, float]) -> dict[str, float]:
        return {g: geometric_mean([scores[k] for k in keys]) for g, keys in RECO_GROUPS.items()}

    def sample_score(self, scores: dict[str, float]) -> float:
        g = self.groups(scores)
        return sum(g.values()) / len(g)  # S

    def samples(self, data: Path) -> list[BenchSample]:
        path = _first_existing(data, "reco_bench.jsonl", "reco_bench.json", "reco_bench.csv")
        out = []
        for i, row in enumerate(_read_table(path), start=1):
            cat = _field(row, ("category", "task", "type"), path, i).strip().lower()
            out.append(BenchSample(_field(row, ("id", "name"), path, i), cat,
                                   _field(row, ("instruction", "prompt"), path, i),
                                   data / _field(row, ("source", "video", "src"), path, i)))
        return out


class FixturesBench(VieBench):
    name = "fixtures"

    def samples(self, data: Path) -> list[BenchSample]:
        path = data / "manifest.jsonl"
        out = []
        for i, row in enumerate(_read_table(path), start=1):
            out.append(BenchSample(_field(row, ("id",), path, i), _field(row, ("category",), path, i),
                                   _field(row, ("instruction",), path, i),
                                   data / _field(row, ("source",), path, i),
                                   extra={"reference_output": str(data / row["referenceoutput"])}
                                   if row.get("referenceoutput") else {}))
        return out


TOY_METRICS = ("edit_accuracy", "preservation_psnr", "preservation_ssim", "trajectory_error", "psnr")


class ToyBench(Adapter):
    name = "toy"
    needs_judge = False
    categories = ["recolour", "replace", "remove", "add", "background", "style"]
    paper_rows = []

    def samples(self, data: Path) -> list[BenchSample]:
        from sama_cli.manifest import read_manifest

        path = data / "manifest.jsonl"
        if not path.is_file():
            raise InputError("no toy manifest (run `sama synth` to make the benchmark data)", path=path)
        out = []
        for row in read_manifest(path).rows:
            if row["kind"] != "video_edit":
                continue
            out.append(BenchSample(row["id"], row.get("edit", "edit"), row["instruction"], Path(row["source"]),
                                   extra={"scene": row["scene"], "target": row["target"],
                                          "split": row.get("split", "train")}))
        return out

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        def mean(rs: list[dict], key: str) -> float:
            return sum(r["scores"][key] for r in rs) / len(rs) if rs else float("nan")

        by_cat: dict[str, list[dict]] = {}
        for r in rows:
            by_cat.setdefault(r["category"], []).append(r)
        cats = {c: {k: mean(by_cat[c], k) for k in TOY_METRICS} for c in self.categories if c in by_cat}
        splits = {s: {k: mean([r for r in rows if r["split"] == s], k) for k in TOY_METRICS}
                  for s in sorted({r["split"] for r in rows})}
        return {"categories": cats, "splits": splits, "overall": {k: mean(rows, k) for k in TOY_METRICS},
                "samples": len(rows)}


ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (VieBench, OpenVeBench, RecoBench, ToyBench, FixturesBench)}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise InputError(f"unknown benchmark {name!r} (known: {', '.join(ADAPTERS)})")
    return ADAPTERS[name]()
