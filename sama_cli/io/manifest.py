"""JSONL manifests: one sample a line, the glue between subcommands.

Row schema (see README, "Manifests"):
    id           str, unique within the manifest
    kind         "video_edit" | "image_edit" | "t2v"
    source       path of the source video/image (edit kinds; absent for t2v)
    target       path of the target video/image (t2v, and edit rows used for training)
    instruction  edit instruction (edit kinds)
    caption      caption (t2v)
    split        optional: "train" | "heldout"
    output       optional: an edited video (written by `sama edit --manifest`)
    scene        optional: the toy world's scene record (JSON)
    artifacts    optional dict name -> path, filled in by encode/anchor/perturb
                 (source_latents, target_latents, text, anchors, ...)
Any other key is carried through unchanged. Relative paths resolve against the manifest's folder (or a
given base folder); in memory every path is absolute, and `write_manifest` writes paths relative to the
output's folder. `-` reads standard input / writes standard output (paths then resolve against the
working directory).
`read_manifest` also reads the DiffSynth metadata files the release trains from (`.csv`, `.json`, and
`.jsonl` whose rows have `video` and no `kind`), mapping their columns onto these rows (io/metadata.py).
Under torchrun, `write_sharded_manifest` has each rank write its rows as a part that rank 0 merges
in input order.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sama_cli.core.distributed import Dist, barrier
from sama_cli.core.errors import InputError
from sama_cli.io import metadata
from sama_cli.io.artifacts import atomic_write_text
from sama_cli.io.metadata import Record
from sama_cli.io.video import IMAGE_EXTS, VIDEO_EXTS

ROW_KINDS = ("video_edit", "image_edit", "t2v")
PATH_KEYS = ("source", "target", "output", "scene")
JSONL_EXTS = (".jsonl", ".ndjson")
MANIFEST_EXTS = JSONL_EXTS + metadata.METADATA_EXTS


@dataclass
class Manifest:
    rows: list[dict[str, Any]]
    base: Path  # folder that relative paths resolved against
    path: str  # file path, or "-" for standard input
    failed: list[dict[str, str]] = field(default_factory=list)  # {"id", "error"}: bad rows, with keep_going

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


def _resolve(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _row_paths(row: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(container, key) of every path-valued field of a row."""
    places = [(row, k) for k in PATH_KEYS if isinstance(row.get(k), str)]
    arts = row.get("artifacts")
    if isinstance(arts, dict):
        places += [(arts, k) for k, v in arts.items() if isinstance(v, str)]
    return places


def validate_row(row: Any, where: str, check_files: bool = True) -> dict[str, Any]:
    """Check one parsed row; `where` is "file:line" for messages. Paths must already be absolute."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: a manifest row must be a JSON object")
    if not isinstance(row.get("id"), (str, int)) or row.get("id") == "":
        raise InputError(f"{where}: row has no 'id'")
    row["id"] = str(row["id"])
    kind = row.get("kind")
    if kind not in ROW_KINDS:
        raise InputError(f"{where}: unknown kind {kind!r} (expected one of {', '.join(ROW_KINDS)})")
    if kind == "t2v":
        if not row.get("target"):
            raise InputError(f"{where}: t2v row {row['id']!r} has no 'target' video")
        if not isinstance(row.get("caption"), str):
            raise InputError(f"{where}: t2v row {row['id']!r} has no 'caption'")
    else:
        if not row.get("source"):
            raise InputError(f"{where}: {kind} row {row['id']!r} has no 'source'")
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise InputError(f"{where}: {kind} row {row['id']!r} has no 'instruction'")
    if "artifacts" in row and not isinstance(row["artifacts"], dict):
        raise InputError(f"{where}: 'artifacts' must be an object of name -> path")
    if check_files:
        for container, key in _row_paths(row):
            if not os.path.exists(container[key]):
                raise InputError(f"{where}: {key} file does not exist: {container[key]}")
    return row


def _jsonl_records(lines: list[str], path: str) -> list[Record]:
    """One record a non-blank line, numbered as an editor shows it."""
    records: list[Record] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            records.append(Record(where, len(records), json.loads(line)))
        except json.JSONDecodeError as e:
            records.append(Record(where, len(records), error=f"{where}: not valid JSON ({e.msg})"))
    return records


def _read_records(path: str, base_path: str | Path | None) -> tuple[list[Record], Path]:
    """The file's records and the folder relative paths resolve against: `base_path` when given, else
    the file's folder (the working directory for standard input)."""
    if base_path is not None and not Path(base_path).is_dir():
        raise InputError("the base path is not a folder", path=base_path)
    base = Path(base_path).expanduser().resolve() if base_path is not None else None
    if path == "-":
        return _jsonl_records(sys.stdin.read().splitlines(), path), base or Path.cwd()
    p = Path(path)
    if not p.is_file():
        raise InputError("manifest file does not exist", path=p)
    if p.suffix.lower() not in MANIFEST_EXTS:
        raise InputError(f"not a manifest: expected {', '.join(MANIFEST_EXTS)} (sama JSONL, or DiffSynth "
                         "metadata)", path=p)
    base = base or p.resolve().parent
    if p.suffix.lower() in metadata.METADATA_EXTS:
        return metadata.read_records(p), base
    return _jsonl_records(p.read_text().splitlines(), path), base


