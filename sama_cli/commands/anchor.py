"""`sama anchor INPUT... -o OUTDIR`: SigLIP semantic anchors of target videos/images."""

from __future__ import annotations

from pathlib import Path

import typer

from sama_cli.commands import report_batch
from sama_cli.core.console import warn
from sama_cli.core.errors import ConfigError


def anchor(
    inputs: list[str] = typer.Argument(..., help="Target videos/images, folders, or one manifest (- for stdin): "
                                       "sama JSONL, or DiffSynth metadata .csv/.json/.jsonl (video, source_video, "
                                       "prompt)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (anchors/, manifest.jsonl)."),
    base_path: Path | None = typer.Option(None, "--base-path", help="The folder the manifest's relative paths "
                                          "resolve against (DiffSynth's --dataset_base_path). Default: the "
                                          "manifest file's folder."),
    encoder: str = typer.Option("tiny", "--encoder", help="A SigLIP folder (so400m-patch14-384 is the "
                                "reference) or tiny (random weights: tests and the toy world only)."),
    frames: int = typer.Option(1, "--frames", help="Anchor frames N per target (65 tokens each)."),
    select: str = typer.Option("first", "--select", help="first (release) | uniform (paper)."),
    grid: int = typer.Option(8, "--grid", help="Local tokens per frame = grid x grid (8 -> 64)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo cached outputs."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    stdout: bool = typer.Option(False, "--stdout", help="Also write the output manifest's rows to stdout."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Encode anchor frames with SigLIP and pool them to 64 local + 1 global tokens each."""
    import torch

    from sama_cli.core.distributed import setup, teardown
    from sama_cli.core.runtime import resolve_device
    from sama_cli.data.anchors import SELECTIONS, anchor_inputs
    from sama_cli.io.manifest import is_manifest_path
    from sama_cli.model.siglip import load_semantic_encoder

    if select not in SELECTIONS:
        raise ConfigError(f"--select must be one of {', '.join(SELECTIONS)}, not {select!r}")
    if frames < 1 or grid < 1:
        raise ConfigError("--frames and --grid must be at least 1")
    if stdout and as_json:
        raise ConfigError("--stdout and --json both write to stdout: choose one")
    if base_path is not None and not (len(inputs) == 1 and is_manifest_path(inputs[0])):
        raise ConfigError("--base-path goes with one manifest input")
    d = setup(resolve_device(device))  # under torchrun: this rank's GPU and its share of the inputs
    dev = d.device
    if encoder == "tiny":
        warn("--encoder tiny is a small random SigLIP: its anchors are only for tests and the toy world "
             "(give a SigLIP folder, e.g. so400m-patch14-384, for real data)")
    enc = load_semantic_encoder(encoder, device=dev, dtype=torch.float32 if dev.type == "cpu" else torch.bfloat16,
                                local_grid=grid)
    summary, rows = anchor_inputs(inputs, out, enc, count=frames, how=select, overwrite=overwrite, dist=d,
                                  base_path=base_path)
    teardown()
    s = summary.as_dict()
    report_batch(f"[bold]sama anchor[/bold]: {s['files']} anchored, {s['skipped']} cached, {len(s['failed'])} "
                 f"failed in {s['seconds']:.1f}s", s, rows, stdout=stdout, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("anchor", no_args_is_help=True)(anchor)
