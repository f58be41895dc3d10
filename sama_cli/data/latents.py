"""Latent caching (`sama encode`): videos/images -> normalized latent artifacts, prompts -> text
artifacts, manifests -> manifests with `artifacts.*` filled in.

Frame windows (docs/sama.md §5): every row is encoded through one frame window (`io.frames.Window`:
start, count, stride), the same for its source and its target, and recorded in the output row
(`window`) and in each latent artifact's meta. A row that carries a window (written by `sama perturb
--mix`, which made its pretext on exactly those frames) keeps it; a row without one (edit pairs from a
data set) gets one here, chosen by the release's rule (`WindowRule`: the first --max-frames frames,
--stride, the row's `skip_frames` or --skip-frames) from the shorter of its source and target. A
perturbed source already holds its window's frames and is read whole; its target is read through the
window. A row whose window disagrees with its files (another length, a pretext made on other frames, a
--max-frames below the window's count, which would cut only the target) is that row's error, naming it.

OpenVE-3M: the release drops the first 4 frames of both videos of every OpenVE-3M pair
(`UnifiedDataset.__getitem__` in diffsynth/trainers/unified_dataset.py, `[4:]` when the path holds
`Lewandofski-OpenVE-3M`, after reading 81 frames, so 77 remain): give those rows `skip_frames: 4`, or
encode their manifest with `--skip-frames 4` (`io.frames.OPENVE_SKIP_FRAMES`).

Outputs are cached by content: an existing artifact whose metadata names the same input hash and the
same parameters (the window among them) is kept (`overwrite` redoes it). Under torchrun each rank takes every WORLD-th item
(`distributed.share`) and writes a manifest part; once all ranks are done, rank 0 merges the parts in
input order (`manifest.write_sharded_manifest`; `sama anchor` shards the same way).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.console import err, progress, warn
from sama_cli.core.distributed import Dist, setup, share
from sama_cli.core.errors import ConfigError, InputError, SamaError, StorageError, naming
from sama_cli.data.pretext import LATENT_TASKS, TASK_PREFIXES, prefixed
from sama_cli.io.artifacts import content_hash, is_valid_cache, save_artifact
from sama_cli.io.frames import FITS, TEMPORAL_FACTOR, Window, WindowRule, choose_size, fit_frames
from sama_cli.io.manifest import (
    expand_inputs,
    is_manifest_path,
    read_manifest,
    row_prompt,
    write_sharded_manifest,
)
from sama_cli.io.video import (
    RESIZE_MODES,
    Video,
    frame_files,
    probe,
    read_frames_folder,
    read_video,
    resize_frames,
)

BUCKET_AREA = 480 * 832


@dataclass
class EncodeOptions:
    size: tuple[int, int] | None = None  # explicit (H, W)
    bucket: bool = False  # True: always the ~480x832 bucket; False: native size when it fits, else the bucket
    multiple: int = 32
    resize: str = "crop"
    max_frames: int | None = 81  # the window's frame budget (the release's num_frames)
    overwrite: bool = False
    stride: int = 1  # the window's step between frames (ours; the release reads consecutive frames)
    skip_frames: int = 0  # frames dropped at the start of rows without their own skip_frames (OpenVE-3M: 4)
    fit: str = "pad"  # a window chosen here reaches the codec's 1+4k by repeating its last frame, or trim

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1, not {self.max_frames}")
        if self.stride < 1 or self.skip_frames < 0:
            raise ConfigError(f"--stride must be at least 1 and --skip-frames at least 0 (got {self.stride}, "
                              f"{self.skip_frames})")
        if self.fit not in FITS:
            raise ConfigError(f"--fit must be one of {', '.join(FITS)}, not {self.fit!r}")

    @property
    def rule(self) -> WindowRule:
        return WindowRule(self.max_frames, self.stride, self.skip_frames)
        if self.multiple < 1 or (self.size is not None and min(self.size) < 1):
            raise ConfigError(f"sizes must be positive (size {self.size}, multiple {self.multiple})")


@dataclass
class EncodeSummary:
    files: int = 0
    frames: int = 0
    texts: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "frames": self.frames, "texts": self.texts, "skipped": self.skipped,
                "failed": self.failed, "seconds": round(self.seconds, 3), "manifest": self.manifest}


# ---- frame windows of files and rows -------------------------------------------------------------
def clip_frames(path: Path) -> int:
    """The number of frames of a video (1 for an image, the image count of a frame folder), without
    decoding it."""
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    return probe(path).frames


def clip_window(src: Path, rule: WindowRule, *, fit: str, skip: int | None = None,
                k: int = TEMPORAL_FACTOR) -> Window:
    """The rule's window of a clip (its frame count read without decoding), the 1+k*m `fit` included; a
    clip the rule cannot window is an InputError naming it."""
    with naming(src):
        try:
            return rule.choose(clip_frames(src), skip=skip, fit=fit, k=k)
        except ValueError as e:
            raise InputError(str(e)) from None


def read_window(path: Path, window: Window) -> Video:
    """Decode exactly the window's frames of a clip (a frame folder is read and cut). A clip too short
    for the window is an InputError naming the file."""
    path = Path(path)
    video = read_frames_folder(path) if path.is_dir() else None
    total = video.num_frames if video is not None else clip_frames(path)
    if window.end > total:
        raise InputError(f"has {total} frames, too few for its window {window.as_dict()}", path=path)
    if video is not None:
        return Video(video.frames[window.indices()], video.fps, path, video.info)
    return read_video(path, start=window.start, step=window.stride, max_frames=window.count)


def row_skip(row: dict[str, Any], default: int) -> int:
    """The frames a row drops at its start: its own `skip_frames` (OpenVE-3M rows: 4), else `default`."""
    value = row.get("skip_frames", default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # a DiffSynth CSV cell is text (io/metadata.py)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError(f"row {row['id']!r}: skip_frames must be a whole number >= 0, not {value!r}")
    return value


def recorded_window(row: dict[str, Any]) -> Window | None:
    """The row's own `window`, or None; a malformed one is the row's error."""
    if row.get("window") is None:
        return None
    try:
        return Window.from_dict(row["window"])
    except ValueError as e:
        raise InputError(f"row {row['id']!r}: bad window ({e})") from None


def row_window(row: dict[str, Any], paths: list[Path], rule: WindowRule, *, fit: str, k: int) -> Window:
    """The one window of a row whose clips `paths` are read through it: its recorded `window`, which must
    have been chosen from the shortest of them (`frames_total`), else the rule's window of the shortest
    (so that it fits each), with the row's skip_frames. A disagreement is the row's error."""
    totals = [clip_frames(p) for p in paths]
    window = recorded_window(row)
    if window is not None:
        if window.frames_total is not None and totals and min(totals) != window.frames_total:
            raise InputError(f"row {row['id']!r}: its window {window.as_dict()} was chosen from a clip of "
                             f"{window.frames_total} frames, its files have {min(totals)}: they changed since")
        return window
    try:
        return rule.choose(min(totals), skip=row_skip(row, rule.skip), fit=fit, k=k)
    except ValueError as e:
        raise InputError(f"row {row['id']!r}: {e}") from None


def perturbed_source(row: dict[str, Any]) -> dict[str, Any] | None:
    """The pretext record of a row whose source is a pixel pretext of its target (from `perturb --mix`)."""
    pre = row.get("pretext")
    if row.get("source") and isinstance(pre, dict) and pre.get("task") not in (None, "none"):
        return pre
    return None


class Encoder:
    def __init__(self, codec, text_encoder=None, *, device: torch.device, opts: EncodeOptions):
        self.codec, self.text_encoder, self.device, self.opts = codec, text_encoder, device, opts
        self.summary = EncodeSummary()

    def latents(self, src: Path, dst: Path, window: Window | None = None, *, whole: bool = False,
                fit: str | None = None) -> Path:
        """Encode one video/image to `dst` through `window` (None: the options' rule chooses one for this
        file); `whole`: `src` is a perturbed source that holds the frames of `window` already, read it all;
        `fit`: first bring the window's frames to 1+4k by this fit (a target whose perturbed source was
        fitted so). Skipped when a valid cached output exists; the window goes into the meta."""
        opts = self.opts
        if window is None:
            window = clip_window(src, opts.rule, fit=opts.fit, k=self.codec.temporal_factor)
        digest = content_hash(src)
        expect = {"content_hash": digest, "codec": self.codec.describe(), "resize": opts.resize,
                  "window": window.as_dict(), "read": "whole" if whole else "window", "fit": fit,
                  "requested_size": list(opts.size) if opts.size else None, "bucket": opts.bucket}
        if not opts.overwrite and is_valid_cache(dst, "latents", expect):
            self.summary.skipped += 1
            return dst
        video = read_video(src) if whole else read_window(src, window)
        n = video.num_frames
        frames_total = video.info.frames if video.info is not None else n
        if not whole and n < frames_total:
            self._note_window(src, window, n, frames_total)
        size = choose_size(video.height, video.width, size=opts.size, bucket=opts.bucket, area=BUCKET_AREA,
                           multiple=opts.multiple)
        frames = resize_frames(video.frames, size, mode=opts.resize)
        if fit is not None:
            frames = fit_frames(frames, fit, k=TEMPORAL_FACTOR)
        frames = fit_frames(frames, "pad", k=self.codec.temporal_factor)
        total = frames.shape[0]
        if total != n:
            warn(f"{src}: {n} frames padded to {total} by repeating the last frame (recorded in the artifact)")
        x = frames.permute(3, 0, 1, 2).unsqueeze(0).float().div(127.5).sub(1).to(self.device)  # (1, 3, T, H, W)
        with torch.no_grad(), naming(src):  # codec errors (sides not divisible, ...) name the file
            z = self.codec.encode(x)[0].float().cpu()  # (C, t, h, w)
        meta = {**expect, "max_frames": opts.max_frames, "source": str(src), "frames": n,
                "frames_total": frames_total, "padded_frames": total - n, "fps": video.fps, "size": list(size),
                "source_size": [video.height, video.width]}
        save_artifact(dst, {"latents": z}, "latents", meta)
        self.summary.files += 1
        self.summary.frames += n
        return dst

    @staticmethod
    def _note_window(src: Path, window: Window, n: int, frames_total: int) -> None:
        if window.start == 0 and window.stride == 1:
            err.print(f"note: {src}: encoding the first {n} of {frames_total} frames (frame window; "
                      "recorded as frames_total)")
        else:
            err.print(f"note: {src}: encoding {n} of {frames_total} frames (window from frame {window.start}, "
                      f"every {window.stride}; recorded in the artifact)")

    def row(self, row: dict[str, Any], out: Path) -> tuple[dict[str, str], Window]:
        """Encode a manifest row's source and target through its one window (see the module docstring);
        returns its artifacts and the window."""
        rid, opts = row["id"], self.opts
        pre = perturbed_source(row)
        if pre is not None and row.get("window") is None:
            raise InputError(f"row {rid!r}: its perturbed source records no frame window (an older `sama perturb "
                             "--mix`?), so its target cannot be cut to the frames it was made from: perturb again")
        windowed = [Path(row[key]) for key in ("source", "target") if row.get(key) and not (key == "source" and pre)]
        window = row_window(row, windowed, opts.rule, fit=opts.fit, k=self.codec.temporal_factor)
        if row.get("window") is not None and opts.max_frames is not None and window.count > opts.max_frames:
            cut = "its target and not its perturbed source" if pre is not None else "it below its recorded count"
            raise InputError(f"row {rid!r}: its window holds {window.count} frames but --max-frames is "
                             f"{opts.max_frames}, which would cut {cut}; encode with --max-frames {window.count} "
                             "or choose the window again")
        if pre is not None:
            check_pretext(row, pre, window)
        arts = dict(row.get("artifacts") or {})
        lat = out / "latents"
        if row.get("target"):
            fit = pre.get("fit") if pre is not None and pre.get("task") != "speed" else None
            arts["target_latents"] = str(self.latents(Path(row["target"]), lat / f"{rid}.target.safetensors", window,
                                                      fit=fit))
        if row.get("source"):
            arts["source_latents"] = str(self.latents(Path(row["source"]), lat / f"{rid}.source.safetensors", window,
                                                      whole=pre is not None))
        return arts, window

    def text(self, prompt: str, dst: Path, spec: str, variants: dict[str, str] | None = None) -> Path:
        """The prompt's embedding as `embeds`, plus `embeds@NAME` for each variant prompt (plain t2v rows
        get one per latent pretext task, so that `train` can perturb them on the fly)."""
        variants = variants or {}
        expect = {"prompt": prompt, "encoder": spec, "variants": variants}
        if not self.opts.overwrite and is_valid_cache(dst, "text-embeds", expect):
            self.summary.skipped += 1
            return dst
        names = list(variants)
        embs = self.text_encoder([prompt, *(variants[n] for n in names)])
        tensors = {"embeds": embs[0], **{f"embeds@{n}": e for n, e in zip(names, embs[1:], strict=True)}}
        save_artifact(dst, tensors, "text-embeds", {**expect, "tokens": embs[0].shape[0]})
        self.summary.texts += 1
        return dst


def check_pretext(row: dict[str, Any], pre: dict[str, Any], window: Window) -> None:
    """A perturbed source must be its window's frames: the pretext was made on `window.count` frames
    (`frames_in`) and the file holds the `frames_out` it wrote; else the row's error."""
    rid, src = row["id"], Path(row["source"])
    if pre.get("frames_in") is not None and pre["frames_in"] != window.count:
        raise InputError(f"row {rid!r}: its {pre.get('task')} pretext was made on {pre['frames_in']} frames but its "
                         f"window holds {window.count}: source and target would cover different frames")
    have = clip_frames(src)
    if pre.get("frames_out") is not None and have != pre["frames_out"]:
        raise InputError(f"row {rid!r}: its perturbed source {src} has {have} frames, its pretext record says "
                         f"{pre['frames_out']}: the file changed since it was perturbed")


