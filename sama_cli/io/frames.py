"""Frame counts, frame windows and frame sizes, in one place: the Wan VAE's 1+4k frame rule, the frame
window a training row uses, and the release's resolution buckets (docs/sama.md §2, §4). Pure integer and
tensor functions; everything that pads, trims, cuts or sizes a clip (encode, edit, pretexts, codecs)
calls these.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

TEMPORAL_FACTOR = 4  # the Wan VAE compresses time 4x: clips have 1 + 4k frames
FITS = ("trim", "pad")  # how a clip reaches 1 + 4k frames: trim (the release) or repeat the last frame


# ---- frame counts ---------------------------------------------------------------------------------
def frames_up(n: int, k: int = TEMPORAL_FACTOR) -> int:
    """The smallest 1 + k*m >= n (1 for an empty clip): 1, 2, 5, 6 -> 1, 5, 5, 9 for k = 4."""
    return 1 + k * math.ceil(max(0, n - 1) / k)


def frames_down(n: int, k: int = TEMPORAL_FACTOR) -> int:
    """The largest 1 + k*m <= n (0 for an empty clip): 1, 4, 5, 8 -> 1, 1, 5, 5 for k = 4."""
    return 1 + k * ((n - 1) // k) if n >= 1 else 0


def fit_frames(x: torch.Tensor, how: str = "trim", k: int = TEMPORAL_FACTOR) -> torch.Tensor:
    """Fit a clip's first (time) axis to 1 + k*m frames: `trim` keeps the first frames_down(T), `pad`
    repeats the last frame up to frames_up(T). A clip that already fits is returned as is."""
    n = x.shape[0]
    if how == "trim":
        return x[: frames_down(n, k)]
    if how == "pad":
        extra = frames_up(n, k) - n
        return torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]) if extra and n else x
    raise ValueError(f"fit must be one of {', '.join(FITS)}, not {how!r}")


# ---- frame windows --------------------------------------------------------------------------------
RELEASE_MAX_FRAMES = 81  # the release's frame budget (`num_frames` of LoadVideo_decord, unified_dataset.py)
OPENVE_SKIP_FRAMES = 4  # the release drops the first 4 frames of OpenVE-3M pairs (UnifiedDataset.__getitem__)


@dataclass(frozen=True)
class Window:
    """The frames of a clip that one training row uses: file frames start, start + stride, ... (`count` of
    them), chosen once per row from a clip of `frames_total` frames. A pretext is made on exactly these
    frames and the row's source and target are encoded through them (docs/sama.md §5)."""

    start: int
    count: int
    stride: int = 1
    frames_total: int | None = None

    def __post_init__(self) -> None:
        for name in ("start", "count", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"window {name} must be an integer, not {value!r}")
        if self.start < 0 or self.count < 1 or self.stride < 1:
            raise ValueError(f"window needs start >= 0, count >= 1, stride >= 1 (got {self.as_dict()})")
        if self.frames_total is not None and self.end > self.frames_total:
            raise ValueError(f"window {self.as_dict()} runs past the clip's {self.frames_total} frames")

    @property
    def end(self) -> int:
        """One past the last file frame the window takes."""
        return self.start + (self.count - 1) * self.stride + 1

    def indices(self) -> list[int]:
        """The file frame of each window frame."""
        return [self.start + i * self.stride for i in range(self.count)]

    def as_dict(self) -> dict[str, Any]:
        """The JSON record (manifest field `window`, artifact meta `window`)."""
        out: dict[str, Any] = {"start": self.start, "count": self.count, "stride": self.stride}
        if self.frames_total is not None:
            out["frames_total"] = self.frames_total
        return out

    @classmethod
    def from_dict(cls, record: Any) -> Window:
        """A window from its record; a malformed record is a ValueError naming what is wrong."""
        if not isinstance(record, dict) or not {"start", "count"} <= set(record):
            raise ValueError(f"a window is an object with start, count (and stride, frames_total), not {record!r}")
        unknown = set(record) - {"start", "count", "stride", "frames_total"}
        if unknown:
            raise ValueError(f"unknown window keys {sorted(unknown)}")
        return cls(record["start"], record["count"], record.get("stride", 1), record.get("frames_total"))


