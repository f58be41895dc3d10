"""Reading and writing video and images: the one IO module every subcommand uses.

Frames are uint8 tensors `(T, H, W, 3)` in display orientation (rotation metadata applied). PyAV
(bundled FFmpeg) is the reader; decord is used when installed and `backend="auto"` for 4:2:0 streams.
Variable-frame-rate clips decode in presentation order, and the reported fps is the stream's average
rate. Writing is H.264 in MP4 (yuv420p, even sides: an odd side is padded by repeating the last
row/column), or, with `lossless=True`, exact RGB H.264 (`libx264rgb`, qp 0) that reads back
bit-for-bit (the toy world uses it). Every write is atomic.

Lossy H.264 is not reproducible bit for bit: libx264 in PyAV's FFmpeg build encodes the same frames to
a different stream in about one process in ten (measured on 32x32 clips, even single-threaded and
from fixed YUV input; repeated writes within one process agree), and decoded pixels then differ by up
to ~20/255. Anything scored exactly (the toy benchmark, tests) writes `lossless=True`.

Resolution buckets (docs/sama.md §4): about 480x832 pixels of area, sides multiples of 32, aspect
(height / width) clamped to [0.5, 2.0]; frames fit a bucket by crop, letterbox or stretch.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sama_cli.core.errors import InputError
from sama_cli.io.artifacts import atomic_path

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".gif", ".avi", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
RESIZE_MODES = ("crop", "letterbox", "stretch")


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


@dataclass
class VideoInfo:
    path: Path
    frames: int
    fps: float
    width: int  # display width (after rotation)
    height: int
    rotation: int  # degrees, counter-clockwise, as stored in the file
    has_audio: bool
    codec: str
    pix_fmt: str = ""


@dataclass
class Video:
    frames: torch.Tensor  # (T, H, W, 3) uint8
    fps: float
    path: Path | None = None
    info: VideoInfo | None = None

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a folder, not a video or image (use read_frames_folder)", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"not a readable video ({type(e).__name__}: {e})", path=path) from None


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, FFmpeg's convention) to an (H, W, 3) frame."""
    turns = (round(rotation / 90) % 4)
    return np.ascontiguousarray(np.rot90(frame, k=turns)) if turns else frame


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps, display size, rotation, audio and codec, without decoding the whole file
    (when the container does not store a frame count, the frames are counted by demuxing)."""
    import av

    path = Path(path)
    _check_exists(path)
    if is_image(path):
        img = _read_image(path)
        return VideoInfo(path, 1, 1.0, img.shape[1], img.shape[0], 0, False, path.suffix.lstrip(".").lower())
    with _open(path) as container:
        try:
            if not container.streams.video:
                raise InputError("has no video stream", path=path)
            stream = container.streams.video[0]
            cc = stream.codec_context
            rotation = _stream_rotation(container, stream)
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 1.0
            frames = stream.frames or _count_frames(path, container, stream, fps)
            w, h = cc.width, cc.height
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise InputError(f"corrupt or truncated video ({_one_line(e)})", path=path) from None
        if rotation % 180:
            w, h = h, w
        if frames == 0:
            raise InputError("has zero frames", path=path)
        return VideoInfo(path, frames, fps, w, h, rotation, bool(container.streams.audio), cc.name,
                         cc.pix_fmt or "")


def _one_line(e: BaseException) -> str:
    """An FFmpeg/decord message on one line, without decord's `[hh:mm:ss] file.cc:line:` prefixes."""
    import re

    return " ".join(re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(e)).split()) or type(e).__name__