def encode(inputs: list[str], out: Path, *, codec, text_encoder=None, text_spec: str | None = None,
           prompt: str | None = None, device: torch.device, opts: EncodeOptions,
           dist: Dist | None = None, base_path: str | Path | None = None) -> tuple[EncodeSummary, list[dict]]:
    """Encode files/folders or one manifest into `out`; returns the summary and this rank's output rows.
    A manifest may be a DiffSynth metadata file; `base_path` is the folder its relative paths resolve
    against (default: the file's folder).
    Under torchrun (`dist`, else `distributed.setup`) each rank encodes its share of the inputs."""
    t0 = time.perf_counter()
    d = dist or setup(device)
    enc = Encoder(codec, text_encoder, device=device, opts=opts)
    rows_out: list[dict] = []
    if len(inputs) == 1 and is_manifest_path(inputs[0]):
        manifest = read_manifest(inputs[0], base_path=base_path)
        out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be readable
        for index, row in progress(share(list(enumerate(manifest.rows)), d), "encode"):
            try:
                arts, window = enc.row(row, out)
                if text_encoder is not None:
                    variants = None
                    if row["kind"] == "t2v" and not row.get("source") and not row.get("pretext"):
                        variants = {t: prefixed(TASK_PREFIXES[t], row["caption"]) for t in LATENT_TASKS}
                    arts["text"] = str(enc.text(row_prompt(row), out / "text" / f"{row['id']}.safetensors", text_spec,
                                                variants))
                rows_out.append({**row, "window": window.as_dict(), "artifacts": arts, "_index": index})
            except StorageError:  # a full disk fails every item after it: stop here
                raise
            except SamaError as e:
                enc.summary.failed.append({"id": row["id"], "error": e.message})
                warn(f"{row['id']}: {e.message}")
        rows_out = write_sharded_manifest(out, rows_out, d)
        enc.summary.manifest = str(out / "manifest.jsonl")
    else:
        files = share(expand_inputs(inputs), d)
        out.mkdir(parents=True, exist_ok=True)
        for f in progress(files, "encode"):
            try:
                dst = out / f"{f.stem}-{content_hash(f)[:8]}.latents.safetensors"
                rows_out.append({"input": str(f), "latents": str(enc.latents(f, dst))})
            except StorageError:  # a full disk fails every item after it: stop here
                raise
            except SamaError as e:
                enc.summary.failed.append({"id": str(f), "error": e.message})
                warn(e.message)
        if prompt is not None and text_encoder is not None and d.is_main:
            dst = out / f"prompt-{hashlib.sha256(prompt.encode()).hexdigest()[:8]}.text.safetensors"
            rows_out.append({"prompt": prompt, "text": str(enc.text(prompt, dst, text_spec))})
    enc.summary.seconds = time.perf_counter() - t0
    return enc.summary, rows_out
