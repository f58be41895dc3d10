"""File-level pretext generation: a video (or frame folder) -> a perturbed MP4, a latent artifact ->
a perturbed latent artifact, and `mix`: text-to-video rows -> stage-0 rows.

A perturbed MP4 has 4k+1 frames (`fit`: trim or pad, see `pretext.perturb_pixels`) and its record
(task, parameters, seed, caption prefix, frames in/out) beside it as `OUT.mp4.json`; a perturbed latent
artifact carries its record in its metadata (`pretext`).

A stage-0 row (written by `mix`) keeps `kind: "t2v"`, its `target` (the clean clip) and `caption`, and
adds
    source   the perturbed clip (absent for task "none": then it is plain text-to-video)
    prompt   the task prefix + " " + caption (the text it is trained with; see manifest.row_prompt)
    pretext  {"task", "prefix", "seed", ...the task's parameters and record}
`sama encode` then fills `artifacts.source_latents` / `target_latents` / `text` as for any row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sama_cli.core.console import progress
from sama_cli.core.errors import ConfigError, InputError, naming
from sama_cli.data.pretext import (
    DEFAULT_TASK_RATIO,
    TASK_PREFIXES,
    black_fill,
    choose_task,
    perturb_latents,
    perturb_pixels,
    prefixed,
    row_generator,
)
from sama_cli.io.artifacts import atomic_write_text, load_artifact, save_artifact
from sama_cli.io.manifest import read_manifest, write_manifest
from sama_cli.io.video import read_frames_folder, read_video, write_video


def task_options(task: str, *, ratio: float = 0.3, mask_mode: str = "temporal",
                 factors: tuple[float, ...] = (0.5, 2.0), splits: tuple[int, int, int] = (4, 4, 4)) -> dict[str, Any]:
    """One task's own options (the 4k+1 `fit` of pixel outputs is passed separately: it applies to all)."""
    return {"cube-inpaint": {"ratio": ratio, "mode": mask_mode}, "speed": {"factors": factors},
            "tube-shuffle": {"splits": splits}, "none": {}}[task]


def _read_clip(src: Path):
    return read_frames_folder(src) if src.is_dir() else read_video(src)


def record_path(dst: Path) -> Path:
    """Where the record of a perturbed video is written: beside it, `OUT.mp4.json`."""
    return dst.with_name(dst.name + ".json")


def perturb_video(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any], *, fit: str = "trim",
                  lossless: bool) -> dict:
    """Perturb a clip in pixel space and write it and its record (both atomically); returns the record."""
    video = _read_clip(src)
    g = row_generator(seed, src.name)
    with naming(src):
        out, record = perturb_pixels(video.frames, task, g, fit=fit, **options)
    record = {**record, "seed": seed, "source": str(src)}
    write_video(dst, out, video.fps, lossless=lossless)
    atomic_write_text(record_path(dst), json.dumps(record, indent=1) + "\n")
    return record


def perturb_file(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any], *, fit: str = "trim",
                 lossless: bool = True) -> dict:
    """One input -> its perturbed copy, by what it is: a latent artifact (.safetensors) -> a latent artifact,
    a video or frame folder -> an MP4 and its record. Returns the record."""
    if not src.exists():
        raise InputError("no such file or folder", path=src)
    if src.suffix == ".safetensors":
        if dst.suffix != ".safetensors":
            raise ConfigError("latents in, latents out: -o must end in .safetensors")
        return perturb_latent_file(src, dst, task, seed, options)
    if dst.suffix.lower() != ".mp4":
        raise ConfigError("-o must be an .mp4 file")
    return perturb_video(src, dst, task, seed, options, fit=fit, lossless=lossless)


def perturb_latent_file(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any]) -> dict:
    art = load_artifact(src, "latents")
    g = row_generator(seed, src.name)
    options = dict(options)
    if task == "tube-shuffle":
        options["splits"] = tuple(min(s, n) for s, n in zip(options["splits"], art["latents"].shape[1:], strict=True))
    with naming(src):
        out, record = perturb_latents(art["latents"], task, g, fill=black_fill(art.meta.get("codec")), **options)
    record = {**record, "seed": seed, "source": str(src)}
    save_artifact(dst, {"latents": out}, "latents", {**art.meta, "pretext": record})
    return record


def mix(manifest_path: str, out: Path, *, seed: int, task_ratio: tuple[float, ...] = DEFAULT_TASK_RATIO,
        options: dict[str, dict[str, Any]] | None = None, fit: str = "trim",
        lossless: bool = True) -> tuple[list[dict], dict[str, int]]:
    """Turn the manifest's t2v rows into stage-0 rows (other rows pass through unchanged). Deterministic:
    a row's task and perturbation depend only on the seed and the row's id."""
    manifest = read_manifest(manifest_path)
    options = options or {t: task_options(t) for t in TASK_PREFIXES}
    rows, counts = [], {t: 0 for t in TASK_PREFIXES}
    for row in progress(manifest.rows, "perturb --mix"):
        if row["kind"] != "t2v":
            rows.append(row)
            continue
        g = row_generator(seed, row["id"])
        task = choose_task(task_ratio, g)
        counts[task] += 1
        new = {**row, "prompt": prefixed(TASK_PREFIXES[task], row["caption"])}
        if task == "none":
            new["pretext"] = {"task": "none", "prefix": "", "seed": seed}
        else:
            video = read_video(row["target"])
            with naming(Path(row["target"])):
                perturbed, record = perturb_pixels(video.frames, task, g, fit=fit, **options[task])
            dst = out / "videos" / f"{row['id']}.{task}.mp4"
            write_video(dst, perturbed, video.fps, lossless=lossless)
            new.update(source=str(dst), pretext={**record, "seed": seed})
        rows.append(new)
    write_manifest(rows, out / "manifest.jsonl")
    return rows, counts
