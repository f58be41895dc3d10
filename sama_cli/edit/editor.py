"""`sama edit`: read a video, encode it, denoise the edit with SAMA, decode, write (docs/sama.md §4).

The release's inference, step by step: resize the source to its ~480x832 bucket (the release's bucket
list, sides multiple of 32, nearest aspect ratio; the same rule as `encode`), pad it
to the codec's frame rule by repeating the last frame, encode it to clean source latents, encode
`"[Video edit] " + instruction` and the negative prompt `"[Video edit]"`, run the sampling loop
(50 steps, shift 5, guidance 5, joint semantic tokens), decode, trim back to the source length and
write at the source fps with its audio.

Memory controls: bf16 on GPU, VAE tiling, and `offload`, which keeps each stage's model on the CPU
until its turn (text encoder -> DiT -> VAE).

Where each setting comes from: an option the user gives (`EditRequest`), else what the checkpoint records
(`ModelDefaults`: the embedded toy model edits at 32x32 with 20 steps and no guidance), else the
release's default; `EditRequest.resolve` is that rule, once. `edit_single` and `edit_batch` are
`sama edit IN INSTRUCTION -o OUT` and `sama edit --manifest FILE -o OUTDIR` as library calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from sama_cli.core.console import err, info, progress, warn
from sama_cli.core.errors import ConfigError, InputError, SamaError, StorageError
from sama_cli.edit.sampler import SamplingConfig, sample
from sama_cli.edit.windows import SEMANTIC_MODES, WindowPlan, default_overlap, latent_frames
from sama_cli.io.frames import RELEASE_MAX_FRAMES, fit_frames
from sama_cli.model.transformer import SamaTransformer

RELEASE_PROMPT_PREFIX = "[Video edit] "  # release --prompt-prefix
RELEASE_NEGATIVE_PROMPT = "[Video edit]"
OUTPUT_SIZES = ("working", "source")


@dataclass
class EditSettings:
    prompt_prefix: str = RELEASE_PROMPT_PREFIX
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT
    null_negative: bool = False  # negative = an all-zero context, the "dropped text" of `data.drop_text` training
    max_frames: int | None = None  # edit only the first N frames (None: every frame; the release cuts at 81)
    window: int | None = None  # frames the model sees at once (None: the model's trained length, else 81)
    overlap: int | None = None  # frames shared by neighbouring windows (None: about a third of the window)
    semantic_windows: str = "shared"  # shared | per-window: one semantic anchor for the clip, or one per window
    window_batch: int = 1  # windows through the model at once (peak memory grows with it)
    clip_batch: int = 1  # batch mode: clips of one shape denoised together (Editor.edit_clips)
    # the guidance branches in one forward (same edit; --no-batch-cfg saves memory). None: on a GPU, where
    # the bigger batch fills the device; not on the CPU, where it measured no faster (make bench)
    batch_guidance: bool | None = None
    cache: str | None = None  # a step cache, `fbc[:threshold]` or `taylorseer[:interval]` (edit/speed.py)
    size: tuple[int, int] | None = None  # explicit (height, width)
    bucket: bool = True  # the release's ~480x832 bucket; False: native size when it fits (as encode --native)
    area: int = 480 * 832
    multiple: int = 32
    resize: str = "crop"  # crop | letterbox | stretch
    anchor_frames: int | None = None  # semantic tokens = 65 x this; None: the model's setting
    output_size: str = "working"  # working (the release's) | source: back at the source's size

    def validate(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max frames must be at least 1, not {self.max_frames}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"--window must be at least 1 frame, not {self.window}")
        if self.overlap is not None and self.overlap < 0:
            raise ConfigError(f"--overlap must be at least 0 frames, not {self.overlap}")
        if self.window_batch < 1:
            raise ConfigError(f"--window-batch must be at least 1, not {self.window_batch}")
        if self.clip_batch < 1:
            raise ConfigError(f"--clip-batch must be at least 1, not {self.clip_batch}")
        if self.clip_batch > 1 and self.cache is not None:
            raise ConfigError("--clip-batch with --cache: a step cache decides for the whole batch at once, so a "
                              "clip's edit would depend on its neighbours; use one or the other")
        if self.semantic_windows not in SEMANTIC_MODES:
            raise ConfigError(f"semantic tokens across windows must be one of {SEMANTIC_MODES}, "
                              f"not {self.semantic_windows!r}")
        if self.output_size not in OUTPUT_SIZES:
            raise ConfigError(f"--output-size must be one of {OUTPUT_SIZES}, not {self.output_size!r}")
        if self.cache is not None:
            from sama_cli.edit.speed import CacheSpec

            CacheSpec.parse(self.cache)
        if self.resize not in ("crop", "letterbox", "stretch"):
            raise ConfigError(f"resize must be crop, letterbox or stretch, not {self.resize!r}")
        if self.size is not None and (self.size[0] % self.multiple or self.size[1] % self.multiple):
            raise ConfigError(f"size {self.size[0]}x{self.size[1]} must have sides that are multiples of {self.multiple}")


@dataclass(frozen=True)
class ModelDefaults:
    """How a checkpoint says it edits best (`meta.working_size`, `meta.sampling`); None where it says
    nothing. The embedded toy model: 32x32, 20 steps, guidance 1, shift 5 (what `make demo` edits with)."""

    working_size: tuple[int, int] | None = None  # (height, width) it was trained at
    window_frames: int | None = None  # clip length it was trained on (the window of a long edit)
    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ModelDefaults:
        size = meta.get("working_size")
        sampling = meta.get("sampling") or {}  # its other keys are not read

        def number(key: str, kind: type) -> Any:
            return None if sampling.get(key) is None else kind(sampling[key])

        window = meta.get("window_frames")
        return cls(working_size=(int(size[0]), int(size[1])) if size else None,
                   window_frames=int(window) if window else None, steps=number("steps", int),
                   guidance=number("guidance", float), shift=number("shift", float))


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


@dataclass
class EditRequest:
    """An edit as the user asks for it: the options of `sama edit`. None means "not given": then what the
    model records (`ModelDefaults`), else the release's default (those of SamplingConfig and EditSettings)."""

    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    size: tuple[int, int] | None = None  # (height, width)
    bucket: bool | None = None  # True: the release's bucket even when the model records a size; False: native
    source_guidance: float | None = None
    text_guidance: float | None = None
    scheduler: str = SamplingConfig.scheduler
    seed: int = SamplingConfig.seed
    timestep_dtype: str = SamplingConfig.timestep_dtype
    prompt_prefix: str = EditSettings.prompt_prefix
    negative_prompt: str = EditSettings.negative_prompt
    null_negative: bool = EditSettings.null_negative
    max_frames: int | None = EditSettings.max_frames
    window: int | None = None
    overlap: int | None = None
    semantic_windows: str = EditSettings.semantic_windows
    window_batch: int = EditSettings.window_batch
    clip_batch: int = EditSettings.clip_batch
    batch_guidance: bool | None = None
    cache: str | None = None
    output_size: str = EditSettings.output_size
    resize: str = EditSettings.resize
    anchor_frames: int | None = None

    def resolve(self, model: ModelDefaults | None = None) -> tuple[SamplingConfig, EditSettings]:
        """The sampler and edit settings for an editor whose checkpoint records `model`: each option as
        given, else as the model records it, else the release's. Not validated (`validate`, `sample`)."""
        model = model or ModelDefaults()
        release = SamplingConfig()
        sampling = SamplingConfig(steps=_first(self.steps, model.steps, release.steps),
                                  shift=_first(self.shift, model.shift, release.shift),
                                  guidance=_first(self.guidance, model.guidance, release.guidance),
                                  source_guidance=self.source_guidance, text_guidance=self.text_guidance,
                                  scheduler=self.scheduler, seed=self.seed, timestep_dtype=self.timestep_dtype)
        # a model that knows one size (the toy model) works at it, unless told --size, --bucket or --native
        size = self.size if self.size is not None or self.bucket is not None else model.working_size
        settings = EditSettings(prompt_prefix=self.prompt_prefix, negative_prompt=self.negative_prompt,
                                null_negative=self.null_negative, max_frames=self.max_frames, size=size,
                                window=_first(self.window, model.window_frames, RELEASE_MAX_FRAMES),
                                overlap=self.overlap, semantic_windows=self.semantic_windows,
                                window_batch=self.window_batch, clip_batch=self.clip_batch,
                                output_size=self.output_size,
                                batch_guidance=self.batch_guidance, cache=self.cache,
                                bucket=self.bucket is not False, resize=self.resize, anchor_frames=self.anchor_frames)
        return sampling, settings

    def validate(self) -> None:
        """Check the options as given (release defaults for the rest): before a model is loaded, which can
        take minutes."""
        sampling, settings = self.resolve()
        sampling.validate()
        settings.validate()


