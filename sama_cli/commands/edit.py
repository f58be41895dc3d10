"""`sama edit IN INSTRUCTION -o OUT` and `sama edit --manifest FILE -o OUTDIR`: parse and check the options,
call the library (sama_cli/edit/editor.py: `EditRequest.resolve`, `edit_single`, `edit_batch`), print the
summary. Nothing heavy at import (torch and the model code load inside the command), so `sama edit --help`
answers at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from sama_cli.core.console import err, info
from sama_cli.core.errors import EXIT_FAILED, ConfigError, InputError
from sama_cli.edit.choices import SCHEDULERS


def _parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 480x832 (height x width), not {size!r}") from None
    return h, w


def _check_inputs(src: Path | None, instruction: str | None, out: Path | None, manifest: Path | None) -> None:
    if out is None:
        raise ConfigError("-o/--out is required: the output .mp4 (or folder with --manifest)")
    if manifest is None and (src is None or instruction is None):
        raise ConfigError("give IN and INSTRUCTION, or --manifest FILE for batch mode")
    if manifest is not None and src is not None:
        raise ConfigError("give either IN INSTRUCTION or --manifest, not both")
    if manifest is None and src is not None and not src.exists():
        raise InputError("no such file", path=src)
    if manifest is None and out.suffix.lower() != ".mp4":
        raise ConfigError(f"-o {out}: the output must be an .mp4 file")


def edit(
    src: Path | None = typer.Argument(None, help="Source video (MP4/MOV/MKV/WebM/GIF) or image.", show_default=False),
    instruction: str | None = typer.Argument(None, help='The edit, e.g. "make it winter".', show_default=False),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output MP4 (single edit) or folder (--manifest).",
                                    show_default=False),
    manifest: Path | None = typer.Option(None, "--manifest", help="Batch mode: a manifest of edit rows (sama "
                                         "JSONL: id, source, instruction; or DiffSynth metadata .csv/.json/.jsonl: "
                                         "video, source_video, prompt); writes OUT/<id>.mp4, skipping finished ones."),
    base_path: Path | None = typer.Option(None, "--base-path", help="Batch mode: the folder the manifest's relative "
                                          "paths resolve against (DiffSynth's --dataset_base_path). Default: the "
                                          "manifest file's folder."),
    split: str | None = typer.Option(None, "--split", help="Batch mode: only rows of these splits (e.g. test,heldout)."),
    kind: str | None = typer.Option(None, "--kind", help="Batch mode: only rows of these kinds (video_edit, "
                                    "image_edit; default both)."),
    limit: int | None = typer.Option(None, "--limit", help="Batch mode: at most this many rows."),
    clip_batch: int = typer.Option(1, "--clip-batch", help="Batch mode: up to N consecutive clips of the same "
                                   "frames and size denoised together, each with its own instruction and its "
                                   "seed's noise (the same edits within float rounding; faster when the model "
                                   "leaves the device idle, e.g. a small model or a large GPU)."),
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
    timestep_dtype: str = typer.Option("model", "--timestep-dtype", help="model: the DiT sees each timestep "
                                       "rounded to the model's dtype (bf16 on GPU), as the release does; fp32: "
                                       "unrounded. Either way the sampler steps on the exact sigmas."),
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
    max_frames: int | None = typer.Option(None, "--max-frames", help="Edit only the first N frames (a warning says "
                                          "how many are left out). Default: every frame."),
    window: int | None = typer.Option(None, "--window", help="Frames the model sees at once; longer clips are "
                                      "denoised in overlapping windows blended at every step. Default: the "
                                      "model's trained length (81 for Wan; the toy model's own)."),
    overlap: int | None = typer.Option(None, "--overlap", help="Frames shared by neighbouring windows. Default: "
                                       "about a third of the window (24 of 81), a multiple of the codec's 4."),
    window_batch: int = typer.Option(1, "--window-batch", help="Windows through the model at once (faster when "
                                     "memory allows; peak memory grows with it)."),
    semantic_windows: str = typer.Option("shared", "--semantic-windows", help="shared: one semantic anchor for "
                                         "the whole clip (the windows' velocities averaged); per-window: each "
                                         "window denoises its own."),
    resize: str = typer.Option("crop", help="Fit to the working size by crop | letterbox | stretch."),
    output_size: str = typer.Option("working", "--output-size", help="working: write at the working size (the "
                                    "release's); source: back at the source's size (crop: the cropped-away "
                                    "borders keep the source's pixels)."),
    anchors: int | None = typer.Option(None, "--anchors", help="Anchor frames (semantic tokens = 65 x N)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not copy the source's audio."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Also write OUT.sbs.mp4: source | edit."),
    lossless: bool = typer.Option(False, "--lossless", help="Write exact RGB H.264 (qp 0): decodes to the edited "
                                  "frames bit for bit, for scoring; larger files, not every player shows it."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16."),
    batch_cfg: bool | None = typer.Option(None, "--batch-cfg/--no-batch-cfg", help="Run the guidance branches "
                                          "as one batch (same edit within float rounding); --no-batch-cfg: one "
                                          "forward per branch, less activation memory. Default: batched on a GPU, "
                                          "not on the CPU (no faster there).", show_default=False),
    cache: str | None = typer.Option(None, "--cache", metavar="NAME[:VALUE]", help="Step cache (diffusers hooks): "
                                     "fbc[:threshold] (First Block Cache: skip the other blocks while the first "
                                     "one's output barely changes) or taylorseer[:interval] (full forwards every "
                                     "interval steps, Taylor predictions between). Faster, not exact: see "
                                     "docs/caches.md for the accuracy each costs on the toy world."),
    offload: str = typer.Option("none", "--offload", metavar="none|model|group", help="model: keep text encoder, DiT "
                                "and VAE on the CPU, each moved to the GPU for its stage; group: the same for text "
                                "encoder and VAE, and the DiT's blocks streamed to the GPU one at a time."),
    fp8: bool = typer.Option(False, "--fp8", help="Store the DiT's weights in float8 (half of bf16), computing in "
                             "--dtype: small error (docs/bench.md), half the weight memory."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile each DiT block (same edit; the first "
                                  "edit pays the compile time)."),
    text_encoder_cpu: bool = typer.Option(False, "--text-encoder-cpu", help="Run the text encoder on the CPU."),
    tiling: bool = typer.Option(False, "--tiling", help="VAE tiling for large frames."),
    lora: list[str] = typer.Option([], "--lora", metavar="FILE[:SCALE]", help="A LoRA file (sama train with "
                                   "`lora:`, or any diffusers Wan LoRA) folded into the DiT at SCALE (default 1); "
                                   "repeat for several."),
    parallel: str = typer.Option("auto", "--parallel", metavar="auto|sequence|guidance", help="Under torchrun "
                                 "(N processes, one edit): guidance = the guidance branches on different ranks; "
                                 "sequence = the token sequence split across ranks (Ulysses attention); auto = "
                                 "guidance over 2 rank groups when the edit has guidance and N is even, the "
                                 "sequence split within them."),
    plan: bool = typer.Option(False, "--plan", help="Read no weights and edit nothing: print the tokens, FLOPs and "
                              "peak GPU memory per stage this edit would take (IN may be a clip, or give "
                              "--plan-frames/--size; --model may be a preset such as wan2.1-t2v-14b; with "
                              "--clip-batch N, for N such clips denoised together; FLOPs stay a clip's)."),
    plan_frames: int | None = typer.Option(None, "--plan-frames", help="--plan without a clip: its frame count."),
    plan_ranks: int = typer.Option(1, "--plan-ranks", help="--plan: for this many torchrun processes (with "
                                   "--parallel); memory is then per rank."),
    gpu_memory: float | None = typer.Option(None, "--gpu-memory", metavar="GB", help="--plan: say whether the edit "
                                            "fits a GPU of this many GB."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Edit a video with an instruction: `sama edit in.mp4 "make it winter" -o out.mp4`."""
    from sama_cli.edit.editor import EditRequest, edit_batch, edit_single, manifest_rows
    from sama_cli.edit.loading import load_editor
    from sama_cli.model.lora import parse_lora_arg

    if not plan:
        _check_inputs(src, instruction, out, manifest)
    request = EditRequest(steps=steps, guidance=guidance, shift=shift, size=_parse_size(size), bucket=bucket,
                          source_guidance=source_guidance, text_guidance=text_guidance, scheduler=scheduler,
                          timestep_dtype=timestep_dtype,
                          seed=seed, prompt_prefix=prompt_prefix, negative_prompt=negative_prompt,
                          null_negative=null_negative, max_frames=max_frames, resize=resize, anchor_frames=anchors,
                          window=window, overlap=overlap, window_batch=window_batch, clip_batch=clip_batch,
                          semantic_windows=semantic_windows,
                          batch_guidance=batch_cfg, cache=cache,
                          output_size=output_size)
    request.validate()  # before the model: loading one can take minutes
    if plan:
        _plan(src, plan_frames, model, base, request, dtype=dtype, fp8=fp8, offload=offload, tiling=tiling,
              gpu_memory=gpu_memory, as_json=as_json, ranks=plan_ranks, parallel=parallel)
        return
    if base_path is not None and manifest is None:
        raise ConfigError("--base-path goes with --manifest")
    if kind is not None and manifest is None:
        raise ConfigError("--kind goes with --manifest")
    if clip_batch != 1 and manifest is None:
        raise ConfigError("--clip-batch goes with --manifest")
    rows, bad_rows = (manifest_rows(manifest, split, limit, base_path=base_path, kind=kind)
                      if manifest is not None else (None, []))
    dist = _join_ranks(device)
    editor = load_editor(model=model, base=base, vae=vae, text_encoder=text_encoder,
                         device=device if dist is None else str(dist.device), dtype=dtype,
                         offload=offload, text_encoder_cpu=text_encoder_cpu, tiling=tiling, fp8=fp8,
                         compile_blocks=compile_, loras=[parse_lora_arg(x) for x in lora])
    sampling, settings = request.resolve(editor.defaults)  # flags, else what the checkpoint records, else release
    if dist is not None:
        from sama_cli.edit.multigpu import ParallelEdit, choose_layout, guidance_branches

        layout = choose_layout(dist.world, guidance_branches(sampling), editor.model.config.num_heads, parallel)
        editor.set_parallel(ParallelEdit(layout, dist.rank))
        info(f"{dist.world} ranks: {layout.describe()}")
    try:
        if rows is None:
            report = edit_single(editor, src, instruction, out, sampling, settings, audio=not no_audio,
                                 side_by_side=side_by_side, lossless=lossless)
            summary = {"output": str(out), **report.as_dict(), "loras": editor.loras}
            if editor.writes:
                _print_summary([summary], [], 0)
                if as_json:
                    sys.stdout.write(json.dumps(summary) + "\n")
            return
        batch = edit_batch(editor, rows, out, sampling, settings, audio=not no_audio, side_by_side=side_by_side,
                           lossless=lossless)
    finally:
        if dist is not None:
            from sama_cli.core.distributed import teardown

            teardown()
    batch.failed[:0] = bad_rows  # rows the manifest could not give (no video, missing file): failed, not fatal
    if editor.writes:
        from sama_cli.eval.gallery import edit_page

        _print_summary(batch.done, batch.failed, batch.skipped)
        page = edit_page(out, rows, batch.done, batch.failed)
        info(f"page: {page} (source | edit, instruction, timings)")
        if as_json:
            sys.stdout.write(json.dumps({**batch.as_dict(), "loras": editor.loras, "page": str(page)}) + "\n")
    if batch.failed:
        raise typer.Exit(EXIT_FAILED)


