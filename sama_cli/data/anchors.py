"""Semantic anchors (docs/sama.md §3): pick N anchor frames of a *target* video, encode them with SigLIP and
pool each to 64 local + 1 global tokens. Release: the first frame (N = 1); paper: N frames sampled
uniformly. The artifact records the frame indices, the pooling and the encoder. Under torchrun each
rank anchors its share of the inputs, as `sama encode` does (`distributed.share`,
`manifest.write_sharded_manifest`).

The anchor is taken from the target as the trainer sees it. In the release the dataset crops and resizes
every frame to the training size (diffsynth/trainers/unified_dataset.py, ImageCropAndResize) and
SigLIPFirstFrameEncoder.encode_first_frame (diffsynth/models/siglip_semantic.py) gives the first of those
frames to SigLIP's own processor (its 384x384 resize and normalisation). So for a manifest row whose target
`sama encode` has encoded, the anchor frames come from the frame window the latents hold (the latents'
`window` {start, count, stride}, else the row's, else the first `frames` frames), resized to the recorded
`size` with the recorded `resize` mode, and only then go through the SigLIP processor. Targets without such
latents (plain files, rows not yet encoded) are anchored from their raw frames, with one note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.console import err, progress, warn
from sama_cli.core.distributed import Dist, setup, share
from sama_cli.core.errors import InputError, SamaError, StorageError, naming
from sama_cli.io.artifacts import content_hash, is_valid_cache, read_header, save_artifact
from sama_cli.io.frames import Window
from sama_cli.io.manifest import expand_inputs, is_manifest_path, read_manifest, write_sharded_manifest
from sama_cli.io.video import RESIZE_MODES, read_video, resize_frames

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


@dataclass(frozen=True)
class TargetView:
    """How `sama encode` saw a target (the meta of its target latents, sama_cli/data/latents.py
    Encoder.latents): the working `size` (H, W) and `resize` mode, and the frame window the latents hold
    (`start`, `stride`; `frames` decoded, None when unknown)."""

    size: tuple[int, int]
    resize: str
    start: int = 0
    stride: int = 1
    frames: int | None = None
    content_hash: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"size": list(self.size), "resize": self.resize,
                "window": {"start": self.start, "count": self.frames, "stride": self.stride}}


def _window(value: Any, where: Path) -> tuple[int, int | None, int]:
    """(start, count, stride) of a recorded window (io.frames.Window's record); none recorded: frame 0 on,
    stride 1, count unknown (None)."""
    if value is None:
        return 0, None, 1
    try:
        window = Window.from_dict(value)
    except ValueError as e:
        raise InputError(f"frame window {value!r} is not a window ({e})", path=where) from None
    return window.start, window.count, window.stride


def target_view(row: dict[str, Any]) -> TargetView | None:
    """The view of `row`'s target that its encoded latents record (`artifacts.target_latents` with meta
    `size` and `resize`), or None when the row has no such latents. The window is the latents' `window`
    (io.frames.Window.as_dict: start, count, stride; extra keys such as frames_total are ignored), else the
    row's `window`, else frame 0 on (also when the latents record `read: whole`: the file is the window);
    its frame count is the latents' `frames` (the frames encode decoded, before padding), else the
    window's `count`."""
    path = (row.get("artifacts") or {}).get("target_latents")
    if not path:
        return None
    _, meta = read_header(path, "latents")
    size, mode = meta.get("size"), meta.get("resize")
    if not (isinstance(size, list) and len(size) == 2) or mode not in RESIZE_MODES:
        return None  # latents from before the size and mode were recorded
    if meta.get("read") == "whole":  # the file holds the window's frames already: read it from frame 0
        start, count, stride = 0, None, 1
    else:
        start, count, stride = _window(meta.get("window") or row.get("window"), Path(path))
    frames = meta.get("frames") if isinstance(meta.get("frames"), int) else count
    return TargetView((int(size[0]), int(size[1])), mode, start, stride, frames, meta.get("content_hash"))