@dataclass
class EditReport:
    frames: int
    fps: float
    size: tuple[int, int]
    padded_frames: int
    steps: int
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    windows: int = 1  # windows the clip was denoised in (edit/windows.py)
    frames_left_out: int = 0  # source frames after --max-frames, not edited
    output_size: tuple[int, int] | None = None  # (height, width) written: the working size or the source's
    forwards: int = 0  # DiT calls (batched guidance branches count once)
    cache: str | None = None  # the step cache used, e.g. fbc:0.05
    blocks_skipped: float = 0.0  # fraction of the blocks' self-attention evaluations a step cache served
    ranks: int = 1  # processes that denoised it (torchrun)
    layout: str = "one rank"  # how they shared it (edit/multigpu.py Layout.describe)
    batch: int = 1  # clips denoised together (--clip-batch); `seconds["denoise"]` is this clip's share

    @property
    def seconds_per_step(self) -> float:
        return self.seconds.get("denoise", 0.0) / max(1, self.steps)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds_per_step"] = self.seconds_per_step
        return d


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Editor:
    """The three frozen/trained parts on one device, with optional CPU offload between stages, and what
    the checkpoint records about editing with them (`defaults`)."""

    model: SamaTransformer
    codec: Any  # sama_cli.model.vae: encode / decode, temporal_factor
    text_encoder: Any  # sama_cli.model.text_encoder: __call__(prompts), pad
    device: torch.device
    offload: bool
    text_device: torch.device
    defaults: ModelDefaults

    def __init__(self, model: SamaTransformer, codec, text_encoder, *, device: torch.device,
                 offload: bool = False, text_device: torch.device | None = None,
                 defaults: ModelDefaults | None = None, dit_resident: bool = False, parallel=None):
        self.model = model.eval()
        self.codec = codec
        self.text_encoder = text_encoder
        self.device = torch.device(device)
        self.offload = offload
        self.text_device = torch.device(text_device) if text_device is not None else self.device
        self.defaults = defaults or ModelDefaults()
        self._cache: tuple[str, int] | None = None  # (cache spec, steps) on the model now
        self.dit_resident = dit_resident  # the DiT places its own blocks (group offloading): never moved
        self.parallel = None  # edit/multigpu.py ParallelEdit: this rank's share of a multi-rank edit
        self.loras: list[dict] = []  # LoRA files folded into the DiT (load_editor), for the summary
        if parallel is not None:
            self.set_parallel(parallel)

    def set_parallel(self, parallel) -> None:
        """Share the edits with the other ranks as `parallel` (a ParallelEdit) says."""
        parallel.attach(self.model)
        self.parallel = parallel

    @property
    def writes(self) -> bool:
        """Whether this process decodes and writes the edits (rank 0 of a multi-rank edit; always alone)."""
        return self.parallel is None or self.parallel.writes

    @property
    def working_size(self) -> tuple[int, int] | None:
        """The (height, width) the model was trained at, when its checkpoint records one."""
        return self.defaults.working_size

    @contextlib.contextmanager
    def _stage(self, part: Any, device: torch.device) -> Iterator[None]:
        """Move `part` to `device` for the block; back to the CPU after it when offloading."""
        if self.offload and hasattr(part, "to") and not (self.dit_resident and part is self.model):
            part.to(device)
            try:
                yield
            finally:
                part.to("cpu")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        else:
            yield

    def window_plan(self, latent_total: int, settings: EditSettings) -> WindowPlan:
        """The windows over a clip of `latent_total` latent frames: `settings.window` frames each (the
        model's trained length by default), overlapping by `settings.overlap` frames."""
        k = self.codec.temporal_factor
        window = settings.window or RELEASE_MAX_FRAMES
        if (window - 1) % k:
            raise ConfigError(f"--window must be {k}k+1 frames for this codec (e.g. {1 + k * ((window - 1) // k)}), "
                              f"not {window}")
        overlap = default_overlap(window, k) if settings.overlap is None else settings.overlap
        if overlap % k:
            raise ConfigError(f"--overlap must be a multiple of {k} frames for this codec, not {overlap}")
        if overlap >= window:
            raise ConfigError(f"--overlap ({overlap} frames) must be shorter than the window ({window} frames)")
        return WindowPlan.make(latent_total, latent_frames(window, k), overlap // k,
                               semantic=settings.semantic_windows, batch=settings.window_batch)

    def encode_prompts(self, instructions: list[str], settings: EditSettings) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per instruction, (context, negative context), each (1, text_len, D), zero-padded as Wan does; one
        instruction at a time (as alone), the text encoder on its device once for all."""
        for instruction in instructions:
            if not instruction or not instruction.strip():
                raise InputError("the instruction is empty: say what to change, e.g. \"make it winter\"")
        out = []
        with self._stage(self.text_encoder, self.text_device), torch.no_grad():
            for instruction in instructions:
                embeds = self.text_encoder([settings.prompt_prefix + instruction.strip(), settings.negative_prompt])
                padded = self.text_encoder.pad(embeds, self.model.config.text_len)
                out.append((padded[:1], torch.zeros_like(padded[1:]) if settings.null_negative else padded[1:]))
        return out

    def edit_frames(self, frames_thwc: torch.Tensor, instruction: str, sampling: SamplingConfig,
                    settings: EditSettings, on_step=None) -> tuple[torch.Tensor | None, EditReport]:
        """Edit uint8 frames (T, H, W, 3) already at the working size; returns uint8 frames of the same
        shape (None on the ranks of a multi-rank edit that do not write) and a report with per-stage seconds."""
        return self.edit_clips([(frames_thwc, instruction)], sampling, settings, on_step=on_step)[0]

    def edit_clips(self, clips: list[tuple[torch.Tensor, str]], sampling: SamplingConfig, settings: EditSettings,
                   on_step=None) -> list[tuple[torch.Tensor | None, EditReport]]:
        """Edit several clips of one shape, each (uint8 frames (T, H, W, 3) at the working size, instruction),
        denoised as one batch (`--clip-batch`): each clip with its own prompt and the noise its seed gives it
        alone, so each edit is the one `edit_frames` makes within float rounding. Prompts, VAE encode and
        decode go clip by clip (their memory does not grow with the batch); one clip is the plain edit."""
        settings.validate()
        par = self.parallel
        if settings.cache and par is not None and par.sequence is not None:
            raise ConfigError("--cache with a sequence split: each rank would skip blocks on its own part of the "
                              "sequence; use --parallel guidance, or one rank")
        if len(clips) > 1 and par is not None:
            raise ConfigError("--clip-batch with several ranks: the ranks share one clip at a time; use one or the other")
        if len({tuple(frames.shape) for frames, _ in clips}) != 1:
            raise ConfigError("the clips of one batch must have the same frames and size: "
                              + ", ".join("x".join(map(str, f.shape[:3])) for f, _ in clips))
        t0 = time.perf_counter()
        contexts = self.encode_prompts([instruction for _, instruction in clips], settings)
        seconds: list[dict[str, float]] = [{"text": (time.perf_counter() - t0) / len(clips)} for _ in clips]
        sources = []
        with self._stage(self.codec, self.device), torch.no_grad():
            for (frames, _), sec in zip(clips, seconds, strict=True):
                t0 = time.perf_counter()
                padded = fit_frames(frames, "pad", k=self.codec.temporal_factor)  # 1+4k for Wan (docs/sama.md §4)
                video = padded.permute(3, 0, 1, 2).unsqueeze(0).float().div(127.5).sub(1)  # (1, 3, T, H, W), [-1, 1]
                sources.append(self.codec.encode(video.to(self.device)))
                sec["encode"] = time.perf_counter() - t0
        n, h, w = clips[0][0].shape[:3]
        n_pad = padded.shape[0] - n
        context, negative = torch.cat([c for c, _ in contexts]), torch.cat([neg for _, neg in contexts])
        source = torch.cat(sources)

        if settings.anchor_frames is not None:  # a copy: the caller's config serves the next clip unchanged
            sampling = dataclasses.replace(
                sampling, semantic_tokens=self.model.config.semantic_tokens_per_frame * settings.anchor_frames)
        plan = self.window_plan(source.shape[2], settings)
        counter = self._use_cache(settings.cache, sampling.steps)
        noise = [torch.Generator().manual_seed(sampling.seed) for _ in clips]  # each clip's own, as if alone
        t0 = time.perf_counter()
        try:
            with self._stage(self.model, self.device), torch.no_grad():
                result = sample(self.model, tuple(source.shape), context, negative, source, sampling,
                                generator=noise, on_step=on_step, windows=plan,
                                batch_guidance=self.batch_guidance(settings), parallel=par)
        finally:
            if counter is not None:
                counter.close()
        for sec in seconds:
            sec["denoise"] = (time.perf_counter() - t0) / len(clips)

        edited: list[torch.Tensor | None] = [None] * len(clips)
        if self.writes:  # the other ranks of a multi-rank edit only help denoise
            with self._stage(self.codec, self.device), torch.no_grad():
                for i, sec in enumerate(seconds):
                    t0 = time.perf_counter()
                    decoded = self.codec.decode(result.latents[i:i + 1].to(self.device))  # (1, 3, T', H, W)
                    sec["decode"] = time.perf_counter() - t0
                    out = decoded[0, :, :n].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
                    edited[i] = out.cpu().contiguous()
        peak = _peak_memory_mb(self.device)
        skipped = counter.skipped(result.forwards) if counter is not None else 0.0
        return [(out, EditReport(frames=n, fps=0.0, size=(h, w), padded_frames=n_pad, steps=sampling.steps,
                                 seconds=sec, peak_memory_mb=peak, windows=len(plan.spans),
                                 forwards=result.forwards, cache=self._cache[0] if self._cache else None,
                                 blocks_skipped=skipped, ranks=1 if par is None else par.layout.ranks,
                                 layout="one rank" if par is None else par.layout.describe(), batch=len(clips)))
                for out, sec in zip(edited, seconds, strict=True)]

    def batch_guidance(self, settings: EditSettings) -> bool:
        """Whether the guidance branches share a forward: as asked, else on any device but the CPU."""
        return settings.batch_guidance if settings.batch_guidance is not None else self.device.type != "cpu"

    def _use_cache(self, cache: str | None, steps: int):
        """Put the step cache `cache` asks for on the model (or take it off), when it is not there already;
        with one, an EvalCounter of the block evaluations that ran."""
        from sama_cli.edit.speed import CacheSpec, EvalCounter, enable_cache

        spec = None if cache is None else CacheSpec.parse(cache)
        key = None if spec is None else (str(spec), steps)
        if key != self._cache:
            enable_cache(self.model, spec, steps)
            self._cache = key
        return None if spec is None else EvalCounter(self.model)


def working_size(height: int, width: int, settings: EditSettings) -> tuple[int, int]:
    from sama_cli.io.frames import choose_size

    return choose_size(height, width, size=settings.size, bucket=settings.bucket, area=settings.area,
                       multiple=settings.multiple)


@dataclass
class SourceClip:
    """A source read for an edit: the video as read, its frames at the working size, and how long reading took."""

    src: Path
    video: Any  # io/video.py Video
    frames: torch.Tensor  # (T, H, W, 3) uint8 at the working size
    left_out: int  # source frames after --max-frames, not edited
    seconds: float


def read_clip(src: str | Path, settings: EditSettings) -> SourceClip:
    """Read `src` (the first --max-frames frames, saying how many are left out) and fit it to the working size."""
    from sama_cli.io.video import read_video, resize_frames

    t0 = time.perf_counter()
    video = read_video(src, max_frames=settings.max_frames)
    total = video.info.frames if video.info is not None and video.info.frames else video.num_frames
    left_out = max(0, total - video.num_frames)
    if left_out:
        warn(f"{src}: editing the first {video.num_frames} of {total} frames (--max-frames {settings.max_frames}); "
             f"{left_out} frames are left out of the edit")
    size = working_size(video.frames.shape[1], video.frames.shape[2], settings)
    frames = resize_frames(video.frames, size, mode=settings.resize)
    return SourceClip(Path(src), video, frames, left_out, time.perf_counter() - t0)


def write_edit(clip: SourceClip, edited: torch.Tensor, report: EditReport, out: str | Path, settings: EditSettings,
               *, audio: bool = True, side_by_side: str | Path | None = None, lossless: bool = False,
               quiet: bool = False) -> EditReport:
    """Write the edit of `clip` to `out` (and source | edit to `side_by_side`), completing `report`. The
    output (and side-by-side) appear only when everything succeeded."""
    from sama_cli.io.video import hstack_videos, unresize_frames, write_video

    t0 = time.perf_counter()
    fps = clip.video.fps
    report.fps = fps
    if side_by_side is not None:  # first: OUT is what batch mode takes for "done"
        write_video(side_by_side, hstack_videos(clip.frames, edited), fps)
    written = unresize_frames(edited, clip.video.frames, settings.resize) if settings.output_size == "source" else edited
    try:
        write_video(out, written, fps, audio_from=clip.src if audio else None, lossless=lossless)
    except BaseException:
        if side_by_side is not None:
            Path(side_by_side).unlink(missing_ok=True)
        raise
    report.seconds["io"] = clip.seconds + time.perf_counter() - t0
    report.seconds["total"] = sum(v for k, v in report.seconds.items() if k != "total")
    report.frames_left_out = clip.left_out
    report.output_size = (written.shape[1], written.shape[2])
    if not quiet:
        windows = f" in {report.windows} windows" if report.windows > 1 else ""
        cut = f" ({clip.left_out} frames after --max-frames left out)" if clip.left_out else ""
        info(f"{out}: {report.frames} frames{windows} at {fps:g} fps, {written.shape[1]}x{written.shape[2]}{cut}")
    return report


def edit_file(editor: Editor, src: str | Path, instruction: str, out: str | Path, sampling: SamplingConfig,
              settings: EditSettings, *, audio: bool = True, side_by_side: str | Path | None = None,
              on_step=None, lossless: bool = False, quiet: bool = False) -> EditReport:
    """Edit one file end to end (`read_clip`, `Editor.edit_frames`, `write_edit`). The output (and
    side-by-side) appear only when everything succeeded. `lossless`: exact RGB H.264 that decodes to the
    edited frames bit for bit (for scoring: the default lossy H.264 is not reproducible bit for bit across
    processes, see io/video.py). `quiet`: no line saying what was written (a batch has one progress bar
    and one summary instead)."""
    clip = read_clip(src, settings)
    edited, report = editor.edit_frames(clip.frames, instruction, sampling, settings, on_step=on_step)
    if edited is None:  # a rank of a multi-rank edit that does not write
        report.fps = clip.video.fps
        return report
    return write_edit(clip, edited, report, out, settings, audio=audio, side_by_side=side_by_side,
                      lossless=lossless, quiet=quiet)


def edit_single(editor: Editor, src: str | Path, instruction: str, out: str | Path, sampling: SamplingConfig,
                settings: EditSettings, *, audio: bool = True, side_by_side: bool = False,
                lossless: bool = False, quiet: bool = False) -> EditReport:
    """One edit as `sama edit IN INSTRUCTION -o OUT` makes it: `edit_file` with a progress bar over the
    denoising steps (none when `quiet`: a batch's bar counts clips), and with `side_by_side`, OUT.sbs.mp4
    (source | edit) beside OUT."""
    sbs = Path(out).with_suffix(".sbs.mp4") if side_by_side else None
    bar = None if quiet else iter(progress(range(sampling.steps), f"denoising {Path(src).name}"))
    return edit_file(editor, src, instruction, out, sampling, settings, audio=audio, side_by_side=sbs,
                     on_step=None if bar is None else lambda i, n: next(bar, None), lossless=lossless, quiet=quiet)


def manifest_rows(manifest: str | Path, split: str | None = None, limit: int | None = None, *,
                  base_path: str | Path | None = None, kind: str | None = None) -> tuple[list[dict], list[dict]]:
    """The rows `sama edit --manifest` edits: the edit rows (not t2v) of the comma-separated `split`s
    (a row without one is `train`) and `kind`s (video_edit, image_edit), at most `limit`; and the
    manifest's bad rows as {"id", "error"},
    which the batch reports as failed while the others go on. The manifest is ours or DiffSynth
    metadata (io/metadata.py), its relative paths resolved against `base_path` (default its folder)."""
    from sama_cli.io.manifest import read_manifest

    wanted = None if split is None else set(split.split(","))
    kinds = {"video_edit", "image_edit"} if kind is None else set(kind.split(","))
    if unknown := kinds - {"video_edit", "image_edit"}:
        raise ConfigError(f"--kind {','.join(sorted(unknown))}: an edit row is video_edit or image_edit")
    m = read_manifest(manifest, base_path=base_path, keep_going=True)
    rows = [r for r in m.rows if r["kind"] in kinds and (wanted is None or r.get("split", "train") in wanted)]
    return rows[:limit], m.failed


@dataclass
class BatchReport:
    done: list[dict] = field(default_factory=list)  # {"id", "output", **EditReport.as_dict()}
    failed: list[dict] = field(default_factory=list)  # {"id", "error"}
    skipped: int = 0  # outputs that were there already

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "failed": self.failed, "skipped": self.skipped}


class _Batcher:
    """edit_batch's rows in flight: read clips waiting for their denoising batch (at most `clip_batch`, all
    of one shape), and what became of each row."""

    def __init__(self, editor: Editor, report: BatchReport, sampling: SamplingConfig, settings: EditSettings,
                 writes: bool, side_by_side: bool, **write_options: Any):
        self.editor, self.report, self.sampling, self.settings = editor, report, sampling, settings
        self.writes, self.side_by_side, self.write_options = writes, side_by_side, write_options
        self.pending: list[tuple[dict, Path, SourceClip]] = []

    def fail(self, row: dict, e: Exception, t0: float) -> None:
        message = e.message if isinstance(e, SamaError) else f"{type(e).__name__}: {e}"
        self.report.failed.append({"id": row["id"], "error": message})
        if self.writes:
            err.print(f"[red]failed[/red] {row['id']}: {escape(message)} ({time.perf_counter() - t0:.1f}s)")

    def add(self, row: dict, target: Path) -> None:
        """Read the row's clip; denoise the waiting clips first when it has another shape, and all of
        them when the batch is full."""
        t0 = time.perf_counter()
        try:
            clip = read_clip(Path(row["source"]), self.settings)
        except StorageError:
            raise
        except Exception as e:  # one bad row never stops the batch
            self.fail(row, e, t0)
            return
        if self.pending and self.pending[0][2].frames.shape != clip.frames.shape:
            self.flush()
        self.pending.append((row, target, clip))
        if len(self.pending) >= self.settings.clip_batch:
            self.flush()

    def flush(self) -> None:
        """Denoise the waiting clips together and write each edit; a failed denoising fails them all."""
        batch, t0 = self.pending[:], time.perf_counter()
        self.pending.clear()
        if not batch:
            return
        try:
            edited = self.editor.edit_clips([(clip.frames, row["instruction"]) for row, _, clip in batch],
                                            self.sampling, self.settings)
        except StorageError:
            raise
        except Exception as e:
            for row, _, _ in batch:
                self.fail(row, e, t0)
            return
        for (row, target, clip), (frames, one) in zip(batch, edited, strict=True):
            if frames is None:  # a rank of a multi-rank edit that does not write
                continue
            sbs = target.with_suffix(".sbs.mp4") if self.side_by_side else None
            try:
                write_edit(clip, frames, one, target, self.settings, side_by_side=sbs, quiet=True,
                           **self.write_options)
                self.report.done.append({"id": row["id"], "output": str(target), **one.as_dict()})
            except StorageError:
                raise
            except Exception as e:
                self.fail(row, e, t0)


def edit_batch(editor: Editor, rows: list[dict], out_dir: str | Path, sampling: SamplingConfig,
               settings: EditSettings, *, audio: bool = True, side_by_side: bool = False,
               lossless: bool = False) -> BatchReport:
    """`sama edit --manifest`: each edit row to OUT_DIR/<id>.mp4, skipping outputs that exist, then
    OUT_DIR/manifest.jsonl with the rows whose output exists. With `settings.clip_batch` N > 1, up to N
    consecutive rows whose clips have the same frames and working size are denoised together
    (`Editor.edit_clips`); a row of another shape starts the next batch, so at most N clips are held.

    A row that fails (unreadable file, out of memory, ...) is reported and the batch goes on (a failed
    denoising fails the rows denoised with it); a write the system refused (StorageError: a full disk)
    stops it, since every row after it would fail the same way.
    Several ranks: every rank takes every row (rank 0 says which are done already); rank 0 writes."""
    from sama_cli.core.distributed import broadcast_object
    from sama_cli.io.manifest import write_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, results = BatchReport(), []
    shared = getattr(editor, "parallel", None) is not None
    writes = getattr(editor, "writes", True)
    if shared and settings.clip_batch > 1:
        raise ConfigError("--clip-batch with several ranks: the ranks share one clip at a time; use one or the other")
    batcher = _Batcher(editor, report, sampling, settings, writes, audio=audio, side_by_side=side_by_side,
                       lossless=lossless)
    for row in progress([row for row in rows if row["kind"] != "t2v"], "edit"):  # one bar over the clips
        target = out_dir / f"{row['id']}.mp4"
        results.append({**row, "output": str(target)})
        if broadcast_object(target.exists()) if shared else target.exists():
            report.skipped += 1
            continue
        batcher.add(row, target)
    batcher.flush()
    if writes:
        write_manifest([r for r in results if Path(r["output"]).exists()], out_dir / "manifest.jsonl")
    return report