def _announced_seconds(stream) -> float | None:
    """The video stream's own duration: from the stream header, or Matroska/WebM's per-track DURATION
    tag (the container's duration may belong to a longer audio track, so it is not used)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return None


def _count_frames(path: Path, container, stream, fps: float) -> int:
    """Count the packets of a stream that stores no frame count (Matroska, WebM, GIF, ...). Such a
    file cut short still demuxes cleanly, so where the stream announces its duration, a stream that
    ends more than half a frame early is reported as truncated."""
    count, end = 0, 0.0
    for packet in container.demux(stream):
        if not packet.size:
            continue
        count += 1
        if packet.pts is not None and packet.time_base:
            length = float(packet.duration * packet.time_base) if packet.duration else 1 / fps
            end = max(end, float(packet.pts * packet.time_base) + length)
    announced = _announced_seconds(stream)
    if count and announced and end < announced - 0.5 / fps:
        raise InputError(f"truncated or corrupt video: the stream ends at {end:.3f}s of the {announced:.3f}s its "
                         f"header announces ({count} frames present)", path=path)
    return count


def _stream_rotation(container, stream) -> int:
    """Rotation in degrees from the first decoded frame's display matrix (or the legacy `rotate` tag)."""
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return -int(tag) % 360  # `rotate` is clockwise; frame.rotation is counter-clockwise
        except ValueError:
            pass
    try:
        for frame in container.decode(stream):
            rotation = int(getattr(frame, "rotation", 0) or 0)
            break
        else:
            rotation = 0
    except Exception:  # noqa: BLE001 - a broken first frame is reported by the reader, not here
        rotation = 0
    container.seek(0)
    return rotation % 360


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # EXIF orientation, like a video's rotation
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"not a readable image ({e})", path=path) from None


def read_video(path: str | Path, *, start: int = 0, end: int | None = None, max_frames: int | None = None,
               step: int = 1, backend: str = "auto") -> Video:
    """Decode frames [start, end) of a video (every `step`th, at most `max_frames`), or a still image as
    a one-frame video at fps 1. A stream that breaks mid-way is an error, never a silently short clip."""
    path = Path(path)
    _check_exists(path)
    if step < 1 or start < 0 or (end is not None and end <= start) or (max_frames is not None and max_frames < 1):
        raise InputError(f"bad frame selection start={start} end={end} step={step} max_frames={max_frames}", path=path)
    if is_image(path):
        if start > 0:
            raise InputError(f"start frame {start} is beyond the end of a one-frame image", path=path)
        frames = torch.from_numpy(_read_image(path).copy())[None]
        info = VideoInfo(path, 1, 1.0, frames.shape[2], frames.shape[1], 0, False, path.suffix.lstrip(".").lower())
        return Video(frames, 1.0, path, info)
    if not is_video(path):
        raise InputError(f"unsupported file type {path.suffix!r} (videos: {', '.join(VIDEO_EXTS)}; "
                         f"images: {', '.join(IMAGE_EXTS)})", path=path)
    if backend not in ("auto", "av", "decord"):
        raise InputError(f"unknown video backend {backend!r} (auto, av, decord)")
    info = probe(path)
    if start >= info.frames:
        raise InputError(f"start frame {start} is beyond the end ({info.frames} frames)", path=path)
    # decord decodes 4:2:0 video only (not GIFs, not the lossless RGB streams the toy world writes)
    use_decord = backend == "decord" or (backend == "auto" and info.pix_fmt.startswith("yuv420") and _has_decord())
    if use_decord and info.rotation == 0:
        frames = _read_decord(path, info, start, end, step, max_frames)
    else:
        frames = _read_av(path, info, start, end, step, max_frames)
    if frames.shape[0] == 0:
        raise InputError("decoded zero frames", path=path)
    return Video(frames, info.fps, path, info)


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _wanted(start: int, end: int | None, step: int, max_frames: int | None, total: int) -> list[int]:
    idx = list(range(start, min(end, total) if end is not None else total, step))
    return idx[:max_frames] if max_frames is not None else idx


