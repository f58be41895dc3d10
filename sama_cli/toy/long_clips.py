"""`make long-videos`: toy clips several windows long, edited end to end, scored frame by frame (issue 16).

Each seed makes its own long clips with `sama synth --frames N` (every edit kind in turn; seeds other than
the 0 the embedded model was trained on, so every scene is new) and edits them with the model through
`sama edit --manifest`'s library call (`edit_batch`), once with one semantic state shared by all windows
and once with one per window (`--semantic-windows`). A third arm is the reference a seam measure must
catch: the clip cut into window-long pieces, each edited alone (`Editor.edit_frames`) and concatenated.

Every frame is scored by the exact oracle (the toy world's edit accuracy, per frame) and classed by the
window plan `sama edit` used (edit/windows.py):
- a frame is *next to a boundary* when two or more windows cover it (the overlap, where velocities are
  blended); else it is *interior* (one window denoises it alone), and interior frames are *mid-clip*
  unless that window is the first or the last one (the clip's own ends);
- a pair of consecutive frames (t, t+1) *crosses a window edge* when the windows covering t are not
  those covering t+1 (a window starts or ends between them), else it lies *inside* a window.
The frame-to-frame difference is the mean absolute difference (0-255) of consecutive frames, of the
edit and of the true target (objects move), and the error between the two changes.

    python -m sama_cli.toy.long_clips --out out/long_videos --doc docs/long_videos.md --seeds 1 2 3
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sama_cli.toy.study import model_note, study_model, study_parser, synth_clips, world_grid, write_study

ARMS = {"shared": "shared semantic tokens (default)", "per-window": "per-window semantic tokens",
        "cut": "reference: cut into pieces, each edited alone"}
ACC_CLASSES = ("all", "boundary", "interior", "middle", "end")
PAIR_CLASSES = ("across", "inside")
DIFFS = ("edit", "truth", "error")


# ---- where windows meet ---------------------------------------------------------------------------------------
def latent_of(frame: int, k: int) -> int:
    """The latent frame that holds video frame `frame` for a codec of temporal factor k (the Wan VAE: frame 0
    alone, then four frames a latent; the toy codec: one each)."""
    return 0 if frame == 0 else (frame - 1) // k + 1


def covering(spans: list[tuple[int, int]], frames: int, k: int) -> list[tuple[int, ...]]:
    """For each video frame, the indices of the windows (latent [start, stop)) that denoise it."""
    return [tuple(w for w, (a, b) in enumerate(spans) if a <= latent_of(f, k) < b) for f in range(frames)]


def frame_classes(spans: list[tuple[int, int]], frames: int, k: int) -> list[str]:
    """`boundary` (two or more windows), `middle` (one window, neither the first nor the last) or `end`
    (one window, the first or the last: the clip's own ends) for each video frame."""
    last = len(spans) - 1
    out = []
    for cover in covering(spans, frames, k):
        out.append("boundary" if len(cover) > 1 else "end" if cover[0] in (0, last) else "middle")
    return out


def pair_classes(spans: list[tuple[int, int]], frames: int, k: int) -> list[str]:
    """`across` or `inside` for each pair (t, t+1): across when a window starts or ends between them."""
    cover = covering(spans, frames, k)
    return ["across" if cover[t] != cover[t + 1] else "inside" for t in range(frames - 1)]


def cut_spans(total: int, window: int) -> list[tuple[int, int]]:
    """Window-long pieces end to end, no overlap: the cut-and-concatenate reference."""
    return [(a, min(a + window, total)) for a in range(0, total, window)]


# ---- per-frame scores ---------------------------------------------------------------------------------------
def frame_differences(frames_thwc: torch.Tensor) -> torch.Tensor:
    """(T-1,) float64: mean |x[t+1] - x[t]| over pixels and channels, 0-255, of uint8 frames (T, H, W, 3)."""
    x = frames_thwc.double()
    return (x[1:] - x[:-1]).abs().flatten(1).mean(1)


def change_error(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(T-1,) float64: mean |(pred[t+1] - pred[t]) - (truth[t+1] - truth[t])|, 0-255: how far the edit's
    change from one frame to the next is from the truth's (a seam adds to it; motion the truth has does not)."""
    p, t = pred.double(), truth.double()
    return ((p[1:] - p[:-1]) - (t[1:] - t[:-1])).abs().flatten(1).mean(1)


def frame_hits(pred: torch.Tensor, record: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The oracle's edit accuracy frame by frame (toy/world.py `oracle_scores`: edit-mask pixels within
    TOLERANCE of the truth): hits (T,), mask pixels (T,), and the true target (T, H, W, 3) uint8."""
    from sama_cli.toy.world import oracle_hits

    close, mask, truth = oracle_hits(pred, record)
    return (close & mask).flatten(1).sum(1), mask.flatten(1).sum(1), truth


def score_clip(pred: torch.Tensor, record: dict[str, Any], classes: list[str], pairs: list[str]) -> dict[str, Any]:
    """Edit accuracy per frame class (`frame_classes`; pixels pooled over the class's frames, as the oracle
    pools a clip's; None for a class without frames or edit pixels) and the mean frame difference per pair
    class (`pair_classes`)."""
    hits, pixels, truth = frame_hits(pred, record)
    n = pred.shape[0]
    members = {"all": [True] * n, "boundary": [c == "boundary" for c in classes],
               "interior": [c != "boundary" for c in classes], "middle": [c == "middle" for c in classes],
               "end": [c == "end" for c in classes]}
    acc: dict[str, float | None] = {}
    for name, keep in members.items():
        sel = torch.tensor(keep, dtype=torch.bool)
        total = int(pixels[sel].sum())
        acc[name] = int(hits[sel].sum()) / total if total else None
    d_edit, d_truth = frame_differences(pred), frame_differences(truth)
    d_error = change_error(pred, truth)
    diff: dict[str, dict[str, float | None]] = {}
    for name in PAIR_CLASSES:
        sel = torch.tensor([p == name for p in pairs], dtype=torch.bool)
        diff[name] = {key: float(d[sel].mean()) if sel.any() else None
                      for key, d in (("edit", d_edit), ("truth", d_truth), ("error", d_error))}
    mae = float((pred.double() - truth.double()).abs().mean())  # 0-255, the whole clip: a scale for differences
    return {"id": record["id"], "kind": record["edit"]["kind"], "acc": acc, "diff": diff, "mae": mae,
            "frames": n, "classes": {c: classes.count(c) for c in ("boundary", "middle", "end")},
            "pairs": {c: pairs.count(c) for c in PAIR_CLASSES}}


# ---- summaries ---------------------------------------------------------------------------------------------
def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


def run_metrics(clips: list[dict[str, Any]]) -> dict[str, float | None]:
    """One (seed, arm): each measure averaged over clips (the clip is the unit, as in `sama bench`)."""
    out = {f"acc_{c}": _mean([s["acc"][c] for s in clips]) for c in ACC_CLASSES}
    out["mae"] = _mean([s.get("mae") for s in clips])
    if any("vs_shared" in s for s in clips):  # per-window edits: mean |per-window - shared| (0-255)
        out["vs_shared"] = _mean([s.get("vs_shared") for s in clips])
    for p in PAIR_CLASSES:
        for d in DIFFS:
            out[f"diff_{p}_{d}"] = _mean([s["diff"][p][d] for s in clips])
    return out


def _paired(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def mean_std(values: list[float | None]) -> dict[str, float | None]:
    """Mean and sample standard deviation over seeds (std None with fewer than two)."""
    vals = [v for v in values if v is not None]
    return {"mean": statistics.mean(vals) if vals else None, "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals)}


# paired differences, per seed: name -> (measure a, measure b), a - b
CONTRASTS = {"boundary-interior": ("acc_boundary", "acc_interior"), "boundary-middle": ("acc_boundary", "acc_middle"),
             "end-middle": ("acc_end", "acc_middle"),
             "across-inside_edit": ("diff_across_edit", "diff_inside_edit"),
             "across-inside_truth": ("diff_across_truth", "diff_inside_truth"),
             "across-inside_error": ("diff_across_error", "diff_inside_error")}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`runs`: [{"seed", "arm", "clips": [score_clip(...)]}] -> per arm, each measure and each paired
    contrast as mean ± std over seeds, and shared - per-window per seed."""
    per = {(r["seed"], r["arm"]): run_metrics(r["clips"]) for r in runs}
    seeds = sorted({s for s, _ in per})
    arms = [a for a in ARMS if any(arm == a for _, arm in per)]
    out: dict[str, Any] = {"seeds": seeds, "arms": {}, "per_seed": {f"{a}/{s}": m for (s, a), m in per.items()}}
    for arm in arms:
        ms = [per[(s, arm)] for s in seeds if (s, arm) in per]
        entry = {key: mean_std([m[key] for m in ms]) for key in ms[0]}
        entry["contrasts"] = {name: mean_std([_paired(m[a], m[b]) for m in ms]) for name, (a, b) in CONTRASTS.items()}
        out["arms"][arm] = entry
    if "shared" in arms and "per-window" in arms:
        both = [s for s in seeds if (s, "shared") in per and (s, "per-window") in per]
        keys = per[(both[0], "shared")]
        out["shared_minus_per_window"] = {key: mean_std([_paired(per[(s, "shared")][key], per[(s, "per-window")][key])
                                                         for s in both]) for key in keys}
    return out


# ---- the document ---------------------------------------------------------------------------------------------
def _ms(x: dict[str, float | None] | None, digits: int = 3) -> str:
    if not x or x["mean"] is None:
        return "-"
    mean = x["mean"] if round(x["mean"], digits) else 0.0  # no "-0.000"
    return f"{mean:.{digits}f}" + ("" if x["std"] is None else f" ± {x['std']:.{digits}f}")


def _judge(gap: float, spread: float | None) -> str:
    """A difference of means against a spread across seeds: `within`, `outside` or `unjudged` (one seed)."""
    if spread is None:
        return "unjudged"
    return "within" if abs(gap) <= spread else "outside"


def _sign(contrast: dict[str, float | None]) -> str:
    """A paired difference over seeds: clear of zero by more than its own std, or not."""
    m, s = contrast["mean"], contrast["std"]
    if m is None or s is None:
        return "one seed, no spread"
    return "clear of zero by more than its std" if abs(m) > s else "not distinguishable from zero"


def _spread(x: dict[str, float | None], digits: int = 3) -> str:
    return ("seed-to-seed spread (none with one seed)" if x["std"] is None
            else f"seed-to-seed spread {x['std']:.{digits}f}")


def _accuracy_claim(arm: str, a: dict[str, Any], cut: dict[str, Any] | None) -> list[str]:
    b, i, m = a["acc_boundary"], a["acc_interior"], a["acc_middle"]
    if b["mean"] is None or i["mean"] is None:
        return [f"- Accuracy next to a boundary vs interior ({arm}): not measured (no frames of one class)."]
    verdict = _judge(b["mean"] - i["mean"], i["std"])
    holds = {"within": "holds", "outside": "does not hold", "unjudged": "cannot be judged with one seed"}[verdict]
    d = a["contrasts"]["boundary-interior"]
    line = (f"- Accuracy next to a boundary vs interior ({arm} tokens): {b['mean']:.3f} vs {i['mean']:.3f}, a gap of "
            f"{b['mean'] - i['mean']:+.3f} against the interior's {_spread(i)}: the claim {holds}. "
            f"Paired per seed the gap is {_ms(d)} ({_sign(d)}).")
    if m["mean"] is not None:
        dm = a["contrasts"]["boundary-middle"]
        line += (f" Against interior frames mid-clip only (leaving out the clip's two ends, which score "
                 f"{_ms(a['acc_end'])}): {m['mean']:.3f}, paired gap {_ms(dm)} ({_sign(dm)}).")
        if verdict == "outside" and dm["std"] is not None and abs(dm["mean"]) <= dm["std"]:
            line += (" So the gap comes from the clip's ends scoring higher, not from frames next to a boundary "
                     "scoring lower than the interior frames between them.")
        ends = None if cut is None else cut["contrasts"]["end-middle"]
        if ends is not None and ends["mean"] is not None:
            line += (f" The clip's ends minus mid-clip frames: {_ms(a['contrasts']['end-middle'])} here, "
                     f"{_ms(ends)} in the cut reference (same frames, no blending at all)"
                     + (", so the ends' advantage does not come from blending windows." if ends["std"] is not None
                        and ends["mean"] > ends["std"] else "."))
    return [line]


def _larger(x: dict[str, float | None]) -> str:
    """Whether a paired difference (across - inside) says "larger across", beyond its spread over seeds."""
    if x["std"] is None:
        return "cannot be judged with one seed"
    return "does not hold (larger across, by more than its spread)" if x["mean"] > x["std"] else "holds"


def _seam_claim(arm: str, a: dict[str, Any], cut: dict[str, Any] | None) -> list[str]:
    e, t, r = (a["contrasts"][f"across-inside_{x}"] for x in DIFFS)
    if e["mean"] is None:
        return []
    scale = ""
    if cut is not None and cut["mean"]:
        scale = f", {r['mean'] / cut['mean']:.0%} of the cut reference's seam"
    return [f"- Frame-to-frame difference across a window edge minus inside a window ({arm} tokens, 0-255, paired "
            f"per seed): edit {_ms(e, 2)} (true target {_ms(t, 2)}): the claim, no larger across than inside, "
            f"{_larger(e)}. Net of the motion, the error of the change {_ms(r, 2)}{scale}: {_larger(r)}."]


def reading(summary: dict[str, Any]) -> list[str]:
    """The plain reading: each claim, the numbers, and whether it holds within the spread across seeds."""
    arms, lines = summary["arms"], []
    for arm in ("shared", "per-window"):
        if arm in arms:
            cut = arms["cut"]["contrasts"]["across-inside_error"] if "cut" in arms else None
            lines += _accuracy_claim(arm, arms[arm], arms.get("cut")) + _seam_claim(arm, arms[arm], cut)
    if "cut" in arms and arms["cut"]["contrasts"]["across-inside_error"]["mean"] is not None:
        c = arms["cut"]["contrasts"]["across-inside_error"]
        seen = c["mean"] > (c["std"] or 0.0)
        lines.append(f"- Reference, the clip cut into pieces edited alone: the error of the change across the cuts minus "
                     f"inside is {_ms(c, 2)}: " + ("the measure does see the seams of cutting, so a null result above "
                                                   "is not the measure being blind." if seen else
                                                   "the measure does not separate even cut seams at this scale, so "
                                                   "the rows above say little about seams."))
        if "shared" in arms:
            lines.append(f"  Edit accuracy over all frames: cut pieces {_ms(arms['cut']['acc_all'])}, the whole "
                         f"clip in blended windows {_ms(arms['shared']['acc_all'])}.")
    diff = summary.get("shared_minus_per_window")
    if diff:
        sa, pw, acc = arms["shared"]["acc_all"], arms["per-window"]["acc_all"], diff["acc_all"]
        spreads = [x for x in (sa["std"], pw["std"]) if x is not None]
        spread = max(spreads) if spreads else None
        verdict = _judge(acc["mean"], spread)
        verdict = ("no spread to compare with (one seed)" if verdict == "unjudged"
                   else f"{verdict} the larger seed-to-seed spread of the two ({spread:.3f})")
        lines.append(f"- Shared vs per-window semantic tokens: edit accuracy over all frames {sa['mean']:.3f} vs "
                     f"{pw['mean']:.3f}, paired difference {_ms(acc)} ({_sign(acc)}), {verdict}; error of the frame "
                     f"change across window edges, shared minus per-window, {_ms(diff['diff_across_error'], 2)}.")
        apart = arms["per-window"].get("vs_shared")
        if apart and apart["mean"] is not None:
            lines.append(f"  The two edits of a clip differ by {_ms(apart, 2)} per pixel and channel (mean |per-window "
                         f"- shared|, 0-255), against {_ms(arms['shared']['mae'], 2)} between an edit and its true "
                         f"target: the choice moves the video by {apart['mean'] / arms['shared']['mae']['mean']:.0%} "
                         "of the edit's own error.")
    return lines


def render_doc(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """docs/long_videos.md from a summary (`summarise`) and how the run was made (`meta`)."""
    arms = summary["arms"]
    acc_rows = [f"| {ARMS[a]} | {_ms(arms[a]['acc_all'])} | "
                + " | ".join(_ms(arms[a][f"acc_{c}"]) for c in ("boundary", "interior", "middle", "end")) + " | "
                + " | ".join(_ms(arms[a]["contrasts"][c]) for c in ("boundary-interior", "boundary-middle")) + " |"
                for a in arms]
    diff_rows = [f"| {ARMS[a]} | " + " | ".join(_ms(arms[a][f"diff_{p}_{d}"], 2) for d in DIFFS for p in PAIR_CLASSES)
                 + f" | {_ms(arms[a]['contrasts']['across-inside_error'], 2)} |" for a in arms]
    c = meta.get("classes", {})
    lines = [
        "# Whole videos on the toy world: window boundaries and shared semantic tokens", "",
        f"Regenerate: `make long-videos` (`{meta.get('command', 'python -m sama_cli.toy.long_clips')}`); this run "
        f"took {meta.get('seconds', 0) / 60:.1f} min on this machine ({meta.get('threads', '?')} torch thread(s), "
        "2 CPU cores shared with other jobs).", "",
        f"Model: `{meta.get('model', '?')}` (model.safetensors sha256 {meta.get('model_sha', '?')}, "
        f"{meta.get('model_note', '')}), window {meta.get('window', '?')} frames, overlap "
        f"{meta.get('overlap', '?')} frames, {meta.get('steps', '?')} steps. Data: per seed "
        f"s in {summary['seeds']}, `sama synth --seed s --frames {meta.get('frames', '?')} --clips "
        f"{meta.get('clips', '?')} --heldout-frac 0 --grid {meta.get('grid', 1)}` (video edits, every kind in turn, scenes the model never saw), "
        f"edited with `sama edit --manifest ... --seed s --lossless` (the library call `edit_batch`), so a seed "
        f"changes both the clips and the noise. Each clip is {meta.get('frames', '?')} frames = "
        f"{meta.get('windows', '?')} windows; of its frames {c.get('boundary', '?')} are next to a boundary, "
        f"{c.get('middle', '?')} interior mid-clip and {c.get('end', '?')} interior at the clip's ends; of its "
        f"frame pairs {meta.get('pairs', {}).get('across', '?')} cross a window edge and "
        f"{meta.get('pairs', {}).get('inside', '?')} lie inside a window.", "",
        "Definitions (the window plan of `sama edit`, `sama_cli/edit/windows.py`):", "",
        "- *next to a boundary*: a frame that two or more windows cover (the overlap, where their velocities",
        "  are blended); *interior*: a frame one window covers alone; *interior mid-clip*: an interior frame",
        "  whose window is neither the first nor the last (so not one of the clip's own ends).",
        "- *across a window edge*: a pair of consecutive frames (t, t+1) whose covering windows differ (a",
        "  window starts or ends between them); *inside*: the others.",
        "- edit accuracy: the exact oracle's (`toy/world.py`, `oracle_scores`): the share of edit-mask",
        "  pixels within tolerance of the true target, pooled over a class's frames in a clip, then averaged",
        "  over clips; mean ± std over seeds. The last two columns are paired differences, per seed.",
        "- frame difference: mean |x[t+1] - x[t]| (0-255) of the edit, of the true target (objects move), and",
        "  the error of the change, mean |(edit[t+1] - edit[t]) - (truth[t+1] - truth[t])|.", "",
        "## Edit accuracy by frame class", "",
        "| arm | all frames | next to a boundary | interior | interior mid-clip | interior at the clip's ends | "
        "boundary − interior (paired) | boundary − mid-clip (paired) |",
        "|---|---|---|---|---|---|---|---|", *acc_rows, "",
        "The cut reference's frames are classed by the windowed edits' plan (the same frames), not by its pieces:",
        "its row shows what those frames score when nothing is blended.", "",
        "## Frame-to-frame difference (0-255)", "",
        "| arm | edit, across | edit, inside | truth, across | truth, inside | error, across | error, inside | "
        "error, across − inside (paired) |",
        "|---|---|---|---|---|---|---|---|", *diff_rows, "",
        "## Reading", "",
        *reading(summary), "",
        "- Scale caveat: the toy model's window is 5 frames with an overlap of 2, so no frame lies more than one",
        "  frame from an overlap: *interior* here means \"denoised by one window alone\", not \"far from any",
        "  boundary\" as a Wan window of 81 frames allows. With three seeds a standard deviation is a rough",
        "  spread; a difference inside it is no evidence either way.", "",
        "Per-seed and per-clip numbers: `long_videos.json` beside this file. Time per frame and peak memory",
        "for 1, 2 and 4 windows: the `whole videos` rows of `make bench` (`sama_cli/perf/long_edit_speed.py`).", ""]
    return "\n".join(lines)


# ---- the run ---------------------------------------------------------------------------------------------------
def _digest(model: Path) -> str:
    weights = model / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file() else "?"


def edit_cut(editor, rows: list[dict], out: Path, sampling, settings, window: int) -> dict[str, torch.Tensor]:
    """The reference: each window-long piece edited alone (its own noise and semantic tokens), concatenated."""
    from sama_cli.io.video import read_video, write_video

    out.mkdir(parents=True, exist_ok=True)
    edits = {}
    for row in rows:
        video = read_video(row["source"])
        pieces = []
        for j, (a, b) in enumerate(cut_spans(video.num_frames, window)):
            piece_sampling = dataclasses.replace(sampling, seed=sampling.seed * 1000 + j)
            pieces.append(editor.edit_frames(video.frames[a:b], row["instruction"], piece_sampling, settings)[0])
        edits[row["id"]] = torch.cat(pieces)
        write_video(out / f"{row['id']}.mp4", edits[row["id"]], video.fps, lossless=True)
    return edits


def _edit_arm(editor, arm: str, rows: list[dict], folder: Path, sampling, settings) -> dict[str, torch.Tensor]:
    """{id: edited frames (T, H, W, 3) uint8} of one arm: `sama edit --manifest`'s library call, or the cut
    reference."""
    from sama_cli.edit.editor import edit_batch
    from sama_cli.io.video import read_video

    if arm == "cut":
        return edit_cut(editor, rows, folder / "edits_cut", sampling, settings, settings.window)
    report = edit_batch(editor, rows, folder / f"edits_{arm}", sampling, settings, lossless=True)
    if report.failed:
        raise SystemExit(f"long-videos: edits failed: {report.failed}")
    return {d["id"]: read_video(d["output"]).frames for d in report.done}


def run_seed(editor, seed: int, root: Path, clips: int, frames: int, grid: int = 1) -> list[dict[str, Any]]:
    """Synthesise one seed's clips, edit them in every arm, score every frame."""
    from sama_cli.edit.editor import EditRequest, manifest_rows
    from sama_cli.edit.windows import default_overlap, latent_frames
    from sama_cli.io.frames import frames_up
    from sama_cli.toy.world import load_scene_record

    folder = root / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)  # fresh: the model may have changed since the last run
    synth_clips(folder / "toy", seed, clips, frames, grid)
    rows, _ = manifest_rows(folder / "toy" / "manifest.jsonl")
    records = {row["id"]: {**load_scene_record(row["scene"]), "id": row["id"]} for row in rows}
    k = editor.codec.temporal_factor
    runs, edits = [], {}
    for arm in ARMS:
        sampling, settings = EditRequest(seed=seed, semantic_windows="shared" if arm == "cut" else arm
                                         ).resolve(editor.defaults)
        t0 = time.perf_counter()
        edits[arm] = _edit_arm(editor, arm, rows, folder, sampling, settings)
        seconds = time.perf_counter() - t0
        scored = []
        for row in rows:
            pred = edits[arm][row["id"]]
            n = pred.shape[0]
            plan = editor.window_plan(latent_frames(frames_up(n, k), k), settings)
            # the cut reference's seams are where its pieces meet, in video frames
            pairs = pair_classes(cut_spans(n, settings.window), n, 1) if arm == "cut" else pair_classes(plan.spans, n, k)
            scored.append(score_clip(pred, records[row["id"]], frame_classes(plan.spans, n, k), pairs))
            if arm == "per-window":  # how far apart the two kinds of semantic tokens take the same clip (0-255)
                scored[-1]["vs_shared"] = float((pred.double() - edits["shared"][row["id"]].double()).abs().mean())
        overlap = default_overlap(settings.window, k) if settings.overlap is None else settings.overlap
        runs.append({"seed": seed, "arm": arm, "seconds": seconds, "windows": len(plan.spans), "clips": scored,
                     "window": settings.window, "overlap": overlap, "steps": sampling.steps})
    return runs


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, "long_videos", clips=12, threads=1)
    p.add_argument("--frames", type=int, default=29, help="frames per clip (4k+1)")
    args = p.parse_args(argv)

    from sama_cli.core.console import info

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, editor, card = study_model(args.model)
    runs, grid = [], world_grid(card)
    for seed in args.seeds:
        info(f"long-videos: seed {seed}")
        runs += run_seed(editor, seed, args.out, args.clips, args.frames, grid)
    summary = summarise(runs)
    first = runs[0]["clips"][0]
    meta = {"command": "python -m sama_cli.toy.long_clips " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seconds": time.perf_counter() - t0, "threads": args.threads, "model": os.path.relpath(model),
            "model_sha": _digest(model),
            "model_note": model_note(card), "frames": args.frames, "clips": args.clips, "grid": grid,
            "window": runs[0]["window"], "overlap": runs[0]["overlap"], "steps": runs[0]["steps"],
            "windows": runs[0]["windows"], "classes": first["classes"], "pairs": first["pairs"],
            "arm_seconds": {a: sum(r["seconds"] for r in runs if r["arm"] == a) for a in ARMS}}
    record = write_study(args.doc, render_doc(summary, meta), {"meta": meta, "summary": summary, "runs": runs})
    info(f"wrote {args.doc} and {record} in {meta['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
