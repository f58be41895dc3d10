"""Frame counts and frame sizes, in one place: the Wan VAE's 1+4k frame rule and the release's resolution
buckets (docs/sama.md §2, §4). Pure integer and tensor functions; everything that pads, trims or sizes a
clip (encode, edit, pretexts, codecs) calls these.
"""

from __future__ import annotations

import functools
import math

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