def _join_ranks(device: str):
    """Under torchrun (WORLD_SIZE > 1): join the process group, each rank on its own GPU (gloo on CPUs)."""
    from sama_cli.core import distributed

    if distributed.world_size() <= 1:
        return None
    from sama_cli.core.runtime import resolve_device

    return distributed.setup(resolve_device(device))


def _plan(src: Path | None, frames: int | None, model: str | None, base: str | None, request, *, dtype: str,
          fp8: bool, offload: str, tiling: bool, gpu_memory: float | None, as_json: bool, ranks: int = 1,
          parallel: str = "auto") -> None:
    """`sama edit --plan`: the clip's working size and frames as the editor would choose them, costed for
    `model` on a GPU (bf16 unless --dtype says otherwise)."""
    import torch

    from sama_cli.edit.editor import working_size
    from sama_cli.edit.plan import PlanRequest, make_plan, parts_for, plan_summary, plan_table
    from sama_cli.io.video import probe

    parts = parts_for(model, base)
    sampling, settings = request.resolve()
    if src is not None:
        info_ = probe(src)
        n, h, w = info_.frames, info_.height, info_.width
    elif frames is not None and request.size is not None:
        n, (h, w) = frames, request.size
    else:
        raise ConfigError("--plan needs a clip (IN), or --plan-frames N with --size HxW")
    if settings.max_frames is not None:
        n = min(n, settings.max_frames)
    if parts.name == "toy" or parts.window_frames != 81:  # a model that knows one size works at it
        size = request.size or (32, 32)
    else:
        size = working_size(h, w, settings)
    dt = {"auto": torch.bfloat16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}.get(dtype)
    if dt is None:
        raise ConfigError(f"--dtype {dtype!r}: give auto, bf16, fp16 or fp32")
    from sama_cli.edit.multigpu import guidance_branches

    if ranks < 1:
        raise ConfigError(f"--plan-ranks must be at least 1, not {ranks}")
    branches = guidance_branches(sampling)
    req = PlanRequest(frames=n, height=size[0], width=size[1], steps=sampling.steps, branches=branches,
                      batch_guidance=settings.batch_guidance is not False, window=request.window,
                      overlap=request.overlap,
                      window_batch=settings.window_batch, clip_batch=settings.clip_batch, dtype=dt, fp8=fp8, offload=offload, tiling=tiling,
                      gpu_memory_gb=gpu_memory, ranks=ranks, parallel=parallel)
    result = make_plan(parts, req)
    err.print(plan_table(result))
    err.print(plan_summary(result))
    if as_json:
        sys.stdout.write(json.dumps({"frames": n, "size": list(size), **result.as_dict()}) + "\n")
    if result.fits is False:
        raise typer.Exit(EXIT_FAILED)


