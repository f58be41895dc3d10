"""Latent caching (`sama encode`): videos/images -> normalized latent artifacts, prompts -> text
artifacts, manifests -> manifests with `artifacts.*` filled in.

Outputs are cached by content: an existing artifact whose metadata names the same input hash and the
same parameters is kept (`overwrite` redoes it). Under torchrun each rank takes every WORLD-th item
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
from sama_cli.core.errors import ConfigError, SamaError, StorageError, naming
from sama_cli.data.pretext import LATENT_TASKS, TASK_PREFIXES, prefixed
from sama_cli.io.artifacts import content_hash, is_valid_cache, save_artifact
from sama_cli.io.frames import choose_size, fit_frames
from sama_cli.io.manifest import (
    expand_inputs,
    is_manifest_path,
    read_manifest,
    row_prompt,
    write_sharded_manifest,
)
from sama_cli.io.video import RESIZE_MODES, read_video, resize_frames

BUCKET_AREA = 480 * 832


@dataclass
class EncodeOptions:
    size: tuple[int, int] | None = None  # explicit (H, W)
    bucket: bool = False  # True: always the ~480x832 bucket; False: native size when it fits, else the bucket
    multiple: int = 32
    resize: str = "crop"
    max_frames: int | None = 81
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1, not {self.max_frames}")
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


class Encoder:
    def __init__(self, codec, text_encoder=None, *, device: torch.device, opts: EncodeOptions):
        self.codec, self.text_encoder, self.device, self.opts = codec, text_encoder, device, opts
        self.summary = EncodeSummary()

    def latents(self, src: Path, dst: Path) -> Path:
        """Encode one video/image to `dst` (skipped when a valid cached output exists)."""
        digest = content_hash(src)
        opts = self.opts
        expect = {"content_hash": digest, "codec": self.codec.describe(), "resize": opts.resize,
                  "max_frames": opts.max_frames, "requested_size": list(opts.size) if opts.size else None,
                  "bucket": opts.bucket}
        if not opts.overwrite and is_valid_cache(dst, "latents", expect):
            self.summary.skipped += 1
            return dst
        video = read_video(src, max_frames=opts.max_frames)
        n = video.num_frames
        frames_total = video.info.frames if video.info is not None else n
        if frames_total > n:
            err.print(f"note: {src}: encoding the first {n} of {frames_total} frames (--max-frames {opts.max_frames}; "
                      "recorded as frames_total)")
        size = choose_size(video.height, video.width, size=opts.size, bucket=opts.bucket, area=BUCKET_AREA,
                           multiple=opts.multiple)
        frames = resize_frames(video.frames, size, mode=opts.resize)
        frames = fit_frames(frames, "pad", k=self.codec.temporal_factor)
        total = frames.shape[0]
        if total != n:
            warn(f"{src}: {n} frames padded to {total} by repeating the last frame (recorded in the artifact)")
        x = frames.permute(3, 0, 1, 2).unsqueeze(0).float().div(127.5).sub(1).to(self.device)  # (1, 3, T, H, W)
        with torch.no_grad(), naming(src):  # codec errors (sides not divisible, ...) name the file
            z = self.codec.encode(x)[0].float().cpu()  # (C, t, h, w)
        meta = {**expect, "source": str(src), "frames": n, "frames_total": frames_total, "padded_frames": total - n,
                "fps": video.fps, "size": list(size), "source_size": [video.height, video.width]}
        save_artifact(dst, {"latents": z}, "latents", meta)
        self.summary.files += 1
        self.summary.frames += n
        return dst

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


def encode(inputs: list[str], out: Path, *, codec, text_encoder=None, text_spec: str | None = None,
           prompt: str | None = None, device: torch.device, opts: EncodeOptions,
           dist: Dist | None = None) -> tuple[EncodeSummary, list[dict]]:
    """Encode files/folders or one manifest into `out`; returns the summary and this rank's output rows.
    Under torchrun (`dist`, else `distributed.setup`) each rank encodes its share of the inputs."""
    t0 = time.perf_counter()
    d = dist or setup(device)
    enc = Encoder(codec, text_encoder, device=device, opts=opts)
    out.mkdir(parents=True, exist_ok=True)
    rows_out: list[dict] = []
    if len(inputs) == 1 and is_manifest_path(inputs[0]):
        manifest = read_manifest(inputs[0])
        for index, row in progress(share(list(enumerate(manifest.rows)), d), "encode"):
            try:
                arts = dict(row.get("artifacts") or {})
                for key in ("source", "target"):
                    if row.get(key):
                        arts[f"{key}_latents"] = str(enc.latents(Path(row[key]), out / "latents" / f"{row['id']}.{key}.safetensors"))
                if text_encoder is not None:
                    variants = None
                    if row["kind"] == "t2v" and not row.get("source") and not row.get("pretext"):
                        variants = {t: prefixed(TASK_PREFIXES[t], row["caption"]) for t in LATENT_TASKS}
                    arts["text"] = str(enc.text(row_prompt(row), out / "text" / f"{row['id']}.safetensors", text_spec,
                                                variants))
                rows_out.append({**row, "artifacts": arts, "_index": index})
            except StorageError:  # a full disk fails every item after it: stop here
                raise
            except SamaError as e:
                enc.summary.failed.append({"id": row["id"], "error": e.message})
                warn(f"{row['id']}: {e.message}")
        rows_out = write_sharded_manifest(out, rows_out, d)
        enc.summary.manifest = str(out / "manifest.jsonl")
    else:
        files = share(expand_inputs(inputs), d)
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
