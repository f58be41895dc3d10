"""Motion-alignment pretexts (docs/sama.md §5): pure tensor functions, seeded by a `torch.Generator`.

Every function takes a clip laid out `(T, H, W, ...)` (pixel frames `(T, H, W, 3)`; latents are
permuted from `(C, T, H, W)` by `perturb_latents`) and returns the perturbed clip and a JSON-able
record of what was done. Release behaviour is the default, the paper's variants are options:

- cube-inpaint: blacks out `ratio` (0.3) of the clip. Release (`temporal`): one contiguous run of
  round(0.3 T) whole frames, never frame 0. Option `cube`: one spatio-temporal box with `ratio` of the
  volume (each side ratio^(1/3) of its axis), also never touching frame 0.
- speed: plays the clip at factor s in {0.5, 2.0}: output frame i is input frame round(i s) (Python's
  round-half-even, as the release), n_out = round(T / s); 2x keeps every other frame, 0.5x repeats
  frames. The result is trimmed (release) or padded by repeating the last frame to 4k+1 frames. Which
  factor a clip gets: the release alternates (`speed_factor`: the 1st, 3rd, ... speed sample 2x, the
  2nd, 4th, ... 0.5x; `order="alternate"`, the default); `order="random"` draws one from the generator.
  The record holds the factor and `indices`, the input frame of every output frame (the fit's
  padding repeats the last).

Every frame index in a record (mask start/end, cube box, tubes, speed indices) counts frames of the clip
the function was given: for a row, that is its frame window (`io.frames.Window`), frame i being file
frame start + i * stride.
- tube-shuffle: cuts T/H/W into splits (release 4x4x4, paper 2x2x2; sizes differ by at most one, the
  first parts larger) and permutes tubes; only tubes of equal shape swap. The record holds the
  permutation, and `unshuffle` inverts it exactly.

Pixel path (`perturb_pixels`): every output has 4k+1 frames (the Wan VAE's rule), by the same `fit`
for every task: trim (default) or pad by repeating the last frame. Speed fits its output (release);
cube-inpaint and tube-shuffle keep the length, so the clip is fitted first and the mask ratio and the
tube permutation describe the frames that are written. A 4k+1 input is never changed by the fit.

Latent fast path (`perturb_latents`): cube-inpaint and tube-shuffle act on the latent grid directly,
skipping decode/perturb/re-encode. It differs from perturbing pixels: a latent frame of the Wan VAE
covers 4 video frames (so masks and tubes align to 4-frame groups) and the fill is a latent value
(the codec's encoding of black where known, e.g. the pixel codec; else 0, the latent mean) rather than
black pixels run through the VAE. Speed perturbation changes the frame count through the VAE's
temporal compression and is refused on latents.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sama_cli.core.errors import InputError
from sama_cli.io.frames import FITS, fit_frames

TASKS = ("none", "cube-inpaint", "speed", "tube-shuffle")
# One caption prefix per task. Inpainting's is the paper's; the release publishes no others, so the
# speed and shuffle prefixes are ours.
TASK_PREFIXES = {
    "none": "",
    "cube-inpaint": "[Complete the missing regions in the video.]",
    "speed": "[Restore the video to its normal playback speed.]",
    "tube-shuffle": "[Restore the shuffled video to its original order.]",
}
DEFAULT_TASK_RATIO = (1.0, 2.0, 3.0, 4.0)  # none : inpaint : speed : shuffle (docs/sama.md §5)
LATENT_TASKS = ("cube-inpaint", "tube-shuffle")  # the tasks with a latent fast path (speed needs pixels)


# ---- cube inpainting ------------------------------------------------------------------------------
def cube_inpaint(x: torch.Tensor, g: torch.Generator, *, ratio: float = 0.3, mode: str = "temporal",
                 fill: float | int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    n, h, w = x.shape[:3]
    out = x.clone()
    if mode == "temporal":
        k = min(int(round(n * ratio)), n - 1)  # frame 0 is never masked, so at most n-1 frames
        if k <= 0:
            return out, {"mode": mode, "ratio": ratio, "start": None, "end": None}
        start = int(torch.randint(1, n - k + 1, (1,), generator=g))
        out[start : start + k] = fill
        return out, {"mode": mode, "ratio": ratio, "start": start, "end": start + k}
    if mode == "cube":
        side = ratio ** (1 / 3)
        kt, kh, kw = (max(1, min(dim, round(dim * side))) for dim in (n - 1, h, w))
        if n <= 1:
            return out, {"mode": mode, "ratio": ratio, "box": None}
        t0 = int(torch.randint(1, n - kt + 1, (1,), generator=g))
        y0 = int(torch.randint(0, h - kh + 1, (1,), generator=g))
        x0 = int(torch.randint(0, w - kw + 1, (1,), generator=g))
        out[t0 : t0 + kt, y0 : y0 + kh, x0 : x0 + kw] = fill
        return out, {"mode": mode, "ratio": ratio, "box": [t0, t0 + kt, y0, y0 + kh, x0, x0 + kw]}
    raise ValueError(f"cube-inpaint mode must be temporal or cube, not {mode!r}")


# ---- speed ----------------------------------------------------------------------------------------
def speed_indices(n: int, factor: float) -> list[int]:
    """Source frame of each output frame: round(i * factor), clipped; n_out = round(n / factor)."""
    n_out = max(1, int(round(n / factor)))
    return [min(int(round(i * factor)), n - 1) for i in range(n_out)]


SPEED_ORDERS = ("alternate", "random")  # how a clip's factor is chosen: the release's alternation, or a draw


def speed_factor(k: int, factors: tuple[float, ...] = (0.5, 2.0)) -> float:
    """The factor of the k-th (0-based) speed sample under the release's alternation
    (SpeedChangeFrames._sample_speed in diffsynth/trainers/pretext.py: a toggle that starts off and flips
    before every sample, returning choices[1] when on): factors[1], factors[0], factors[1], ... For
    (0.5, 2.0): 2x, 0.5x, 2x, ... One factor is always that factor; the release alternates between the
    first two only, so more than two is an error here (draw them with order "random")."""
    if not factors or len(factors) > 2:
        raise ValueError(f"the alternating speed order takes one or two factors, not {list(factors)}")
    if k < 0:
        raise ValueError(f"speed sample index must be >= 0, not {k}")
    return float(factors[1] if len(factors) == 2 and k % 2 == 0 else factors[0])


def speed(x: torch.Tensor, g: torch.Generator, *, factors: tuple[float, ...] = (0.5, 2.0), fit: str = "trim",
          factor: float | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Play the clip at `factor` (drawn from `factors` with `g` when None; callers following the
    release's alternation pass `speed_factor(k, factors)`)."""
    if factor is None:
        factor = float(factors[int(torch.randint(0, len(factors), (1,), generator=g))])
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, not {factor}")
    idx = speed_indices(x.shape[0], factor)
    out = fit_frames(x[idx], fit)
    return out, {"factor": factor, "fit": fit, "frames_in": x.shape[0], "frames_out": out.shape[0],
                 "indices": idx[: out.shape[0]] + [idx[-1]] * max(0, out.shape[0] - len(idx))}