def _read_av(path: Path, info: VideoInfo, start: int, end: int | None, step: int, max_frames: int | None) -> torch.Tensor:
    import av

    wanted = set(_wanted(start, end, step, max_frames, info.frames))
    last = max(wanted) if wanted else -1
    out: list[np.ndarray] = []
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out.append(_rotate(frame.to_ndarray(format="rgb24"), info.rotation))
                if i >= last:
                    break
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(f"corrupt or truncated video stream after {len(out)} frames ({_one_line(e)})",
                             path=path) from None
    if len(out) < len(wanted):
        # Every announced frame must decode, except those an MP4 edit list hides: their packets are
        # flagged discard (a clip cut without re-encoding), and FFmpeg drops them while decoding.
        shown = info.frames - _discarded_packets(path)
        if len(out) < len(_wanted(start, end, step, max_frames, shown)):
            raise InputError(f"truncated or corrupt video: {info.frames} frames announced, {len(out)} of the "
                             f"{len(wanted)} requested decodable", path=path)
        info.frames = shown
    return torch.from_numpy(np.stack(out)) if out else torch.empty(0, info.height, info.width, 3, dtype=torch.uint8)


def _discarded_packets(path: Path) -> int:
    """Packets an edit list marks as discarded, or 0 when the stream has fewer packets than it announces
    (a file cut short): then nothing explains the missing frames."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            packets = [p.is_discard for p in container.demux(stream) if p.size]
        except (av.error.FFmpegError, ValueError):
            return 0
        return sum(packets) if len(packets) == stream.frames else 0


def _read_decord(path: Path, info: VideoInfo, start: int, end: int | None, step: int, max_frames: int | None) -> torch.Tensor:
    try:
        import decord
    except ImportError:
        raise InputError("backend 'decord' asked for but decord is not installed (pip install decord)") from None

    try:
        vr = decord.VideoReader(str(path), num_threads=1)
        total = len(vr)
        idx = _wanted(start, end, step, max_frames, total)
        return torch.from_numpy(vr.get_batch(idx).asnumpy()) if idx else torch.empty(0, info.height, info.width, 3,
                                                                                     dtype=torch.uint8)
    except decord.DECORDError as e:
        raise InputError(f"corrupt or truncated video stream ({_one_line(e)})", path=path) from None


def frame_files(path: str | Path) -> list[Path]:
    """The numbered frames (PNG/JPEG/...) of a folder, in natural order (`2.png` before `10.png`)."""
    import re

    path = Path(path)
    if not path.is_dir():
        raise InputError("not a folder of frames", path=path)
    files = [p for p in path.iterdir() if is_image(p)]
    if not files:
        raise InputError("folder holds no image frames", path=path)

    def key(p: Path):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    return sorted(files, key=key)


def read_frames_folder(path: str | Path, fps: float = 1.0) -> Video:
    """A folder of numbered frames (PNG/JPEG/...), in natural order (`2.png` before `10.png`)."""
    path = Path(path)
    frames = [_read_image(p) for p in frame_files(path)]
    if len({f.shape for f in frames}) != 1:
        raise InputError("frames have different sizes", path=path)
    return Video(torch.from_numpy(np.stack(frames)), fps, path)


def _as_uint8_frames(frames) -> np.ndarray:
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError("no frames to write")
    return arr


def _even(arr: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by repeating the last row/column (yuv420p needs even sides)."""
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return arr


def write_video(path: str | Path, frames, fps: float, *, audio_from: str | Path | None = None, crf: int = 18,
                lossless: bool = False) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 MP4 at `fps`; copy the first audio stream of
    `audio_from` (trimmed to the video's length). Atomic: on any error nothing is left at `path`."""
    import av

    path = Path(path)
    arr = _even(_as_uint8_frames(frames))
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            if lossless:
                stream = out.add_stream("libx264rgb", rate=rate)
                stream.pix_fmt = "rgb24"
                stream.options = {"qp": "0", "preset": "veryfast"}
            else:
                stream = out.add_stream("libx264", rate=rate)
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "medium"}
            stream.width, stream.height = arr.shape[2], arr.shape[1]
            audio_in = _open(Path(audio_from)) if audio_from is not None else None
            try:
                audio_src = audio_in.streams.audio[0] if audio_in is not None and audio_in.streams.audio else None
                audio_out = out.add_stream("aac", rate=audio_src.rate) if audio_src is not None else None
                for i, img in enumerate(arr):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = i
                    for packet in stream.encode(frame):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
                if audio_src is not None:
                    _copy_audio(audio_in, audio_src, out, audio_out, duration=len(arr) / float(rate))
            finally:
                if audio_in is not None:
                    audio_in.close()
    return path


