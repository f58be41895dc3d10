"""File-level pretext generation: a video (or frame folder) -> a perturbed MP4, a latent artifact ->
a perturbed latent artifact, and `mix`: text-to-video rows -> stage-0 rows.

The pretext is made on the clip's frame window (`io.frames.Window`, chosen once by the release's rule,
`WindowRule`: the first 81 frames, after `skip` dropped frames; docs/sama.md §5), never on the whole
clip: the release caps a clip to its frame budget when it loads it and applies the operators to what it
loaded (LoadVideo_decord in diffsynth/trainers/unified_dataset.py). A perturbed MP4 is that window's
frames perturbed, fitted to 4k+1 (`fit`: trim or pad, see `pretext.perturb_pixels`), and its record
(task, parameters, seed, caption prefix, frames in/out, `window`) lies beside it as `OUT.mp4.json`;
every frame index in the record counts window frames. A perturbed latent artifact carries its record in
its metadata (`pretext`), with the window its latents were encoded through.

Speed factors follow the release's alternation (`pretext.speed_factor`): in `mix`, the k-th speed row of
the manifest (in its order) gets 2x for even k and 0.5x for odd k; one clip perturbed alone is the first
of that sequence. `order: "random"` draws the factor from the row's generator instead. Alternation ties a
row's factor to the rows before it (adding a speed row flips the ones after it); the random order keeps
every row's perturbation independent of the others.

A stage-0 row (written by `mix`) keeps `kind: "t2v"`, its `target` (the clean clip) and `caption`, and
adds
    window   {"start", "count", "stride", "frames_total"}: the target's frames the row uses
    source   the perturbed window (absent for task "none": then it is plain text-to-video)
    prompt   the task prefix + " " + caption (the text it is trained with; see manifest.row_prompt)
    pretext  {"task", "prefix", "seed", ...the task's parameters and record}
`sama encode` then fills `artifacts.source_latents` / `target_latents` / `text`, reading the target
through the window and the perturbed source whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sama_cli.core.console import progress
from sama_cli.core.errors import ConfigError, InputError, naming
from sama_cli.data.latents import clip_window, read_window, row_window
from sama_cli.data.pretext import (
    DEFAULT_TASK_RATIO,
    SPEED_ORDERS,
    TASK_PREFIXES,
    black_fill,
    choose_task,
    perturb_latents,
    perturb_pixels,
    prefixed,
    row_generator,
    speed_factor,
)
from sama_cli.io.artifacts import atomic_write_text, load_artifact, save_artifact
from sama_cli.io.frames import TEMPORAL_FACTOR, Window, WindowRule
from sama_cli.io.manifest import read_manifest, write_manifest
from sama_cli.io.video import write_video


def task_options(task: str, *, ratio: float = 0.3, mask_mode: str = "temporal",
                 factors: tuple[float, ...] = (0.5, 2.0), splits: tuple[int, int, int] = (4, 4, 4),
                 speed_order: str = "alternate") -> dict[str, Any]:
    """One task's own options (the 4k+1 `fit` of pixel outputs is passed separately: it applies to all).
    Speed's `order` (alternate, the release; random) is resolved per clip by `speed_options`."""
    return {"cube-inpaint": {"ratio": ratio, "mode": mask_mode}, "speed": {"factors": factors, "order": speed_order},
            "tube-shuffle": {"splits": splits}, "none": {}}[task]


