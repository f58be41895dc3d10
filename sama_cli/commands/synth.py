"""`sama synth OUTDIR`: generate the toy world (videos, images, scene records, manifest)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import typer

from sama_cli.core.console import err, progress


def synthesize(out: Path, *, clips: int, images: int, t2v: int, seed: int, size: int, frames: int, fps: float,
               heldout_frac: float, test_frac: float = 0.15, kind_weights: dict[str, int] | None = None,
               grid: int = 1) -> dict:
    """Library entry point: write the toy world under `out` and return a summary."""
    from sama_cli.core.errors import ConfigError
    from sama_cli.io.artifacts import atomic_write_text
    from sama_cli.io.manifest import write_manifest
    from sama_cli.io.video import write_image, write_video
    from sama_cli.toy.world import generate, render

    if frames < 1 or (frames - 1) % 4:
        raise ConfigError(f"--frames must be 4k+1 (5, 9, 13, ...), not {frames}")
    if size < 16 or size % 8:
        raise ConfigError(f"--size must be a multiple of 8 and at least 16, not {size}")
    if grid not in (1, 2, 4):
        raise ConfigError(f"--grid must be 1, 2 or 4 pixels, not {grid}")
    try:
        samples = generate(clips, images, t2v, seed=seed, size=size, frames=frames, heldout_frac=heldout_frac,
                           test_frac=test_frac, kind_weights=kind_weights, grid=grid)
    except ValueError as e:
        raise ConfigError(f"--kind-weights: {e}" if "kind" in str(e) else f"--grid: {e}") from None
    rows = []
    for s in progress(samples, "synth"):
        record = s.record(fps)
        scene_path = out / "scenes" / f"{s.id}.json"
        atomic_write_text(scene_path, json.dumps(record, indent=1))
        row = {"id": s.id, "kind": s.kind, "split": s.split, "scene": str(scene_path)}
        if s.kind == "t2v":
            target = out / "videos" / f"{s.id}.mp4"
            write_video(target, render(s.target), fps, lossless=True)
            row.update(target=str(target), caption=record["caption"])
        elif s.kind == "video_edit":
            src, tgt = out / "videos" / f"{s.id}_source.mp4", out / "videos" / f"{s.id}_target.mp4"
            write_video(src, render(s.source), fps, lossless=True)
            write_video(tgt, render(s.target), fps, lossless=True)
            row.update(source=str(src), target=str(tgt), instruction=s.edit.instruction, edit=s.edit.kind)
        else:
            src, tgt = out / "images" / f"{s.id}_source.png", out / "images" / f"{s.id}_target.png"
            write_image(src, render(s.source)[0])
            write_image(tgt, render(s.target)[0])
            row.update(source=str(src), target=str(tgt), instruction=s.edit.instruction, edit=s.edit.kind)
        rows.append(row)
    # how this world was made: a model trained on it carries this in its card, and studies of that model
    # synthesize fresh clips of the same world (the same lattice, size and length)
    world = {"seed": seed, "size": size, "frames": frames, "fps": fps, "grid": grid, "heldout_frac": heldout_frac,
             "test_frac": test_frac, "kind_weights": kind_weights or {}, "clips": clips, "images": images, "t2v": t2v}
    atomic_write_text(out / "world.json", json.dumps(world, indent=1))
    write_manifest(rows, out / "manifest.jsonl")
    return {"out": str(out), "manifest": str(out / "manifest.jsonl"), "rows": len(rows),
            "kinds": dict(Counter(r["kind"] for r in rows)), "splits": dict(Counter(r["split"] for r in rows)),
            "edits": dict(Counter(r.get("edit") for r in rows if r.get("edit")))}


def synth(
    out: Path = typer.Argument(..., help="Output folder (videos/, images/, scenes/, manifest.jsonl)."),
    clips: int = typer.Option(24, "--clips", help="Video edit pairs."),
    images: int = typer.Option(8, "--images", help="One-frame image edit pairs."),
    t2v: int = typer.Option(16, "--t2v", help="Text-to-video clips (for stage-0 pretexts)."),
    seed: int = typer.Option(0, "--seed", help="Everything is a function of this seed."),
    size: int = typer.Option(32, "--size", help="Frame side in pixels (square frames)."),
    frames: int = typer.Option(9, "--frames", help="Frames per clip (4k+1)."),
    fps: float = typer.Option(8.0, "--fps", help="Frame rate of the written videos."),
    heldout_frac: float = typer.Option(0.2, "--heldout-frac", help="Share of edits held out (unseen combos)."),
    test_frac: float = typer.Option(0.15, "--test-frac", help="Share of the other edits in the `test` split "
                                    "(clips never trained on, seen combos)."),
    kind_weights: str = typer.Option("", "--kind-weights", help="How often each edit kind comes round, e.g. "
                                     "recolour=2,add=2 (the others 1; 0 leaves a kind out). Default: all equal."),
    grid: int = typer.Option(1, "--grid", help="Objects' centres and per-frame steps on this pixel lattice (1, 2 "
                             "or 4; 4 = the 4x4 cell of a pixel:s4 token)."),
    stdout: bool = typer.Option(False, "--stdout", help="Also write the manifest's rows to stdout (absolute "
                                "paths), for pipes: sama synth toy --stdout | sama encode - -o lat."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Generate the toy world: synthetic scenes with exact ground truth for every edit."""
    from sama_cli.core.errors import ConfigError
    from sama_cli.io.manifest import dumps_rows, read_manifest

    if stdout and as_json:
        raise ConfigError("--stdout and --json both write to stdout: choose one")
    weights = {}
    for part in filter(None, (p.strip() for p in kind_weights.split(","))):
        kind, _, value = part.partition("=")
        if not value.strip().isdigit():
            raise ConfigError(f"--kind-weights: {part!r} is not KIND=N (N a whole number)")
        weights[kind.strip()] = int(value)
    t0 = time.perf_counter()
    summary = synthesize(out, clips=clips, images=images, t2v=t2v, seed=seed, size=size, frames=frames, fps=fps,
                         heldout_frac=heldout_frac, test_frac=test_frac, kind_weights=weights, grid=grid)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    err.print(f"[bold]sama synth[/bold]: {summary['rows']} rows {summary['kinds']}, splits {summary['splits']}, "
              f"edits {summary['edits']} in {summary['seconds']}s -> {summary['manifest']}")
    if stdout:
        sys.stdout.write(dumps_rows(read_manifest(summary["manifest"]).rows, None))
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


def register(app: typer.Typer) -> None:
    app.command("synth", no_args_is_help=True)(synth)