def choose_window(frames_total: int, *, max_frames: int | None = RELEASE_MAX_FRAMES, stride: int = 1,
                  skip: int = 0, fit: str = "trim", k: int = TEMPORAL_FACTOR) -> Window:
    """The release's frame window of a clip of `frames_total` frames (LoadVideo_decord.get_num_frames and
    UnifiedDataset.__getitem__ in diffsynth/trainers/unified_dataset.py): the clip's first `max_frames`
    frames (every `stride`-th, ours: the release reads consecutive frames), of which the ones before file
    frame `skip` are dropped (the release's `[4:]` for OpenVE-3M, which therefore keeps 77 of 81), then
    brought to 1 + k*m frames: `trim` keeps frames_down(n) (the release), `pad` keeps all n and leaves
    the padding to whoever encodes or perturbs them. A one-frame clip (an image) has nothing to skip.

    200 frames -> start 0, count 81; with skip 4 -> start 4, count 77; 46 frames -> 45 (trim), 46 (pad)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if stride < 1 or skip < 0 or (max_frames is not None and max_frames < 1) or frames_total < 1:
        raise ValueError(f"no window for {frames_total} frames with max_frames={max_frames}, stride={stride}, "
                         f"skip={skip}")
    if frames_total == 1:
        skip = 0
    read = len(range(0, frames_total, stride))  # the strided prefix the budget is taken from
    budget = read if max_frames is None else min(read, max_frames)
    dropped = -(-skip // stride)  # budget positions before file frame `skip`
    n = budget - dropped
    if n < 1:
        raise ValueError(f"skipping {skip} frames leaves none of the clip's {frames_total} (budget {budget}, "
                         f"stride {stride})")
    count = frames_down(n, k) if fit == "trim" else n
    return Window(dropped * stride, count, stride, frames_total)


@dataclass(frozen=True)
class WindowRule:
    """How a row's window is chosen when the row has none (`choose_window`'s budget, stride and skip);
    `sama perturb` and `sama encode` take it from --max-frames, --stride and --skip-frames. `skip` is the
    default for rows without their own `skip_frames` (OpenVE-3M: 4, OPENVE_SKIP_FRAMES)."""

    max_frames: int | None = RELEASE_MAX_FRAMES
    stride: int = 1
    skip: int = 0

    def __post_init__(self) -> None:
        if (self.max_frames is not None and self.max_frames < 1) or self.stride < 1 or self.skip < 0:
            raise ValueError(f"frame window needs max frames >= 1, stride >= 1 and skip >= 0 (got max frames "
                             f"{self.max_frames}, stride {self.stride}, skip {self.skip})")

    def choose(self, frames_total: int, *, skip: int | None = None, fit: str = "trim",
               k: int = TEMPORAL_FACTOR) -> Window:
        """This rule's window of a clip of `frames_total` frames; `skip` overrides the rule's (a row's own)."""
        return choose_window(frames_total, max_frames=self.max_frames, stride=self.stride,
                             skip=self.skip if skip is None else skip, fit=fit, k=k)


# ---- frame sizes ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def bucket_list(area: int = 480 * 832, multiple: int = 32, min_ratio: float = 0.5,
                max_ratio: float = 2.0) -> tuple[tuple[int, int], ...]:
    """The release's resolution buckets (`get_all_resolution`): for every height h, a multiple of
    `multiple` between sqrt(area / 2) and sqrt(2 area) (rounded outwards), the width round(area / h)
    to the multiple, kept when 0.5 <= w / h <= 2. Returns (height, width) pairs, tallest last."""
    h_min = math.floor(math.sqrt(area / max_ratio) / multiple) * multiple
    h_max = math.ceil(math.sqrt(area / min_ratio) / multiple) * multiple
    out = []
    for h in range(max(h_min, multiple), h_max + 1, multiple):
        w = round(area / h / multiple) * multiple
        if w > 0 and min_ratio <= w / h <= max_ratio:
            out.append((h, w))
    return tuple(out)


def bucket_size(height: int, width: int, *, area: int = 480 * 832, multiple: int = 32,
                min_ratio: float = 0.5, max_ratio: float = 2.0) -> tuple[int, int]:
    """(H, W) of the bucket whose width / height is closest to the clip's, the first on a tie (the
    release's `find_closest_resolution`): 480x832 -> (480, 832), 1080x1920 -> (480, 832)."""
    buckets = bucket_list(area, multiple, min_ratio, max_ratio)
    aspect = width / height
    return min(buckets, key=lambda hw: abs(hw[1] / hw[0] - aspect))  # min keeps the first of equals


def choose_size(height: int, width: int, *, size: tuple[int, int] | None = None, bucket: bool = True,
                area: int = 480 * 832, multiple: int = 32) -> tuple[int, int]:
    """The working size, by one rule for encode and edit: an explicit size wins; else the ~`area` bucket
    of the clip's aspect ratio (the release resizes every clip to its bucket); with `bucket=False`
    (`--native`), the clip's own size when its sides are multiples of `multiple` and it is no larger
    than the bucket area, else the bucket."""
    if size is not None:
        return size
    fits = height % multiple == 0 and width % multiple == 0 and height * width <= area * 1.05
    if fits and not bucket:
        return height, width
    return bucket_size(height, width, area=area, multiple=multiple)
