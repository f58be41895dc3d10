"""`sama encode INPUT... -o OUTDIR`: cache VAE latents (and text embeddings) as safetensors artifacts."""

from __future__ import annotations

from pathlib import Path

import typer

from sama_cli.commands import report_batch
from sama_cli.core.errors import ConfigError


def encode(
    inputs: list[str] = typer.Argument(..., help="Videos, images, folders, or one manifest (.jsonl, or - for stdin; or DiffSynth metadata .csv/.json/.jsonl)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (latents/, text/, manifest.jsonl)."),
    vae: str = typer.Option("pixel", "--vae", help="Codec: a Wan diffusers folder, Wan2.1_VAE.pth, tiny, pixel, "
                                                  "pixel:s4."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="UMT5 folder (or Wan root) or tiny; "
                                            "encodes the rows' prompts / --prompt."),
    prompt: str | None = typer.Option(None, "--prompt", help="A prompt to encode (file inputs)."),
    size: str | None = typer.Option(None, "--size", help="Explicit working size HxW."),
    bucket: bool = typer.Option(False, "--bucket/--native", help="--bucket: every clip to its ~480x832 bucket (as "
                                "sama edit does); --native (default): a clip whose sides are multiples of 32 and "
                                "no larger keeps its size (toy clips stay 32x32), others get their bucket."),
    resize: str = typer.Option("crop", "--resize", help="crop | letterbox | stretch."),
    max_frames: int = typer.Option(81, "--max-frames", help="Frame window: at most the clip's first N frames "
                                   "(release 81); a row's recorded window must fit in it."),
    stride: int = typer.Option(1, "--stride", help="Frame window: every Nth frame (release 1), for rows without "
                               "a recorded window."),
    skip_frames: int = typer.Option(0, "--skip-frames", help="Frame window: drop the first N frames of rows "
                                    "without a window or their own skip_frames (OpenVE-3M: 4)."),
    fit: str = typer.Option("pad", "--fit", help="A window chosen here reaches the codec's 1+4k frames by pad "
                            "(repeat the last frame) | trim (the release)."),
    base_path: Path | None = typer.Option(None, "--base-path", help="The folder a manifest's relative paths "
                                          "resolve against (DiffSynth's --dataset_base_path). Default: the "
                                          "manifest file's folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that are already cached."),
    tiling: bool = typer.Option(False, "--tiling", help="VAE tiling for large frames."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | fp32 | bf16."),
    stdout: bool = typer.Option(False, "--stdout", help="Also write the output manifest's rows to stdout."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Encode videos/images to normalized latents through one frame window per row (its recorded `window`,
    else chosen here, the same for source and target); with a manifest, fill in its artifacts."""
    import torch

    from sama_cli.core.distributed import setup, teardown
    from sama_cli.core.runtime import resolve_device, resolve_dtype
    from sama_cli.data.latents import EncodeOptions
    from sama_cli.data.latents import encode as run
    from sama_cli.model.text_encoder import load_text_encoder
    from sama_cli.model.vae import load_codec

    if stdout and as_json:
        raise ConfigError("--stdout and --json both write to stdout: choose one")
    parsed = None
    if size is not None:
        try:
            h, w = (int(v) for v in size.lower().split("x"))
            parsed = (h, w)
        except ValueError:
            raise ConfigError(f"--size must look like 480x832, not {size!r}") from None
    opts = EncodeOptions(size=parsed, bucket=bucket, resize=resize, max_frames=max_frames, overwrite=overwrite,
                         stride=stride, skip_frames=skip_frames, fit=fit)
    d = setup(resolve_device(device))  # under torchrun: this rank's GPU and its share of the inputs
    dev = d.device
    dt = resolve_dtype(dtype, dev)
    try:
        codec = load_codec(vae, device=dev, dtype=torch.float32 if dev.type == "cpu" else dt, tiling=tiling)
    except ValueError as e:  # e.g. pixel:sx
        raise ConfigError(f"--vae {vae!r} is not a codec spec ({e}); give a Wan VAE folder or .pth, tiny, pixel "
                          "or pixel:sN") from None
    te = load_text_encoder(text_encoder, device=dev, dtype=torch.float32 if dev.type == "cpu" else dt) \
        if text_encoder else None
    summary, rows = run(inputs, out, codec=codec, text_encoder=te, text_spec=text_encoder, prompt=prompt,
                        device=dev, opts=opts, dist=d, base_path=base_path)
    teardown()
    s = summary.as_dict()
    report_batch(f"[bold]sama encode[/bold]: {s['files']} files ({s['frames']} frames), {s['texts']} prompts, "
                 f"{s['skipped']} cached, {len(s['failed'])} failed in {s['seconds']:.1f}s", s, rows,
                 stdout=stdout, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("encode", no_args_is_help=True)(encode)