SUMMARY_ROWS = 12  # a batch with more edits than this gets one line of totals (every clip: --json, the page)


def _print_summary(done: list[dict], failed: list[dict], skipped: int) -> None:
    if len(done) > SUMMARY_ROWS:
        _print_totals(done)
    else:
        _print_table(done)
    if skipped:
        info(f"skipped {skipped} finished outputs")
    for f in failed:
        err.print(f"[red]failed[/red] {f['id']}: {f['error']}")


def _print_totals(done: list[dict]) -> None:
    """One row for a whole batch: how many clips and frames, the mean time a step, the time of all, the
    highest memory."""
    from rich.table import Table

    table = Table(title="sama edit", show_edge=False)
    for col in ("clips", "frames", "s/step (mean)", "total s", "peak MB (max)"):
        table.add_column(col, justify="right")
    table.add_row(str(len(done)), str(sum(d["frames"] for d in done)),
                  f"{sum(d['seconds_per_step'] for d in done) / len(done):.3f}",
                  f"{sum(d['seconds'].get('total', 0) for d in done):.1f}",
                  f"{max(d['peak_memory_mb'] for d in done):.0f}")
    err.print(table)


def _print_table(done: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="sama edit", show_edge=False)
    cached = any(d.get("cache") for d in done)
    ranked = any(d.get("ranks", 1) > 1 for d in done)
    for col in ("output", "frames", "windows", "fps", "size", "s/step", "total s", "peak MB") + (
            ("cache", "blocks skipped") if cached else ()) + (("ranks", "layout") if ranked else ()):
        table.add_column(col)
    for d in done:
        frames = str(d["frames"]) + (f" (+{d['frames_left_out']} left out)" if d.get("frames_left_out") else "")
        cache = (d.get("cache") or "-", f"{d.get('blocks_skipped', 0.0):.0%}") if cached else ()
        ranks = (str(d.get("ranks", 1)), d.get("layout", "one rank")) if ranked else ()
        table.add_row(Path(d["output"]).name, frames, str(d.get("windows", 1)), f"{d['fps']:g}",
                      "x".join(map(str, d["size"])),
                      f"{d['seconds_per_step']:.3f}", f"{d['seconds'].get('total', 0):.1f}", f"{d['peak_memory_mb']:.0f}",
                      *cache, *ranks)
    err.print(table)


def register(app: typer.Typer) -> None:
    app.command("edit", no_args_is_help=True)(edit)