def speed_options(options: dict[str, Any], k: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `speed` keyword arguments for the k-th speed clip, and what to add to its record: under the
    release's alternation the factor is `speed_factor(k, factors)`; under `random` the clip's generator
    draws it."""
    opts = dict(options)
    order = opts.pop("order", "alternate")
    if order not in SPEED_ORDERS:
        raise ConfigError(f"speed order must be one of {', '.join(SPEED_ORDERS)}, not {order!r}")
    if order == "random":
        return opts, {"order": order}
    try:
        opts["factor"] = speed_factor(k, tuple(opts.get("factors", (0.5, 2.0))))
    except ValueError as e:
        raise ConfigError(f"{e}; use --speed-order random to draw among more") from None
    return opts, {"order": order, "speed_index": k}


def record_path(dst: Path) -> Path:
    """Where the record of a perturbed video is written: beside it, `OUT.mp4.json`."""
    return dst.with_name(dst.name + ".json")


def perturb_window(src: Path, window: Window, task: str, g, options: dict[str, Any], *, fit: str,
                   speed_index: int = 0) -> tuple[Any, float, dict[str, Any]]:
    """Read the window's frames of `src` and perturb exactly them; returns (frames, fps, record), the
    record holding the window."""
    extra: dict[str, Any] = {}
    if task == "speed":
        options, extra = speed_options(options, speed_index)
    video = read_window(src, window)
    with naming(src):
        out, record = perturb_pixels(video.frames, task, g, fit=fit, **options)
    return out, video.fps, {**record, **extra, "window": window.as_dict()}


def perturb_video(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any], *, fit: str = "trim",
                  lossless: bool, rule: WindowRule | None = None) -> dict:
    """Perturb a clip's frame window (`rule`, the release's by default) in pixel space and write it and its
    record (both atomically); returns the record. Speed alternation: one clip is the first speed sample."""
    window = clip_window(src, rule or WindowRule(), fit=fit)
    out, fps, record = perturb_window(src, window, task, row_generator(seed, src.name), options, fit=fit)
    record = {**record, "seed": seed, "source": str(src)}
    write_video(dst, out, fps, lossless=lossless)
    atomic_write_text(record_path(dst), json.dumps(record, indent=1) + "\n")
    return record


def perturb_file(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any], *, fit: str = "trim",
                 lossless: bool = True, rule: WindowRule | None = None) -> dict:
    """One input -> its perturbed copy, by what it is: a latent artifact (.safetensors) -> a latent artifact
    (its frames were windowed when it was encoded: `rule` does not apply), a video or frame folder -> an
    MP4 of its perturbed window and the record. Returns the record."""
    if not src.exists():
        raise InputError("no such file or folder", path=src)
    if src.suffix == ".safetensors":
        if dst.suffix != ".safetensors":
            raise ConfigError("latents in, latents out: -o must end in .safetensors")
        return perturb_latent_file(src, dst, task, seed, options)
    if dst.suffix.lower() != ".mp4":
        raise ConfigError("-o must be an .mp4 file")
    return perturb_video(src, dst, task, seed, options, fit=fit, lossless=lossless, rule=rule)


def perturb_latent_file(src: Path, dst: Path, task: str, seed: int, options: dict[str, Any]) -> dict:
    art = load_artifact(src, "latents")
    g = row_generator(seed, src.name)
    options = dict(options)
    if task == "tube-shuffle":
        options["splits"] = tuple(min(s, n) for s, n in zip(options["splits"], art["latents"].shape[1:], strict=True))
    with naming(src):
        out, record = perturb_latents(art["latents"], task, g, fill=black_fill(art.meta.get("codec")), **options)
    record = {**record, "seed": seed, "source": str(src), "window": art.meta.get("window")}
    save_artifact(dst, {"latents": out}, "latents", {**art.meta, "pretext": record})
    return record


def mix(manifest_path: str, out: Path, *, seed: int, task_ratio: tuple[float, ...] = DEFAULT_TASK_RATIO,
        options: dict[str, dict[str, Any]] | None = None, fit: str = "trim",
        lossless: bool = True, rule: WindowRule | None = None,
        base_path: str | Path | None = None) -> tuple[list[dict], dict[str, int]]:
    """Turn the manifest's t2v rows into stage-0 rows (other rows pass through unchanged). Each row's
    frame window is chosen once (its own `window` if it has one, else `rule` with its `skip_frames`) and
    recorded; its pretext is made on exactly those frames. Deterministic: a row's task, window and
    perturbation depend only on the seed and the row, its speed factor (release alternation) on how many
    speed rows come before it. `base_path`: where a DiffSynth metadata file's relative paths resolve."""
    manifest = read_manifest(manifest_path, base_path=base_path)
    options = options or {t: task_options(t) for t in TASK_PREFIXES}
    rule = rule or WindowRule()
    rows, counts = [], {t: 0 for t in TASK_PREFIXES}
    for row in progress(manifest.rows, "perturb --mix"):
        if row["kind"] != "t2v":
            rows.append(row)
            continue
        new = _mix_row(row, out, seed=seed, task_ratio=task_ratio, options=options, fit=fit, lossless=lossless,
                       rule=rule, speed_index=counts["speed"])
        counts[new["pretext"]["task"]] += 1
        rows.append(new)
    write_manifest(rows, out / "manifest.jsonl")
    return rows, counts


def _mix_row(row: dict, out: Path, *, seed: int, task_ratio: tuple[float, ...], options: dict[str, dict[str, Any]],
             fit: str, lossless: bool, rule: WindowRule, speed_index: int) -> dict:
    """One t2v row -> its stage-0 row: task, window, perturbed window (see `mix`)."""
    g = row_generator(seed, row["id"])
    task = choose_task(task_ratio, g)
    target = Path(row["target"])
    window = row_window(row, [target], rule, fit=fit, k=TEMPORAL_FACTOR)  # its recorded one, else chosen here
    new = {**row, "prompt": prefixed(TASK_PREFIXES[task], row["caption"]), "window": window.as_dict()}
    if task == "none":
        new["pretext"] = {"task": "none", "prefix": "", "seed": seed}
        return new
    perturbed, fps, record = perturb_window(target, window, task, g, options[task], fit=fit, speed_index=speed_index)
    dst = out / "videos" / f"{row['id']}.{task}.mp4"
    write_video(dst, perturbed, fps, lossless=lossless)
    new.update(source=str(dst), pretext={**record, "seed": seed})
    return new
