"""`sama edit IN INSTRUCTION -o OUT` and `sama edit --manifest FILE -o OUTDIR`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from sama_cli.core.console import err, info, progress
from sama_cli.core.errors import EXIT_FAILED, ConfigError, InputError, SamaError
from sama_cli.edit.loading import load_editor
from sama_cli.edit.sampler import SCHEDULERS, SamplingConfig
from sama_cli.io.manifest import read_manifest, write_manifest


def _parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 480x832 (height x width), not {size!r}") from None
    return h, w


def edit(
    src: Path | None = typer.Argument(None, help="Source video (MP4/MOV/MKV/WebM/GIF) or image.", show_default=False),
    instruction: str | None = typer.Argument(None, help='The edit, e.g. "make it winter".', show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="Output MP4 (single edit) or folder (--manifest)."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Batch mode: a JSONL manifest of edit rows "
                                         "(id, source, instruction); writes OUT/<id>.mp4, skipping finished ones."),
    split: str | None = typer.Option(None, "--split", help="Batch mode: only rows of these splits (e.g. test,heldout)."),
    limit: int | None = typer.Option(None, "--limit", help="Batch mode: at most this many rows."),
    model: str | None = typer.Option(None, "--model", help="A sama checkpoint, or SAMA release weights "
                                     "(release layout; then --base points at Wan2.1-T2V-14B). Default: the "
                                     "embedded toy-world model."),
    base: str | None = typer.Option(None, "--base", help="Wan2.1-T2V folder: diffusers format or original files."),
    vae: str | None = typer.Option(None, "--vae", help="VAE spec (default: from the checkpoint or --base)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="UMT5 folder, or Wan's "
                                        "models_t5_umt5-xxl-enc-bf16.pth with google/umt5-xxl/ beside it "
                                        "(default: from --base)."),
    steps: int | None = typer.Option(None, help="Denoising steps [release: 50; a checkpoint may record its own]."),
    guidance: float | None = typer.Option(None, help="Classifier-free guidance scale [release: 5]."),
    source_guidance: float | None = typer.Option(None, help="Dual guidance: source scale s_I (with --text-guidance)."),
    text_guidance: float | None = typer.Option(None, help="Dual guidance: text scale s_T."),
    shift: float | None = typer.Option(None, help="Flow-matching sigma shift [release: 5]."),
    scheduler: str = typer.Option("euler", help=f"Sampler: {' | '.join(SCHEDULERS)} (euler is the release's)."),
    seed: int = typer.Option(1, help="Random seed (release default 1)."),
    negative_prompt: str = typer.Option("[Video edit]", help="Negative prompt."),
    null_negative: bool = typer.Option(False, "--null-negative", help="Guide against an all-zero text context (what "
                                       "training with data.drop_text drops to) instead of the negative prompt."),
    prompt_prefix: str = typer.Option("[Video edit] ", help="Put in front of the instruction."),
    size: str | None = typer.Option(None, help="Working size HxW (multiples of 32); default: the ~480x832 bucket "
                                    "of the clip's aspect ratio (release), or the size the model records."),
    bucket: bool | None = typer.Option(None, "--bucket/--native", help="--bucket: the ~480x832 bucket even when "
                                       "the model records a size; --native: the clip's own size if its sides "
                                       "are multiples of 32 and it is no larger."),
    max_frames: int = typer.Option(81, help="Read at most this many frames."),
    resize: str = typer.Option("crop", help="Fit to the working size by crop | letterbox | stretch."),
    anchors: int | None = typer.Option(None, "--anchors", help="Anchor frames (semantic tokens = 65 x N)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not copy the source's audio."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Also write OUT.sbs.mp4: source | edit."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16."),
    offload: bool = typer.Option(False, "--offload", help="Keep each model on the CPU until its stage runs."),
    text_encoder_cpu: bool = typer.Option(False, "--text-encoder-cpu", help="Run the text encoder on the CPU."),
    tiling: bool = typer.Option(False, "--tiling", help="VAE tiling for large frames."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Edit a video with an instruction: `sama edit in.mp4 "make it winter" -o out.mp4`."""
    from sama_cli.edit.editor import EditSettings, edit_file

    if manifest is None and (src is None or instruction is None):
        raise ConfigError("give IN and INSTRUCTION, or --manifest FILE for batch mode")
    if manifest is not None and src is not None:
        raise ConfigError("give either IN INSTRUCTION or --manifest, not both")
    if manifest is None and src is not None and not src.exists():
        raise InputError("no such file", path=src)
    if manifest is None and out.suffix.lower() != ".mp4":
        raise ConfigError(f"-o {out}: the output must be an .mp4 file")
    sampling = SamplingConfig(steps=50 if steps is None else steps, shift=5.0 if shift is None else shift,
                              guidance=5.0 if guidance is None else guidance, source_guidance=source_guidance,
                              text_guidance=text_guidance, scheduler=scheduler, seed=seed)
    sampling.validate()
    settings = EditSettings(prompt_prefix=prompt_prefix, negative_prompt=negative_prompt, null_negative=null_negative,
                            max_frames=max_frames,
                            size=_parse_size(size), bucket=bucket is not False, resize=resize, anchor_frames=anchors)
    settings.validate()
    rows = read_manifest(manifest).rows if manifest is not None else None
    if rows is not None:
        wanted = None if split is None else set(split.split(","))
        rows = [r for r in rows if r["kind"] != "t2v" and (wanted is None or r.get("split", "train") in wanted)][:limit]
    editor = load_editor(model=model, base=base, vae=vae, text_encoder=text_encoder, device=device, dtype=dtype,
                         offload=offload, text_encoder_cpu=text_encoder_cpu, tiling=tiling)

    if settings.size is None and bucket is None and getattr(editor, "working_size", None):
        settings.size = editor.working_size  # a model that knows one size (the toy model) works at it
    # a checkpoint may record the sampler it was made for (the toy model: 20 steps, no guidance); flags win
    recorded = getattr(editor, "sampling", None) or {}
    for key, given in (("steps", steps), ("guidance", guidance), ("shift", shift)):
        if given is None and key in recorded:
            setattr(sampling, key, type(getattr(sampling, key))(recorded[key]))

    def one(source: Path, text: str, target: Path):
        sbs = target.with_suffix(".sbs.mp4") if side_by_side else None
        bar = iter(progress(range(sampling.steps), f"denoising {source.name}"))
        return edit_file(editor, source, text, target, sampling, settings, audio=not no_audio, side_by_side=sbs,
                         on_step=lambda i, n: next(bar, None))

    if rows is None:
        report = one(src, instruction, out)
        summary = {"output": str(out), **report.as_dict()}
        _print_summary([summary], [], 0)
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        return

    out.mkdir(parents=True, exist_ok=True)
    done, failed, skipped, results = [], [], 0, []
    for row in rows:
        if row["kind"] == "t2v":
            continue
        target = out / f"{row['id']}.mp4"
        results.append({**row, "output": str(target)})
        if target.exists():
            skipped += 1
            continue
        t0 = time.perf_counter()
        try:
            report = one(Path(row["source"]), row["instruction"], target)
            done.append({"id": row["id"], "output": str(target), **report.as_dict()})
        except Exception as e:  # one bad row (unreadable file, out of memory, ...) never stops the batch
            message = e.message if isinstance(e, SamaError) else f"{type(e).__name__}: {e}"
            failed.append({"id": row["id"], "error": message})
            err.print(f"[red]failed[/red] {row['id']}: {escape(message)} ({time.perf_counter() - t0:.1f}s)")
    write_manifest([r for r in results if Path(r["output"]).exists()], out / "manifest.jsonl")
    _print_summary(done, failed, skipped)
    if as_json:
        sys.stdout.write(json.dumps({"done": done, "failed": failed, "skipped": skipped}) + "\n")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(done: list[dict], failed: list[dict], skipped: int) -> None:
    from rich.table import Table

    table = Table(title="sama edit", show_edge=False)
    for col in ("output", "frames", "fps", "size", "s/step", "total s", "peak MB"):
        table.add_column(col)
    for d in done:
        table.add_row(Path(d["output"]).name, str(d["frames"]), f"{d['fps']:g}", "x".join(map(str, d["size"])),
                      f"{d['seconds_per_step']:.3f}", f"{d['seconds'].get('total', 0):.1f}", f"{d['peak_memory_mb']:.0f}")
    err.print(table)
    if skipped:
        info(f"skipped {skipped} finished outputs")
    for f in failed:
        err.print(f"[red]failed[/red] {f['id']}: {f['error']}")


def register(app: typer.Typer) -> None:
    app.command("edit", no_args_is_help=True)(edit)