def _copy_audio(container, src, out, dst, duration: float) -> None:
    """Re-encode the source's audio to AAC up to `duration` seconds (AAC muxes into any MP4)."""
    for frame in container.decode(src):
        if frame.time is not None and frame.time >= duration:
            break
        frame.pts = None
        for packet in dst.encode(frame):
            out.mux(packet)
    for packet in dst.encode():
        out.mux(packet)


def write_image(path: str | Path, frame) -> Path:
    from PIL import Image

    path = Path(path)
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"an image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format={"jpg": "JPEG"}.get(path.suffix.lower().lstrip("."),
                                                                   path.suffix.lstrip(".").upper()))
    return path


# ---- frame sizes ----------------------------------------------------------------------------------
def resize_frames(frames: torch.Tensor, size: tuple[int, int], mode: str = "crop") -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8. crop: scale to cover, centre-crop; letterbox: scale to
    fit, pad black; stretch: plain resize. Antialiased bilinear."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    th, tw = size
    t, h, w, _ = frames.shape
    if (h, w) == (th, tw):
        return frames
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)

    def scale(img: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
        return F.interpolate(img, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)

    if mode == "stretch":
        y = scale(x, th, tw)
    elif mode == "crop":
        s = max(th / h, tw / w)
        oh, ow = max(th, round(h * s)), max(tw, round(w * s))
        y = scale(x, oh, ow)
        top, left = (oh - th) // 2, (ow - tw) // 2
        y = y[:, :, top : top + th, left : left + tw]
    else:
        s = min(th / h, tw / w)
        oh, ow = min(th, max(1, round(h * s))), min(tw, max(1, round(w * s)))
        y = x.new_zeros(t, 3, th, tw)
        top, left = (th - oh) // 2, (tw - ow) // 2
        y[:, :, top : top + oh, left : left + ow] = scale(x, oh, ow)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def unresize_frames(edited: torch.Tensor, source: torch.Tensor, mode: str = "crop") -> torch.Tensor:
    """Frames made at the working size back at the source's size, undoing `resize_frames(source, size,
    mode)`: stretch resizes back; letterbox drops the bars and resizes the picture back; crop resizes the
    edited picture back over the region it was cut from, and the cropped-away borders keep the source's
    pixels (they were never edited). (T, h, w, 3) + (T, H, W, 3) uint8 -> (T, H, W, 3) uint8."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    t, th, tw, _ = edited.shape
    h, w = source.shape[1], source.shape[2]
    if (h, w) == (th, tw):
        return edited
    if mode == "stretch":
        return resize_frames(edited, (h, w), mode="stretch")
    if mode == "letterbox":
        s = min(th / h, tw / w)
        oh, ow = min(th, max(1, round(h * s))), min(tw, max(1, round(w * s)))
        top, left = (th - oh) // 2, (tw - ow) // 2
        return resize_frames(edited[:, top:top + oh, left:left + ow].contiguous(), (h, w), mode="stretch")
    s = max(th / h, tw / w)
    oh, ow = max(th, round(h * s)), max(tw, round(w * s))
    top, left = (oh - th) // 2, (ow - tw) // 2
    y0, x0 = round(top / s), round(left / s)
    rh, rw = min(h - y0, round(th / s)), min(w - x0, round(tw / s))
    out = source[:t].clone()
    out[:, y0:y0 + rh, x0:x0 + rw] = resize_frames(edited, (rh, rw), mode="stretch")
    return out


def hstack_videos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Side by side (T, H, Wa+Wb, 3); b is resized to a's height, frame counts cut to the shorter."""
    n = min(a.shape[0], b.shape[0])
    a, b = a[:n], b[:n]
    if b.shape[1] != a.shape[1]:
        new_w = max(1, round(b.shape[2] * a.shape[1] / b.shape[1]))
        b = resize_frames(b, (a.shape[1], new_w), mode="stretch")
    return torch.cat([a, b], dim=2)