def view_frames(src: Path, view: TargetView, count: int, how: str) -> tuple[torch.Tensor, list[int]]:
    """The anchor frames of `src` as the trainer sees them: chosen inside the encoded window (`first`:
    its frame `start`), resized to the encoded size with the encoded mode; and their indices in the file.
    Only the frames up to the last one chosen are decoded."""
    if view.frames is None:
        window = read_video(src, start=view.start, step=view.stride).frames
        rel = select_frames(window.shape[0], count, how)
    else:
        rel = select_frames(view.frames, count, how)
        window = read_video(src, start=view.start, step=view.stride, max_frames=max(rel) + 1).frames
        if window.shape[0] <= max(rel):
            raise InputError(f"has {window.shape[0]} frames from frame {view.start} (stride {view.stride}), but its "
                             f"latents hold {view.frames}: the file changed since it was encoded", path=src)
    frames = resize_frames(window[rel], view.size, mode=view.resize)
    return frames, [view.start + i * view.stride for i in rel]


@dataclass
class AnchorSummary:
    files: int = 0
    skipped: int = 0
    raw: int = 0  # targets anchored from their raw frames (no encoded latents to take the view from)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "skipped": self.skipped, "raw_frames": self.raw, "failed": self.failed,
                "seconds": round(self.seconds, 3), "manifest": self.manifest}


def anchor_file(encoder, src: Path, dst: Path, count: int, how: str, summary: AnchorSummary,
                overwrite: bool = False, view: TargetView | None = None) -> Path:
    """Anchor one target: from the encoded view when `view` is given, else from its raw frames."""
    digest = content_hash(src)
    if view is not None and view.content_hash not in (None, digest):
        raise InputError("is not the file its target latents were encoded from (content hash differs): "
                         "encode the row again", path=src)
    summary.raw += view is None
    expect = {"content_hash": digest, "encoder": encoder.describe(), "count": count, "select": how,
              "view": None if view is None else view.describe()}
    if not overwrite and is_valid_cache(dst, "anchors", expect):
        summary.skipped += 1
        return dst
    with naming(src):
        if view is None:
            tokens, idx = compute_anchors(encoder, read_video(src).frames, count, how)
        else:
            frames, idx = view_frames(src, view, count, how)
            tokens = encoder(frames)  # (count, grid^2 + 1, S)
            tokens = tokens.reshape(-1, tokens.shape[-1])
    save_artifact(dst, {"tokens": tokens}, "anchors", {**expect, "frames": idx, "source": str(src),
                                                       "tokens_per_frame": tokens.shape[0] // count})
    summary.files += 1
    return dst


RAW_NOTE = ("note: {n} target(s) have no encoded latents recording their size and resize mode: anchored from "
            "their raw frames, not the bucket-resized frames the trainer sees (anchor the manifest `sama encode` "
            "wrote to take the anchors from the encoded view)")


def _anchor_row(encoder, row: dict[str, Any], out: Path, count: int, how: str, summary: AnchorSummary,
                overwrite: bool) -> Path:
    """One manifest row's target, from the view its target latents record (raw frames without them)."""
    if not row.get("target"):
        raise InputError("row has no target to anchor")
    view = target_view(row)
    return anchor_file(encoder, Path(row["target"]), out / "anchors" / f"{row['id']}.safetensors", count, how,
                       summary, overwrite, view)


def anchor_inputs(inputs: list[str], out: Path, encoder, *, count: int = 1, how: str = "first",
                  overwrite: bool = False, dist: Dist | None = None,
                  base_path: str | Path | None = None) -> tuple[AnchorSummary, list[dict]]:
    """Anchors for files/folders, or for every row's target in one manifest (rows get artifacts.anchors;
    `base_path`: the folder its relative paths resolve against, as read_manifest takes it). Returns the
    summary and this rank's rows (under torchrun, `dist`, each rank takes its share). One note on stderr
    counts the targets anchored from raw frames."""
    t0 = time.perf_counter()
    d = dist or setup(torch.device("cpu"))
    summary, rows_out = AnchorSummary(), []
    if len(inputs) == 1 and is_manifest_path(inputs[0]):
        rows = read_manifest(inputs[0], base_path=base_path).rows
        out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be readable
        for index, row in progress(share(list(enumerate(rows)), d), "anchor"):
            try:
                dst = _anchor_row(encoder, row, out, count, how, summary, overwrite)
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
    if summary.raw:
        err.print(RAW_NOTE.format(n=summary.raw))
    summary.seconds = time.perf_counter() - t0
    return summary, rows_out
