"""Whole videos: clips longer than the model's window, denoised as one trajectory over overlapping windows.

A window is a run of latent frames as long as the model was trained on (81 frames, 21 latent frames, for
the Wan presets). At every sampling step each window's velocity is predicted on its own slice (its own
RoPE grid from frame 0, its own aligned source slice) and the clip's velocity is their blend: a frame in
several windows takes the windows' velocities weighted by ramps that rise across the overlap, normalised
so that the weights of every frame sum to one. One trajectory for the whole clip, nothing stitched after.

The semantic tokens (Semantic Anchoring) are one edit for the whole clip: by default one shared state,
stepped on the mean of the windows' semantic velocities; `per-window` gives each window its own.

Caveat for the Wan VAE: its first latent frame encodes one frame and the others four, so a window that
starts inside the clip starts on a four-frame latent, where training always started on a one-frame one.
The toy codec has no such asymmetry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sama_cli.core.errors import ConfigError

SEMANTIC_MODES = ("shared", "per-window")


def default_overlap(window: int, temporal_factor: int) -> int:
    """About a third of the window, in frames, a multiple of the codec's temporal factor (at least one
    latent frame, shorter than the window): 24 of 81 for Wan (6 latent frames), 2 of 5 for the toy model,
    none for a one-frame window."""
    overlap = temporal_factor * max(1, math.ceil(window / 3) // temporal_factor)
    return max(0, min(overlap, (window - 1) // temporal_factor * temporal_factor))  # shorter than the window


def latent_frames(frames: int, temporal_factor: int) -> int:
    """Latent frames of `frames` (1 + 4k) video frames: 1 + (frames - 1) / k."""
    return 1 + (frames - 1) // temporal_factor


def plan_spans(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows [start, stop) over `total` latent frames, each `window` long (the trained length), as few as
    keep every overlap at least `overlap`, spread evenly from the first frame to the last (rounded down).
    One window [0, total) when the clip fits."""
    if window < 1:
        raise ConfigError(f"the window must hold at least one latent frame, not {window}")
    if not 0 <= overlap < window:
        raise ConfigError(f"the overlap must be shorter than the window ({window} latent frames), not {overlap}")
    if total <= window:
        return [(0, total)]
    n = max(2, math.ceil((total - overlap) / (window - overlap)))
    starts = [(k * (total - window)) // (n - 1) for k in range(n)]
    return [(s, s + window) for s in starts]


def blend_weights(spans: list[tuple[int, int]], total: int) -> torch.Tensor:
    """(n_windows, total) float64: window k's share of each latent frame. Inside a window a frame weighs
    1, except where it overlaps a neighbour: there the weight ramps linearly, (i + 1) / (L + 1) across an
    overlap of L frames from the window's edge inwards; then every frame's weights are divided by their
    sum (which is positive: every frame lies in some window). Columns sum to one."""
    w = torch.zeros(len(spans), total, dtype=torch.float64)
    for k, (a, b) in enumerate(spans):
        ramp = torch.ones(b - a, dtype=torch.float64)
        if k > 0:  # overlap with the previous window at the leading edge
            n = spans[k - 1][1] - a
            ramp[:n] = torch.minimum(ramp[:n], torch.arange(1, n + 1, dtype=torch.float64) / (n + 1))
        if k + 1 < len(spans):  # and with the next one at the trailing edge
            n = b - spans[k + 1][0]
            ramp[b - a - n:] = torch.minimum(ramp[b - a - n:], torch.arange(n, 0, -1, dtype=torch.float64) / (n + 1))
        w[k, a:b] = ramp
    total_w = w.sum(0)
    if (total_w <= 0).any():  # pragma: no cover - plan_spans covers every frame
        raise ConfigError("the windows do not cover every frame")
    return w / total_w


@dataclass
class WindowPlan:
    """How `sample` walks a long clip: the windows (latent frames), their blend weights, how the semantic
    tokens are shared, and how many windows go through the model in one batch."""

    spans: list[tuple[int, int]]
    weights: torch.Tensor  # (n_windows, T) float64, columns sum to one
    semantic: str = "shared"
    batch: int = 1

    @classmethod
    def make(cls, total: int, window: int, overlap: int, *, semantic: str = "shared", batch: int = 1) -> WindowPlan:
        if semantic not in SEMANTIC_MODES:
            raise ConfigError(f"semantic tokens must be one of {SEMANTIC_MODES}, not {semantic!r}")
        if batch < 1:
            raise ConfigError(f"--window-batch must be at least 1, not {batch}")
        spans = plan_spans(total, window, overlap)
        return cls(spans, blend_weights(spans, total), semantic, batch)

    @property
    def single(self) -> bool:
        """One window over the whole clip: the plain sampler, bit for bit."""
        return len(self.spans) == 1

    def groups(self) -> list[list[int]]:
        """Window indices in batches of `batch`."""
        idx = list(range(len(self.spans)))
        return [idx[i:i + self.batch] for i in range(0, len(idx), self.batch)]
