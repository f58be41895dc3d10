"""VIE-Bench (released with InstructX; dataset card huggingface.co/datasets/Simons212/VIE-Bench): 140 items
in nine categories, judged on instruction following, preservation and quality, 1-10; a sample's score is
the mean of the three, a category's the mean over its samples. The card's categories map onto the SAMA
paper's four columns (docs/bench.md); hybrid and reference-based items get rows of their own.

Also the `fixtures` benchmark: the seven real clips from the SAMA project page with the SAMA-14B outputs,
shipped in sama_cli/assets/fixtures/real, judged with VIE-Bench's criteria.
"""

from __future__ import annotations

import os
from pathlib import Path

from sama_cli.core.errors import InputError
from sama_cli.core.paths import FIXTURES
from sama_cli.eval.adapters import (
    Adapter,
    BenchSample,
    Criterion,
    broken,
    column,
    first_existing,
    norm,
    read_lines,
    register,
    unique_ids,
)

VIE_CRITERIA = [
    Criterion("instruction_following", "does the edited video do exactly what the instruction asks?"),
    Criterion("preservation", "is everything the instruction does not mention unchanged (identity, layout, motion)?"),
    Criterion("quality", "is the edited video natural, sharp and temporally stable, without artifacts?"),
]
# The dataset card's categories (and the paper's column names, and our older spellings) -> our rows.
# The paper's four columns: Add; Swap/Change = Object Swap + Color Change; Remove; Style/Tone = Style
# Change + Tone/Weather Change. Hybrid and the reference-based items are rows of their own.
VIE_CATEGORIES = {
    "objectswap": "swap", "colorchange": "swap", "add": "add", "remove": "remove", "stylechange": "style",
    "toneweatherchange": "style", "hybrid": "hybrid", "referencebasedswap": "ref_swap",
    "referencebasedadd": "ref_add",
    # the paper's column names and our own older spellings
    "swapchange": "swap", "swap": "swap", "change": "swap", "replace": "swap", "addition": "add",
    "removal": "remove", "styletone": "style", "style": "style", "tone": "style", "refswap": "ref_swap",
    "refadd": "ref_add",
}
REFERENCE_COLUMNS = ("reference", "reference_image", "ref_image", "image")


@register
class VieBench(Adapter):
    name = "vie"  # frames: 8 at 512 px, our choice (the VIE-Bench release ships no judge script)
    criteria = VIE_CRITERIA
    categories = ["add", "swap", "remove", "style"]
    extra_rows = ["hybrid", "ref_swap", "ref_add"]
    prompt_version = "v2"  # v2: reference-based items send their reference image; the user's wording
    paper_rows = [
        {"method": "SAMA (paper)", "add": 8.711, "swap": 9.340, "remove": 9.144, "style": 9.259},
        {"method": "Kling-Omni (paper)", "add": 9.181, "swap": 9.194, "remove": 9.133, "style": 9.341},
    ]

    def category_of(self, name: str) -> str:
        return VIE_CATEGORIES.get(norm(name), name)

    def samples(self, data: Path) -> list[BenchSample]:
        """Our documented columns (the release's own file layout is not published): id, category,
        instruction, source, and for reference-based items a reference image."""
        path = first_existing(data, "vie_bench.jsonl", "annotations.jsonl", "vie_bench.json", "vie_bench.csv")
        out, lines = [], []
        for line in read_lines(path):
            lines.append(line.number)
            out.append(broken(path, line) if line.error else self._sample(data, path, line.row, line.number))
        unique_ids(out, lines, path)
        return out

    def _sample(self, data: Path, path: Path, row: dict, i: int) -> BenchSample:
        try:
            sid = column(row, ("id", "name"), path, i)
            given = column(row, ("category", "type", "edit_type"), path, i)
            instruction = column(row, ("instruction", "prompt"), path, i)
            source = data / column(row, ("source", "video", "original_video", "src"), path, i)
        except InputError as e:
            return BenchSample(str(row.get("id") or f"{path.name}:{i}"), "unreadable", "", path, error=e.message)
        cat = VIE_CATEGORIES.get(norm(given))
        ref = next((row[norm(c)] for c in REFERENCE_COLUMNS if row.get(norm(c))), None)
        s = BenchSample(sid, cat or "unreadable", instruction, source, reference=data / ref if ref else None)
        if cat is None:
            s.error = (f"{path}:{i}: unknown VIE-Bench category {given!r} (known: Object Swap, Color Change, Add, "
                       "Remove, Style Change, Tone/Weather Change, Hybrid, Reference-Based Swap, Reference-Based Add)")
        elif cat.startswith("ref_") and s.reference is None:
            s.error = f"{path}:{i}: a reference-based item needs a reference image column ({', '.join(REFERENCE_COLUMNS)})"
        return s

    def our_prompt(self, s: BenchSample) -> str:
        text = super().our_prompt(s)
        if s.reference is None:
            return text
        return text.replace("the same frames of the EDITED video.", "the same frames of the EDITED video; the last "
                            "image is the REFERENCE the instruction points to.")


def fixtures_dir() -> Path:
    """The real clips the `fixtures` benchmark reads by default: `$SAMA_SHARED_DIR/fixtures/real` when that
    variable is set (a folder with more clips), else the copy shipped inside the package."""
    env = os.environ.get("SAMA_SHARED_DIR")
    return Path(env) / "fixtures" / "real" if env else FIXTURES


@register
class FixturesBench(VieBench):
    name = "fixtures"
    extra_rows: list[str] = []

    def samples(self, data: Path) -> list[BenchSample]:
        path = data / "manifest.jsonl"
        out = []
        for line in read_lines(path):
            if line.error:
                out.append(broken(path, line))
                continue
            row, i = line.row, line.number
            out.append(BenchSample(column(row, ("id",), path, i), self.category_of(column(row, ("category",), path, i)),
                                   column(row, ("instruction",), path, i), data / column(row, ("source",), path, i),
                                   extra={"reference_output": str(data / row["referenceoutput"])}
                                   if row.get("referenceoutput") else {}))
        return out
