"""DiffSynth metadata files, read as they are: the `.csv`, `.json` and `.jsonl` files the release trains
from and public editing sets publish, turned into manifest rows (sama_cli/io/manifest.py) without a
converter.

What the release does (diffsynth/trainers/unified_dataset.py, `UnifiedDataset.load_metadata` and
`__getitem__`): a name ending in `.json` is one JSON list of rows (`json.load`), `.jsonl` one JSON object a
line, anything else a CSV (`pandas.read_csv`); every column stays on the row; the file columns are joined
to `--dataset_base_path` (`os.path.join`, so an absolute path stays as it is); `video` is the target,
`source_video` the source, `prompt` the text. Ditto-1M's `csvs_for_DiffSynth/*.csv` are read by DiffSynth's
VACE trainer, whose source column is `vace_video` (Ditto's train script: `--data_file_keys
"video,vace_video"`, `--dataset_base_path Ditto-1M/videos`), so `vace_video` names the source too.

The mapping onto our rows:
    video                         -> target (required: a row without one is that row's error)
    source_video (else vace_video)-> source; a row with a source is an edit pair (image_edit when source
                                     and target are both images, else video_edit), one without is t2v
    prompt                        -> instruction (edit rows; a leading "[Video edit]" is dropped, since
                                     `row_prompt` puts the prefix back) or caption (t2v rows)
    id                            -> id when the column is there and the cell is not empty, else
                                     "<file stem>-<row index, 6 digits>" (index 0 = the first data row,
                                     the release's `self.data[0]`): stable as long as the file is
    any other column              -> kept on the row as it is (CSV cells as strings, "" when empty)
Relative paths resolve against the base folder: `--base-path`, by default the metadata file's folder.
Columns named like our own fields (kind, source, target, ...) would be overwritten: they are an error.
Errors name the file and the line (CSV: the row number a spreadsheet shows, the header being row 1).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError
from sama_cli.io.video import IMAGE_EXTS

METADATA_EXTS = (".csv", ".json")  # read here; .jsonl is told apart from our manifests by its rows
TARGET_KEY = "video"
SOURCE_KEYS = ("source_video", "vace_video")  # release (SAMA), DiffSynth VACE (Ditto-1M)
TEXT_KEY = "prompt"
OURS = ("kind", "source", "target", "instruction", "caption", "artifacts", "output", "scene")
EDIT_PREFIX = "[Video edit]"  # the release's --prompt-prefix (infer_sh/inference.py), without its space


@dataclass
class Record:
    """One row of a manifest or metadata file before it becomes a row: where it is ("file:line"), its
    position among the file's rows (0-based, what the release indexes by) and its parsed value, or why it
    could not be parsed."""

    where: str
    index: int
    value: Any = None
    error: str | None = None


def is_metadata_row(value: Any) -> bool:
    """A parsed JSON row in DiffSynth's form rather than ours: no `kind`, and a video or source column."""
    return isinstance(value, dict) and "kind" not in value and any(k in value for k in (TARGET_KEY, *SOURCE_KEYS))


def read_records(path: Path) -> list[Record]:
    """The rows of a `.csv` or `.json` metadata file. A file that is empty, not valid, or a CSV without a
    `video` column is one error naming the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is what spreadsheets put in front
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the metadata file ({e})", path=path) from None
    if not text.strip():
        raise InputError("empty metadata file (no rows)", path=path)
    if path.suffix.lower() == ".json":
        return _json_records(path, text)
    return _csv_records(path, text)


def _json_records(path: Path, text: str) -> list[Record]:
    """A JSON list of rows, each with the line its element starts on."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); a .json metadata file "
                         "holds one list of rows (one row a line is .jsonl)", path=path) from None
    if not isinstance(data, list):
        raise InputError(f"a .json metadata file holds a list of rows, not a JSON {type(data).__name__}",
                         path=path)
    return [Record(f"{path}:{line}", i, value) for i, (value, line) in enumerate(zip(data, _element_lines(text),
                                                                                     strict=True))]


def _element_lines(text: str) -> Iterator[int]:
    """The line each element of a (valid) top-level JSON array starts on."""
    decoder, ws, i, line = json.JSONDecoder(), " \t\r\n", text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    while True:
        start = i
        while text[i] in ws or text[i] == ",":
            i += 1
        if text[i] == "]":
            return
        line += text.count("\n", start, i)
        yield line
        _, end = decoder.raw_decode(text, i)
        line += text.count("\n", i, end)
        i = end