def _our_row(record: Record, base: Path, check_files: bool) -> dict[str, Any]:
    """A record of a sama JSONL manifest: paths resolved against `base`, then validated."""
    if record.error:
        raise InputError(record.error)
    row = record.value
    if isinstance(row, dict):
        for container, key in _row_paths(row):
            container[key] = _resolve(container[key], base)
    return validate_row(row, record.where, check_files)


def _our_id(record: Record) -> str:
    """A bad row's id for the failure list: its own, else where it is."""
    given = record.value.get("id") if isinstance(record.value, dict) else None
    return str(given) if isinstance(given, (str, int)) and str(given) else record.where


def read_manifest(path: str | Path, check_files: bool = True, *, base_path: str | Path | None = None,
                  keep_going: bool = False) -> Manifest:
    """Read and validate a manifest (`-` for stdin): our JSONL, or a DiffSynth metadata file (.csv,
    .json, or .jsonl rows with `video`), whose columns io/metadata.py maps onto our rows. Relative paths
    resolve against `base_path`, by default the file's folder. Errors name the file and the line.

    A bad row raises (the default), or with `keep_going` is left out and recorded in `Manifest.failed`
    as {"id", "error"} (for batch commands, which report failed items and go on); a bad file always
    raises."""
    path = str(path)
    records, base = _read_records(path, base_path)
    first = next((r.value for r in records if r.error is None), None)
    diffsynth = Path(path).suffix.lower() in metadata.METADATA_EXTS or metadata.is_metadata_row(first)
    stem = Path(path).stem
    manifest = Manifest(rows=[], base=base, path=path)
    seen: set[str] = set()
    for record in records:
        try:
            row = (metadata.to_row(record, base, stem, check_files) if diffsynth
                   else _our_row(record, base, check_files))
            if row["id"] in seen:
                raise InputError(f"{record.where}: duplicate id {row['id']!r}")
        except InputError as e:
            if not keep_going:
                raise
            ident = metadata.row_id(record.value, record.index, stem) if diffsynth else _our_id(record)
            manifest.failed.append({"id": ident, "error": e.message})
            continue
        seen.add(row["id"])
        manifest.rows.append(row)
    return manifest


def _relativize(value: str, base: Path) -> str:
    """A path written relative to the manifest's folder when it lies below it, else absolute. A
    relative path in memory means relative to the working directory."""
    p = Path(value).expanduser().resolve()
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def dumps_rows(rows: Iterable[dict[str, Any]], base: Path | None) -> str:
    """JSONL text for rows; paths below `base` become relative to it (None keeps them absolute)."""
    out = []
    for row in rows:
        row = json.loads(json.dumps(row))  # deep copy, and proof that it serializes
        for container, key in _row_paths(row):
            p = str(Path(container[key]).expanduser().resolve())
            container[key] = _relativize(p, base) if base is not None else p
        out.append(json.dumps(row, ensure_ascii=False))
    return "".join(line + "\n" for line in out)


def write_manifest(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write rows atomically to `path`, or to stdout (absolute paths) when `path` is `-`."""
    if str(path) == "-":
        sys.stdout.write(dumps_rows(rows, None))
        sys.stdout.flush()
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, dumps_rows(rows, p.resolve().parent))


def write_sharded_manifest(out: Path, rows: list[dict], d: Dist) -> list[dict]:
    """One process: write `out/manifest.jsonl`. Several: write this rank's part; once every rank has,
    rank 0 merges the parts in input order (rows carry `_index`) and removes them. Returns this rank's
    rows without `_index`."""
    mine = [{k: v for k, v in r.items() if k != "_index"} for r in rows]
    if d.world == 1:
        write_manifest(mine, out / "manifest.jsonl")
        return mine
    parts = [out / f"manifest.part{r}of{d.world}.jsonl" for r in range(d.world)]
    write_manifest(rows, parts[d.rank])
    barrier()
    if d.is_main:
        merged = sorted((row for p in parts for row in read_manifest(p, check_files=False).rows),
                        key=lambda r: r["_index"])
        write_manifest([{k: v for k, v in r.items() if k != "_index"} for r in merged], out / "manifest.jsonl")
        for p in parts:
            p.unlink()
    barrier()  # no rank reports the manifest before it exists
    return mine


def is_manifest_path(path: str | Path) -> bool:
    """Whether a command's single input is a manifest (ours, or DiffSynth metadata) rather than media."""
    return str(path) == "-" or str(path).lower().endswith(MANIFEST_EXTS)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """The files named by a subcommand's non-manifest inputs: files as given, folders as their
    videos and images (recursively, sorted). A missing one is an error that names it."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS)
        elif p.exists():
            files.append(p)
        else:
            raise InputError("no such file or folder", path=p)
    return files


EDIT_PROMPT_PREFIX = "[Video edit] "  # release --prompt-prefix; training prompts carry it too


def row_prompt(row: dict[str, Any]) -> str:
    """The text a row is trained/edited with: an explicit `prompt` wins; edit rows get the release's
    `[Video edit] ` prefix before the instruction; t2v rows use their caption (stage-0 rows whose source
    is a perturbed clip carry their task prefix in `prompt`, written by `sama perturb --mix`)."""
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    if row["kind"] in ("video_edit", "image_edit"):
        return EDIT_PROMPT_PREFIX + row["instruction"].strip()
    return row["caption"]
