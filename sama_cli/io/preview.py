"""Clips a web browser can play: which files play as they are, and a small preview copy of the others.

Browsers play H.264 4:2:0 in MP4 and VP8/VP9 in WebM (Chromium, Firefox, Safari alike); the lossless RGB
H.264 our toy world and `--lossless` edits write (`libx264rgb`, 4:4:4 `gbrp`), GIFs, MKVs and most other
files do not play in a `<video>` element. A preview copy is H.264 yuv420p MP4 with the clip's frame count
and fps (so its duration is the clip's), its longer side at most `max_side`, and even sides (4:2:0
needs them: an odd side is padded by repeating the last row or column, `io/video.py` `write_video`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sama_cli.core.errors import SamaError
from sama_cli.io.video import VideoInfo, is_image, probe, read_video, resize_frames, write_image, write_video

# (container suffix, codec, pixel format) a browser plays as it is
PLAYABLE = {(".mp4", "h264", "yuv420p"), (".m4v", "h264", "yuv420p"), (".mp4", "vp9", "yuv420p"),
            (".webm", "vp9", "yuv420p"), (".webm", "vp8", "yuv420p")}
BROWSER_IMAGES = (".png", ".jpg", ".jpeg", ".webp")
SMALL_SIDE = 128  # clips whose longer side is at most half this are previewed at an even multiple of their size


@dataclass
class Playable:
    """What a page shows for one clip: `path` (the clip itself, or its preview copy), the clip's own
    frame count and fps, and `note` saying what the preview changed (empty when the clip plays as is)."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    image: bool = False
    note: str = ""

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def plays_in_browser(info: VideoInfo) -> bool:
    return (info.path.suffix.lower(), info.codec, info.pix_fmt) in PLAYABLE and info.rotation == 0


def preview_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is at most `max_side`, each side even."""
    scale = min(1.0, max_side / max(height, width))
    h, w = max(2, round(height * scale)), max(2, round(width * scale))
    return h + h % 2, w + w % 2


def playable(path: str | Path, previews: Path, max_side: int = 480) -> Playable:
    """The clip as a page can show it: itself when a browser plays it, else a preview copy in `previews`
    (made once; reused while it is newer than the clip). Raises InputError for an unreadable clip."""
    path = Path(path)
    if is_image(path):
        info = probe(path)
        if path.suffix.lower() in BROWSER_IMAGES:
            return Playable(path, 1, 1.0, info.width, info.height, image=True)
        target = previews / f"{_name(path)}.png"
        if not _fresh(target, path):  # read only when the preview is to be made
            write_image(target, read_video(path).frames[0])
        return Playable(target, 1, 1.0, info.width, info.height, image=True, note=f"preview copy (PNG of a "
                        f"{path.suffix.lstrip('.').upper()} image)")
    info = probe(path)
    if plays_in_browser(info):
        return Playable(path, info.frames, info.fps, info.width, info.height)
    h, w = preview_size(info.height, info.width, max_side)
    # a tiny clip (the toy world's 32x32) is blown up by whole pixels first: 4:2:0 keeps one colour per 2x2
    # pixels, which would smear every 1-px edge of a 32x32 frame into its neighbours
    k = max(1, 2 * (SMALL_SIDE // (2 * max(info.height, info.width))))  # even: even sides, no padding
    target = previews / f"{_name(path, f'{max_side}/{k}')}.mp4"
    if not _fresh(target, path):
        frames = read_video(path).frames
        if k > 1:
            frames = frames.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
        elif (h, w) != (info.height, info.width):
            frames = resize_frames(frames, (h, w), mode="stretch")
        write_video(target, frames, info.fps, crf=20)
    what = f"{info.codec} {info.pix_fmt}".strip() + f" {path.suffix.lstrip('.').upper()}".rstrip()
    changed = ""
    if k > 1:
        changed = f", shown {k}x by whole pixels"
    elif (h, w) != (info.height, info.width):
        scaled = max(h, w) < max(info.height, info.width) - 1
        changed = f", {'scaled' if scaled else 'padded'} from {info.width}x{info.height} to {w}x{h}"
    return Playable(target, info.frames, info.fps, info.width, info.height,
                    note=f"preview copy: H.264 4:2:0 (the clip: {what}{changed})")


def try_playable(path: str | Path | None, previews: Path, max_side: int = 480) -> Playable | str:
    """`playable`, or the one-line reason the clip cannot be shown (missing, unreadable)."""
    if path is None:
        return "no video"
    try:
        return playable(path, previews, max_side)
    except SamaError as e:
        return e.message
    except Exception as e:  # noqa: BLE001 - a codec's own error is this clip's trouble, not the page's
        return f"{path}: {type(e).__name__}: {e}"


def _name(path: Path, how: str = "") -> str:
    """A file name for the preview of `path`: its stem, made safe, and a hash of its full path and of `how`
    the preview is made (its size rules), so that a preview made by other rules is never taken for it."""
    full = f"{path.resolve()}|{how}"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:60]
    return f"{stem}-{hashlib.sha1(full.encode()).hexdigest()[:10]}"


def _fresh(target: Path, source: Path) -> bool:
    return target.is_file() and target.stat().st_mtime >= source.stat().st_mtime
