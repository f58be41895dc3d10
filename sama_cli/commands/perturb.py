"""`sama perturb`: motion-alignment pretexts on one clip / latent artifact, or `--mix` over a manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from sama_cli.core.console import err
from sama_cli.core.errors import ConfigError


def _floats(text: str, n: int | None, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, not {text!r}") from None
    if n is not None and len(values) != n:
        raise ConfigError(f"{name} needs {n} numbers, not {len(values)}")
    return values


def perturb(
    src: Path | None = typer.Argument(None, help="A video, a frame folder, or a latent .safetensors from encode.",
                                      show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="Output MP4 / .safetensors, or folder with --mix."),
    task: str | None = typer.Option(None, "--task", help="cube-inpaint | speed | tube-shuffle."),
    mix_manifest: str | None = typer.Option(None, "--mix", help="Stage-0 mix: perturb a manifest's t2v rows (our "
                                            ".jsonl or DiffSynth metadata .csv/.json/.jsonl)."),
    base_path: Path | None = typer.Option(None, "--base-path", help="The folder a manifest's relative paths "
                                          "resolve against (DiffSynth's --dataset_base_path). Default: the "
                                          "manifest file's folder."),
    seed: int = typer.Option(0, "--seed", help="Seed (per clip / per row id)."),
    task_ratio: str = typer.Option("1,2,3,4", "--task-ratio", help="none:inpaint:speed:shuffle for --mix."),
    ratio: float = typer.Option(0.3, "--ratio", help="cube-inpaint: share of the clip blacked out."),
    mask_mode: str = typer.Option("temporal", "--mask-mode", help="cube-inpaint: temporal (release) | cube."),
    factors: str = typer.Option("0.5,2.0", "--factors", help="speed: the factors (alternated, or drawn)."),
    speed_order: str = typer.Option("alternate", "--speed-order", help="speed: alternate (release: the 1st, 3rd, "
                                    "... speed row 2x, the others 0.5x; one clip alone 2x) | random (a draw "
                                    "per clip)."),
    max_frames: int = typer.Option(81, "--max-frames", help="Frame window: the clip's first N frames (release 81)."),
    stride: int = typer.Option(1, "--stride", help="Frame window: every Nth frame (release 1)."),
    skip_frames: int = typer.Option(0, "--skip-frames", help="Frame window: drop the clip's first N frames, for "
                                    "rows without their own skip_frames (OpenVE-3M: 4)."),
    fit: str = typer.Option("trim", "--fit", help="Pixel outputs reach 4k+1 frames by trim (release) | pad "
                            "(repeat the last frame); every task."),
    splits: str = typer.Option("4,4,4", "--splits", help="tube-shuffle: T,H,W splits (release 4,4,4; paper 2,2,2)."),
    lossless: bool = typer.Option(True, "--lossless/--lossy", help="Write perturbed videos losslessly."),
    stdout: bool = typer.Option(False, "--stdout", help="--mix: also write the output manifest's rows to stdout "
                                "(absolute paths), for pipes."),
    as_json: bool = typer.Option(False, "--json", help="Print the record / summary as JSON on stdout."),
) -> None:
    """Apply a motion-alignment pretext (docs/sama.md §5) to a clip's frame window (chosen once, recorded);
    records task, parameters, seed, caption prefix and window."""
    from sama_cli.data.pretext import TASKS
    from sama_cli.data.pretext_files import perturb_file, record_path

    if stdout and as_json:
        raise ConfigError("--stdout and --json both write to stdout: choose one")
    opts = _task_options(fit=fit, ratio=ratio, mask_mode=mask_mode, factors=factors, splits=splits,
                         speed_order=speed_order)
    rule = _window_rule(max_frames, stride, skip_frames)
    if mix_manifest is not None:
        if src is not None or task is not None:
            raise ConfigError("--mix takes a manifest and an output folder; leave out IN and --task")
        _mix(mix_manifest, out, seed=seed, task_ratio=task_ratio, opts=opts, fit=fit, lossless=lossless,
             stdout=stdout, as_json=as_json, rule=rule, base_path=base_path)
        return
    if src is None or task is None:
        raise ConfigError("give IN and --task (or --mix MANIFEST)")
    if stdout:
        raise ConfigError("--stdout writes the rows of --mix's manifest; for one clip, --json prints the record")
    if task not in TASKS or task == "none":
        raise ConfigError(f"--task must be cube-inpaint, speed or tube-shuffle, not {task!r}")
    record = perturb_file(src, out, task, seed, opts[task], fit=fit, lossless=lossless, rule=rule)
    frames = f", {record['frames_in']} -> {record['frames_out']} frames" if "frames_out" in record else ""
    if record.get("space") == "pixel" and record.get("window"):
        w = record["window"]
        frames += f" of its window: frame {w['start']} on, every {w['stride']}, of {w.get('frames_total')}"
    where = f", record {record_path(out)}" if record.get("space") == "pixel" else ""
    err.print(f"[bold]sama perturb[/bold] {task}: {out} ({record.get('space')}{frames}, prefix {record['prefix']!r}"
              f"{where})")
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")


def _window_rule(max_frames: int, stride: int, skip_frames: int):
    """The frame-window flags as a WindowRule (checked)."""
    from sama_cli.io.frames import WindowRule

    try:
        return WindowRule(max_frames, stride, skip_frames)
    except ValueError as e:
        raise ConfigError(f"--max-frames/--stride/--skip-frames: {e}") from None


def _task_options(*, fit: str, ratio: float, mask_mode: str, factors: str, splits: str,
                  speed_order: str = "alternate") -> dict[str, dict]:
    """Check the per-task flags (and --fit, which every task shares); each task's options, by task."""
    from sama_cli.data.pretext import SPEED_ORDERS, TASKS
    from sama_cli.data.pretext_files import task_options
    from sama_cli.io.frames import FITS

    if fit not in FITS:
        raise ConfigError(f"--fit must be one of {', '.join(FITS)}, not {fit!r}")
    if mask_mode not in ("temporal", "cube"):
        raise ConfigError(f"--mask-mode must be temporal or cube, not {mask_mode!r}")
    speed_factors = _floats(factors, None, "--factors")
    if any(f <= 0 for f in speed_factors):
        raise ConfigError(f"--factors must be positive, not {factors!r}")
    if speed_order not in SPEED_ORDERS:
        raise ConfigError(f"--speed-order must be one of {', '.join(SPEED_ORDERS)}, not {speed_order!r}")
    if speed_order == "alternate" and len(speed_factors) > 2:
        raise ConfigError(f"--speed-order alternate takes one or two --factors (the release alternates two), not "
                          f"{factors!r}; use --speed-order random to draw among more")
    split_t = tuple(int(v) for v in _floats(splits, 3, "--splits"))
    if any(s < 1 for s in split_t):
        raise ConfigError(f"--splits must be at least 1 each, not {splits!r}")
    return {t: task_options(t, ratio=ratio, mask_mode=mask_mode, factors=speed_factors, splits=split_t,
                            speed_order=speed_order) for t in TASKS}


def _mix(manifest: str, out: Path, *, seed: int, task_ratio: str, opts: dict[str, dict], fit: str, lossless: bool,
         stdout: bool, as_json: bool, rule=None, base_path: Path | None = None) -> None:
    """`--mix`: the stage-0 manifest from a manifest's t2v rows, and its summary."""
    from sama_cli.data.pretext_files import mix
    from sama_cli.io.manifest import dumps_rows

    rows, counts = mix(manifest, out, seed=seed, task_ratio=_floats(task_ratio, 4, "--task-ratio"),
                       options=opts, fit=fit, lossless=lossless, rule=rule, base_path=base_path)
    err.print(f"[bold]sama perturb --mix[/bold]: {len(rows)} rows, tasks {counts} -> {out / 'manifest.jsonl'}")
    if stdout:
        sys.stdout.write(dumps_rows(rows, None))
    if as_json:
        sys.stdout.write(json.dumps({"rows": len(rows), "tasks": counts, "manifest": str(out / "manifest.jsonl")})
                         + "\n")


def register(app: typer.Typer) -> None:
    app.command("perturb", no_args_is_help=True)(perturb)
