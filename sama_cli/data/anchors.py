"""Semantic anchors (docs/sama.md §3): pick N anchor frames of a *target* video, encode them with SigLIP and
pool each to 64 local + 1 global tokens. Release: the first frame (N = 1); paper: N frames sampled
uniformly. The artifact records the frame indices, the pooling and the encoder. Under torchrun each
rank anchors its share of the inputs, as `sama encode` does (`distributed.share`,
`manifest.write_sharded_manifest`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.console import progress, warn
from sama_cli.core.distributed import Dist, setup, share
from sama_cli.core.errors import SamaError, StorageError, naming
from sama_cli.io.artifacts import content_hash, is_valid_cache, save_artifact
from sama_cli.io.manifest import expand_inputs, is_manifest_path, read_manifest, write_sharded_manifest
from sama_cli.io.video import read_video

SELECTIONS = ("first", "uniform")


def select_frames(n_frames: int, count: int, how: str = "first") -> list[int]:
    """Indices of the anchor frames: the first `count` (release), or `count` evenly spaced from the
    first to the last frame (paper). A clip shorter than `count` repeats its frames."""
    if count < 1:
        raise ValueError(f"anchor count must be at least 1, not {count}")
    if how == "first":
        return [min(i, n_frames - 1) for i in range(count)]
    if how == "uniform":
        if count == 1:
            return [0]
        return [round(i * (n_frames - 1) / (count - 1)) for i in range(count)]
    raise ValueError(f"anchor selection must be one of {SELECTIONS}, not {how!r}")


def compute_anchors(encoder, frames_thwc: torch.Tensor, count: int, how: str) -> tuple[torch.Tensor, list[int]]:
    """(count * (grid^2 + 1), S) tokens of the chosen frames, in frame order, and their indices."""
    idx = select_frames(frames_thwc.shape[0], count, how)
    tokens = encoder(frames_thwc[idx])  # (count, grid^2 + 1, S)
    return tokens.reshape(-1, tokens.shape[-1]), idx


@dataclass
class AnchorSummary:
    files: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "skipped": self.skipped, "failed": self.failed,
                "seconds": round(self.seconds, 3), "manifest": self.manifest}


def anchor_file(encoder, src: Path, dst: Path, count: int, how: str, summary: AnchorSummary,
                overwrite: bool = False) -> Path:
    expect = {"content_hash": content_hash(src), "encoder": encoder.describe(), "count": count, "select": how}
    if not overwrite and is_valid_cache(dst, "anchors", expect):
        summary.skipped += 1
        return dst
    video = read_video(src)
    with naming(src):
        tokens, idx = compute_anchors(encoder, video.frames, count, how)
    save_artifact(dst, {"tokens": tokens}, "anchors", {**expect, "frames": idx, "source": str(src),
                                                       "tokens_per_frame": tokens.shape[0] // count})
    summary.files += 1
    return dst


def anchor_inputs(inputs: list[str], out: Path, encoder, *, count: int = 1, how: str = "first",
                  overwrite: bool = False, dist: Dist | None = None) -> tuple[AnchorSummary, list[dict]]:
    """Anchors for files/folders, or for every row's target in one manifest (rows get artifacts.anchors).
    Returns the summary and this rank's rows (under torchrun, `dist`, each rank takes its share)."""
    t0 = time.perf_counter()
    d = dist or setup(torch.device("cpu"))
    summary, rows_out = AnchorSummary(), []
    out.mkdir(parents=True, exist_ok=True)
    if len(inputs) == 1 and is_manifest_path(inputs[0]):
        for index, row in progress(share(list(enumerate(read_manifest(inputs[0]).rows)), d), "anchor"):
            if not row.get("target"):
                summary.failed.append({"id": row["id"], "error": "row has no target to anchor"})
                continue
            try:
                dst = anchor_file(encoder, Path(row["target"]), out / "anchors" / f"{row['id']}.safetensors",
                                  count, how, summary, overwrite)
                rows_out.append({**row, "artifacts": {**(row.get("artifacts") or {}), "anchors": str(dst)},
                                 "_index": index})
            except StorageError:  # a full disk fails every item after it: stop here
                raise
            except SamaError as e:
                summary.failed.append({"id": row["id"], "error": e.message})
                warn(f"{row['id']}: {e.message}")
        rows_out = write_sharded_manifest(out, rows_out, d)
        summary.manifest = str(out / "manifest.jsonl")
    else:
        for f in progress(share(expand_inputs(inputs), d), "anchor"):
            try:
                dst = out / f"{f.stem}-{content_hash(f)[:8]}.anchors.safetensors"
                rows_out.append({"input": str(f), "anchors": str(anchor_file(encoder, f, dst, count, how, summary,
                                                                              overwrite))})
            except StorageError:  # a full disk fails every item after it: stop here
                raise
            except SamaError as e:
                summary.failed.append({"id": str(f), "error": e.message})
                warn(e.message)
    summary.seconds = time.perf_counter() - t0
    return summary, rows_out