def _csv_records(path: Path, text: str) -> list[Record]:
    """CSV rows as dicts of strings. Row numbers count records as a spreadsheet shows them (the header is
    row 1 when it is on the first line); a blank line is a row there but no data row (pandas skips it,
    so the index does too)."""
    numbered = ((n, cells) for n, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1) if cells)
    _, header = next(numbered)
    header = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(header)]  # pandas' name for no name
    if TARGET_KEY not in header:
        raise InputError(f"no '{TARGET_KEY}' column (the target video); the columns are: {', '.join(header)}",
                         path=path)
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise InputError(f"column {twice[0]!r} appears twice in the header", path=path)
    records: list[Record] = []
    for number, cells in numbered:
        where = f"{path}:{number}"
        if len(cells) > len(header):
            records.append(Record(where, len(records), error=f"{where}: {len(cells)} cells, but the header has "
                                                             f"{len(header)} columns"))
            continue
        cells = cells + [""] * (len(header) - len(cells))  # a short row: the missing cells are empty
        records.append(Record(where, len(records), dict(zip(header, cells, strict=True))))
    return records


def _text(value: Any) -> str | None:
    """A cell as a string, or None when it is missing or empty (pandas reads an empty cell as NaN)."""
    if value is None or value != value or (isinstance(value, str) and not value.strip()):  # NaN != NaN
        return None
    return str(value)


def _path_of(raw: dict[str, Any], key: str, where: str, base: Path, check_files: bool) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: '{key}' must be a path, not {value!r}")
    p = Path(os.path.expanduser(value))
    resolved = str(p if p.is_absolute() else (base / p).resolve())
    if check_files and not os.path.exists(resolved):
        raise InputError(f"{where}: {key} file does not exist: {resolved} (relative paths resolve against "
                         f"{base}; --base-path sets that folder)")
    return resolved


def row_id(raw: Any, index: int, stem: str) -> str:
    """The row's `id` cell, else `<stem>-<index>`: stable while the file does not change."""
    given = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(given, (str, int)) and not isinstance(given, bool) and str(given).strip():
        return str(given).strip()
    return f"{stem}-{index:06d}"


def to_row(record: Record, base: Path, stem: str, check_files: bool = True) -> dict[str, Any]:
    """Our row for one metadata record (see the module docstring); InputError naming file:line if it has
    no video, no prompt, a clashing column, or a file that does not exist."""
    where, raw = record.where, record.value
    if record.error:
        raise InputError(record.error)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a metadata row must be an object of column -> value")
    clash = next((k for k in OURS if k in raw), None)
    if clash:
        raise InputError(f"{where}: column '{clash}' is one of sama's own row fields; rename it")
    target = _path_of(raw, TARGET_KEY, where, base, check_files)
    if target is None:
        raise InputError(f"{where}: row has no '{TARGET_KEY}' (the target video)")
    source_key = next((k for k in SOURCE_KEYS if raw.get(k) not in (None, "")), None)
    source = _path_of(raw, source_key, where, base, check_files) if source_key else None
    text = _text(raw.get(TEXT_KEY))
    if text is None:
        raise InputError(f"{where}: row has no '{TEXT_KEY}'")
    mapped = {TARGET_KEY, TEXT_KEY, "id", *(k for k in SOURCE_KEYS if k == source_key or raw.get(k) in (None, ""))}
    extra = {k: v for k, v in raw.items() if k not in mapped}
    if extra.get("split") == "":
        del extra["split"]  # an empty cell: no split, i.e. train
    ident = row_id(raw, record.index, stem)
    if source is None:
        return {"id": ident, "kind": "t2v", "target": target, "caption": text, **extra}
    both_images = all(Path(p).suffix.lower() in IMAGE_EXTS for p in (source, target))
    instruction = text.strip()
    if instruction.startswith(EDIT_PREFIX):
        instruction = instruction[len(EDIT_PREFIX):].strip() or instruction
    return {"id": ident, "kind": "image_edit" if both_images else "video_edit", "source": source, "target": target,
            "instruction": instruction, **extra}
