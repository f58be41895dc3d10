"""Benchmark adapters: the shared machinery (samples, the Adapter base, readers that turn a broken line
into that sample's failure, user wordings, the registry). Each published benchmark lives in a module of
its own and registers itself: eval/vie.py (VIE-Bench, and the shipped `fixtures`), eval/openve.py
(OpenVE-Bench), eval/reco.py (ReCo-Bench); the toy world's in sama_cli/toy/adapter.py. docs/bench.md says,
for every protocol point, whether it is the release's or ours.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError

PROMPT_VERSION = "v1"  # the default; an adapter whose prompts or frames change bumps its own
BUILTIN = ("sama_cli.eval.vie", "sama_cli.eval.openve", "sama_cli.eval.reco")


@dataclass
class BenchSample:
    id: str
    category: str
    instruction: str
    source: Path
    edit: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None  # a reference image the judge sees (VIE-Bench's reference-based items)
    error: str | None = None  # a broken line: the sample fails with this one-line error, the run goes on


@dataclass
class Criterion:
    key: str
    description: str
    label: str = ""  # the release's display name, when its judge replies `Label: n` lines


@dataclass
class Request:
    """How one judge request is shaped, beyond the prompt and images (the release's settings, or ours)."""
    parse: Callable[[str], dict[str, float]] | None = None  # reply text -> scores; raises ValueError
    system: str | None = None  # a system message, or none
    temperature: float | None = 0.0  # None: leave it to the endpoint's default
    images_first: bool = False  # images before the text (ReCo's scripts) or after it (ours, OpenVE's)
    schema: bool = True  # ask an OpenAI endpoint for a strict JSON schema


@dataclass
class Wording:
    """A judge wording from `--prompt-file`: its text and the name the report records."""
    text: str
    label: str

    @classmethod
    def read(cls, path: Path) -> Wording:
        if not path.is_file():
            raise InputError("prompt file not found", path=path)
        text = path.read_text()
        return cls(text, f"{path.name} (sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]})")

    def fill(self, instruction: str) -> str:
        """The wording with the instruction in its placeholder (`<edit_prompt>`, as OpenVE-Bench's scripts
        write it, or `{instruction}`), or appended on a last line when it has none (as ReCo's scripts do)."""
        if "<edit_prompt>" in self.text or "{instruction}" in self.text:
            return self.text.replace("<edit_prompt>", instruction).replace("{instruction}", instruction)
        return f"{self.text.rstrip()}\ninstruction: {instruction}"


class Adapter:
    name = ""
    scale = (1.0, 10.0)
    criteria: list[Criterion] = []
    categories: list[str] = []  # the paper table's columns, in its order
    extra_rows: list[str] = []  # categories scored and reported in rows of their own, outside the paper's columns
    # Frames sampled per video for the judge and the longest side of each: 8 and 512 are our choice
    # wherever a benchmark publishes none (docs/bench.md says which do).
    frames = 8
    max_side = 512
    prompt_version = PROMPT_VERSION  # part of the judge cache key: bump it when prompts or frames change
    needs_judge = True
    failed_as = "excluded"  # a judge failure is left out of the means; ReCo's release counts it as 0
    # An adapter scored by an exact oracle instead of a judge (needs_judge False) names its metrics here:
    # the report shows one column each, and `headline` is the one that stands for a sample's score.
    metric_columns: tuple[str, ...] = ()
    headline = ""
    metric_note = ""  # what the metric columns mean, printed under the table
    paper_rows: list[dict[str, Any]] = []  # published rows for the report (docs/sama.md §7)
    paper_source = "SAMA paper (arXiv 2603.19228), results tables"
    column_titles: dict[str, str] = {}  # a report column's title where it is not its key

    def __init__(self) -> None:
        self.wordings: dict[str, Wording] = {}  # category (or "*", every category) -> the user's wording
        self.source_dir: str | None = None

    # ---- configuration from the command line ----------------------------------------------------------
    def set_wordings(self, specs: list[str]) -> None:
        """`--prompt-file FILE` (every category) or `--prompt-file CATEGORY=FILE` (one category)."""
        known = [*self.categories, *self.extra_rows]
        for spec in specs:
            cat, _, file = spec.rpartition("=") if "=" in spec else ("*", "", spec)
            cat = self.category_of(cat) if cat != "*" else cat
            if cat not in ("*", *known):
                raise InputError(f"--prompt-file {spec}: unknown category for {self.name} (known: {', '.join(known)})")
            self.wordings[cat] = Wording.read(Path(file))

    def category_of(self, name: str) -> str:
        """A category as the user or the benchmark's file spells it -> ours (unknown names pass through)."""
        return name

    def wording(self, category: str) -> Wording | None:
        return self.wordings.get(category) or self.wordings.get("*")

    def wording_label(self, category: str) -> str:
        w = self.wording(category)
        return w.label if w else f"ours ({self.name} {self.prompt_version})"

    # ---- samples, edits, judging ---------------------------------------------------------------------------
    def samples(self, data: Path) -> list[BenchSample]:
        raise NotImplementedError

    def edit_table(self, path: Path) -> dict[str, Path]:
        """Edited videos listed in a file: our manifest (`id`, `output`; paths relative to its folder)."""
        return read_edits_manifest(path)

    def edit_path(self, folder: Path, s: BenchSample) -> Path:
        """Where a folder of edits holds this sample's video: `<id>.mp4` unless the benchmark names them."""
        return folder / f"{s.id}.mp4"

    def edit_key(self, s: BenchSample) -> str:
        """The key `edit_table` files this sample's edit under."""
        return s.id

    def oracle_scores(self, edit_frames, s: BenchSample) -> dict[str, float]:
        """An oracle adapter's scores of one edit ((T, H, W, 3) uint8 frames)."""
        raise NotImplementedError(f"benchmark {self.name!r} has no oracle")

    def criteria_for(self, category: str) -> list[Criterion]:
        """The criteria a sample of this category is judged on (the same for every category unless the
        benchmark has per-type rubrics)."""
        return self.criteria

    def request(self, s: BenchSample) -> Request:
        """Our default: flat JSON of the criteria, temperature 0, text before images, schema asked."""
        from sama_cli.eval.judges import parse_scores

        keys = [c.key for c in self.criteria_for(s.category)]
        return Request(parse=lambda text: parse_scores(text, keys, self.scale), schema=self.wording(s.category) is None)

    def judge_images(self, source_frames, edit_frames, s: BenchSample) -> list:
        """What the judge sees: `frames` evenly spaced frames of the source, then the same of the edit."""
        from sama_cli.eval.runner import pick_frames

        images = [*pick_frames(source_frames, self.frames), *pick_frames(edit_frames, self.frames)]
        return [*images, read_image(s.reference)] if s.reference is not None else images

    def rule_scores(self, source_frames, edit_frames, s: BenchSample) -> dict[str, float] | None:
        """Scores fixed by the benchmark's rules without asking the judge (None: ask it)."""
        return None

    def prompt(self, s: BenchSample) -> str:
        w = self.wording(s.category)
        return w.fill(s.instruction) if w else self.our_prompt(s)

    def our_prompt(self, s: BenchSample) -> str:
        criteria = self.criteria_for(s.category)
        lines = [
            "You are an expert judge of instruction-based video editing.",
            "The first images are frames of the ORIGINAL video, the next images the same frames of the EDITED video.",
            f"Editing instruction: \"{s.instruction}\"",
            f"Rate the edit on each criterion from {self.scale[0]:g} (worst) to {self.scale[1]:g} (best):",
        ]
        lines += [f"- {c.key}: {c.description}" for c in criteria]
        keys = ", ".join(f'"{c.key}": <number>' for c in criteria)
        lines.append(f'Reply with JSON only: {{{keys}, "reason": "<one sentence>"}}')
        return "\n".join(lines)

    # ---- aggregation ---------------------------------------------------------------------------------------
    def sample_score(self, scores: dict[str, float], category: str = "") -> float:
        """A sample's score from the scores of its category's criteria: their mean."""
        criteria = self.criteria_for(category)
        return sum(scores[c.key] for c in criteria) / len(criteria)

    def columns(self) -> list[str]:
        """The report table's columns: each criterion's mean when every category shares them, then the score."""
        return [*(c.key for c in self.criteria), "score"]

    def row_values(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        """One report row from a category's scored samples: each column's mean."""
        return {col: mean([r["score"] if col == "score" else r["scores"][col] for r in rows
                           if col == "score" or col in r.get("scores", {})]) for col in self.columns()}

    def overall(self, cats: dict[str, float], rows: list[dict[str, Any]]) -> float:
        """The overall number: the mean of the paper columns' category scores (ours where a release has none)."""
        paper = [v for c, v in cats.items() if c in self.categories]
        return mean(paper)

    def overall_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The samples the overall row stands for: those of the paper's columns."""
        return [r for r in rows if r["category"] in self.categories]

    def summarize(self, rows: list[dict[str, Any]], failed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """rows: the scored samples {category, score, scores{...}}; failed: the failed ones. Per category
        its score and a report row (column means, sample and failure counts), then an overall row."""
        failed = failed or []
        by_cat: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_cat.setdefault(r["category"], []).append(r)
        order = [c for c in (*self.categories, *self.extra_rows) if c in by_cat or any(f["category"] == c for f in failed)]
        order += [c for c in dict.fromkeys([*by_cat, *(f["category"] for f in failed)]) if c not in order]
        table = {}
        for c in order:
            table[c] = {**self.row_values(by_cat.get(c, [])), "n": len(by_cat.get(c, [])),
                        "failed": sum(1 for f in failed if f["category"] == c)}
        cats = {c: table[c]["score"] for c in order if by_cat.get(c)}
        counted = self.overall_rows(rows)
        table["overall"] = {**self.row_values(counted), "score": self.overall(cats, rows), "n": len(counted),
                            "failed": len(failed)}
        return {"categories": cats, "overall": table["overall"]["score"], "samples": len(rows), "table": table}


# ---- helpers --------------------------------------------------------------------------------------
def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@dataclass
class Line:
    """One record of a benchmark file: its own line number, its fields (names normalised), or why it is broken."""
    number: int
    row: dict[str, Any]
    error: str | None = None


def read_lines(path: Path) -> list[Line]:
    """The records of a .csv, .jsonl or .json benchmark file. A broken record (bad JSON, a CSV row with the
    wrong column count) is a Line with an error naming `file:line`; a file that cannot be read at all is an
    InputError."""
    if not path.is_file():
        raise InputError("benchmark file not found", path=path)
    try:
        if path.suffix == ".csv":
            return _csv_lines(path)
        if path.suffix == ".jsonl":
            return [_json_line(path, i, text) for i, text in enumerate(path.read_text().splitlines(), start=1)
                    if text.strip()]
        data = json.loads(path.read_text())
        return [Line(i, {norm(k): v for k, v in row.items()})
                for i, row in enumerate(data if isinstance(data, list) else data["samples"], start=1)]
    except (json.JSONDecodeError, KeyError, AttributeError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"malformed benchmark file ({e})", path=path) from None


def _json_line(path: Path, i: int, text: str) -> Line:
    try:
        row = json.loads(text)
        if not isinstance(row, dict):
            raise ValueError("not an object")
    except ValueError as e:
        return Line(i, {}, f"{path}:{i}: not a JSON object ({e})")
    return Line(i, {norm(k): v for k, v in row.items()})


def _csv_lines(path: Path) -> list[Line]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [norm(h) for h in next(reader, [])]
        out = []
        for cells in reader:
            line = reader.line_num  # the file's own line number (a quoted field may span lines)
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                out.append(Line(line, {}, f"{path}:{line}: {len(cells)} columns, the header has {len(header)}"))
            else:
                out.append(Line(line, dict(zip(header, cells, strict=True))))
        return out


def column(row: dict[str, Any], names: tuple[str, ...], path: Path, line: int) -> str:
    for n in names:
        if row.get(norm(n)) not in (None, ""):
            return str(row[norm(n)])
    raise InputError(f"{path}:{line}: missing column {names[0]!r}")


def first_existing(folder: Path, *names: str) -> Path:
    for n in names:
        if (folder / n).is_file():
            return folder / n
    raise InputError(f"none of {', '.join(names)} found", path=folder)


def unique_ids(samples: list[BenchSample], lines: list[int], path: Path) -> None:
    """A repeated sample id is an error naming both lines."""
    seen: dict[str, int] = {}
    for s, line in zip(samples, lines, strict=True):
        if s.error is None and s.id in seen:
            raise InputError(f"{path}:{line}: sample id {s.id!r} repeats line {seen[s.id]}")
        seen.setdefault(s.id, line)


def broken(path: Path, line: Line, category: str = "unreadable") -> BenchSample:
    """The sample standing for a broken line: it fails with the line's error, the rest of the run goes on."""
    return BenchSample(f"{path.name}:{line.number}", category, "", path, error=line.error)


def read_image(path: Path):
    """A reference image as (H, W, 3) uint8."""
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise InputError("reference image not found", path=path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_edits_manifest(path: Path) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for i, text in enumerate(path.read_text().splitlines(), start=1):
        if text.strip():
            try:
                row = json.loads(text)
                out = Path(row["output"])
                outputs[str(row["id"])] = out if out.is_absolute() else path.parent / out
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{path}:{i}: an edits manifest row needs 'id' and 'output'") from None
    return outputs


# ---- the registry -----------------------------------------------------------------------------------
ADAPTERS: dict[str, type[Adapter]] = {}


def register(adapter: type[Adapter]) -> type[Adapter]:
    """Add a benchmark (each published benchmark's module registers itself; so does the toy world's)."""
    ADAPTERS[adapter.name] = adapter
    return adapter


def _load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)


def get_adapter(name: str) -> Adapter:
    _load_builtin()
    if name not in ADAPTERS:
        raise InputError(f"unknown benchmark {name!r} (known: {', '.join(ADAPTERS)})")
    return ADAPTERS[name]()