# ---- tube shuffle ---------------------------------------------------------------------------------
def split_sizes(n: int, parts: int) -> list[int]:
    """Release rule: sizes differ by at most one, the first parts take the remainder."""
    base, rem = divmod(n, parts)
    return [base + (1 if i < rem else 0) for i in range(parts)]


def _tubes(shape: tuple[int, int, int], splits: tuple[int, int, int]) -> list[tuple[slice, slice, slice]]:
    ranges = []
    for n, parts in zip(shape, splits, strict=True):
        edges = [0]
        for s in split_sizes(n, parts):
            edges.append(edges[-1] + s)
        ranges.append([slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return [(t, y, x) for t in ranges[0] for y in ranges[1] for x in ranges[2]]


def _move_blocks(x: torch.Tensor, moves: list[tuple[tuple[slice, ...], tuple[slice, ...]]]) -> torch.Tensor:
    """A new tensor whose block `dst` is x's block `src`, for every (dst, src) in `moves`. On the CPU
    numpy does the strided block copies (about twice torch's speed for uint8 frames: `make bench`)."""
    if x.device.type == "cpu" and x.dtype != torch.bfloat16 and not x.requires_grad:
        a = x.numpy()
        out = np.empty_like(a)
        for dst, src in moves:
            out[dst] = a[src]
        return torch.from_numpy(out)
    out_t = torch.empty_like(x)
    for dst, src in moves:
        out_t[dst] = x[src]
    return out_t


def tube_shuffle(x: torch.Tensor, g: torch.Generator, *, splits: tuple[int, int, int] = (4, 4, 4),
                 keep_last_frame: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Permute tubes within groups of equal shape; record `perm[dst] = src` over tubes in T/H/W order."""
    main = x[:-1] if keep_last_frame and x.shape[0] > 1 else x
    shape = tuple(main.shape[:3])
    if any(n < p for n, p in zip(shape, splits, strict=True)):
        raise InputError(f"clip of {shape[0]}x{shape[1]}x{shape[2]} is too small for {splits} tube splits")
    tubes = _tubes(shape, splits)
    sizes = [tuple(s.stop - s.start for s in tube) for tube in tubes]
    perm = list(range(len(tubes)))
    groups: dict[tuple, list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    for idxs in groups.values():
        if len(idxs) > 1:
            order = torch.randperm(len(idxs), generator=g).tolist()
            for dst, k in zip(idxs, order, strict=True):
                perm[dst] = idxs[k]
    out_main = _move_blocks(main, [(tubes[dst], tubes[src]) for dst, src in enumerate(perm)])
    out = torch.cat([out_main, x[-1:]]) if main is not x else out_main
    return out, {"splits": list(splits), "keep_last_frame": keep_last_frame, "perm": perm}


def unshuffle(x: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
    """Invert `tube_shuffle` exactly from its record."""
    keep = record["keep_last_frame"] and x.shape[0] > 1
    main = x[:-1] if keep else x
    tubes = _tubes(tuple(main.shape[:3]), tuple(record["splits"]))
    out = _move_blocks(main, [(tubes[src], tubes[dst]) for dst, src in enumerate(record["perm"])])
    return torch.cat([out, x[-1:]]) if keep else out


# ---- dispatch -------------------------------------------------------------------------------------
def apply_task(task: str, x: torch.Tensor, g: torch.Generator, **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run one task on a (T, H, W, ...) clip; the record names the task and its prefix."""
    if task == "cube-inpaint":
        out, rec = cube_inpaint(x, g, **options)
    elif task == "speed":
        out, rec = speed(x, g, **options)
    elif task == "tube-shuffle":
        out, rec = tube_shuffle(x, g, **options)
    elif task == "none":
        out, rec = x, {}
    else:
        raise ValueError(f"unknown pretext task {task!r} (known: {', '.join(TASKS)})")
    return out, {"task": task, "prefix": TASK_PREFIXES[task], **rec}


def perturb_pixels(frames_thwc: torch.Tensor, task: str, g: torch.Generator, *, fit: str = "trim",
                   **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The pixel path on (T, H, W, 3) frames: the task, with the output fitted to 4k+1 frames."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    n = frames_thwc.shape[0]
    if task == "speed":
        out, rec = apply_task(task, frames_thwc, g, fit=fit, **options)
    else:
        out, rec = apply_task(task, fit_frames(frames_thwc, fit), g, **options)
    return out, {**rec, "fit": fit, "frames_in": n, "frames_out": out.shape[0], "space": "pixel"}


def perturb_latents(latents_cthw: torch.Tensor, task: str, g: torch.Generator, *, fill: float = 0.0,
                    **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The latent fast path on (C, T, H, W) latents (see the module docstring for how it differs)."""
    if task == "speed":
        raise InputError("speed perturbation changes the frame count through the VAE's temporal compression; "
                         "perturb the video in pixel space and encode it instead")
    if task == "cube-inpaint":
        options.setdefault("fill", fill)
    x = latents_cthw.permute(1, 2, 3, 0)  # (T, H, W, C)
    out, rec = apply_task(task, x, g, **options)
    return out.permute(3, 0, 1, 2).contiguous(), {**rec, "space": "latent"}


def choose_task(weights: tuple[float, ...] | list[float], g: torch.Generator) -> str:
    """Draw none/inpaint/speed/shuffle with the given ratio (docs/sama.md §5: 1:2:3:4)."""
    w = torch.tensor(list(weights), dtype=torch.float64)
    if w.numel() != len(TASKS) or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"task ratio needs {len(TASKS)} non-negative weights with a positive sum, not {list(weights)}")
    return TASKS[int(torch.multinomial(w, 1, generator=g))]


def row_generator(seed: int, key: str) -> torch.Generator:
    """A generator seeded by (seed, row id): adding rows never changes another row's perturbation."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % (2**63 - 1))


def prefixed(prefix: str, caption: str) -> str:
    return f"{prefix} {caption}".strip() if prefix else caption


def black_fill(codec_meta: dict[str, Any] | None) -> float:
    """The normalized latent value of black pixels, where the codec makes it a constant."""
    if codec_meta and codec_meta.get("name") == "pixel":
        return -1.0 / float(codec_meta.get("scale", 0.5))
    return 0.0
