"""`make bench` rows for whole videos (issue 16): edit time per frame and peak memory for clips of 1, 2 and
4 windows, with the embedded toy model on the CPU.

Each clip is as long as n windows with the default overlap exactly cover (the toy model, at its working
size 32x32: 5, 8 and 14 frames), so the work per frame is n x window / frames window-frames (1, 1.25,
1.43): overlapping frames are denoised by two windows. Time per frame is "flat" when it grows by no
more than that. Times are medians in this process, the configurations taken in turn. Peak memory: one
edit in a fresh child process per configuration, its high-water resident set size (VmHWM) after the
edit, and how much of it the edit added over the process after loading the model (Python, torch and the
weights).

    python -m sama_cli.perf.long_edit_speed            # the rows, as `python -m sama_cli.perf` shows them
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from sama_cli.perf.timing import skipped_row

CONFIGS = ((1, 1), (2, 1), (4, 1), (4, 4))  # (windows, --window-batch)
THREADS = 1


def _peak_rss_mb() -> float:
    """This process's high-water resident set size. Linux: VmHWM of /proc/self/status, which starts afresh at
    exec; ru_maxrss does not (a child started from a large parent reports the parent's size)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux units (KiB); macOS reports bytes


def _setup(editor, windows: int, batch: int):
    """The embedded model's own settings (its working size, steps, window) and a random clip exactly
    `windows` windows long: window + (windows - 1) x (window - overlap) latent frames."""
    import torch

    from sama_cli.edit.editor import EditRequest
    from sama_cli.edit.windows import default_overlap

    sampling, settings = EditRequest(window_batch=batch).resolve(editor.defaults)
    k = editor.codec.temporal_factor
    w = 1 + (settings.window - 1) // k  # latent frames of a window
    latent = w + (windows - 1) * (w - default_overlap(settings.window, k) // k)
    assert len(editor.window_plan(latent, settings).spans) == windows
    h, wd = settings.size or (32, 32)
    clip = torch.randint(0, 256, (1 + (latent - 1) * k, h, wd, 3), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)
    return clip, sampling, settings, windows * w / latent


def _edit(editor, setup) -> None:
    clip, sampling, settings, _ = setup
    editor.edit_frames(clip, "make the background white", sampling, settings)


def peak_memory(windows: int, batch: int) -> dict:
    """In this (fresh) process: one edit; the high-water RSS after it, and what the edit added to the
    process after loading the model."""
    from sama_cli.edit.loading import load_editor

    editor = load_editor(device="cpu")
    setup = _setup(editor, windows, batch)
    before = _peak_rss_mb()
    _edit(editor, setup)
    after = _peak_rss_mb()
    return {"maxrss_mb": after, "edit_mb": after - before}


def _child_memory(windows: int, batch: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "sama_cli.perf.long_edit_speed", "--child", str(windows), str(batch),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _times(editor, setups: list, rounds: int) -> list[list[float]]:
    """Seconds per edit of each setup, taken in turn round after round (round 0 warms up), so that a
    machine busy with other work slows them alike. One torch thread: with two on two busy cores, OpenMP's
    waiting threads made single edits 50x slower at random (measured while training ran alongside)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        times: list[list[float]] = [[] for _ in setups]
        for r in range(rounds + 1):
            for i, setup in enumerate(setups):
                t0 = time.perf_counter()
                _edit(editor, setup)
                if r:
                    times[i].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return times


def long_edit_rows(quick: bool = False) -> list[dict]:
    """Time per frame in this process (medians, `_times`) and peak memory, each configuration in a fresh
    child process."""
    from sama_cli.edit.loading import default_model, load_editor

    what = "whole videos: time per frame by windows"
    if default_model() is None:
        return [skipped_row("edit", what, "no embedded toy model")]
    rounds = 1 if quick else 5
    editor = load_editor(device="cpu")
    setups = [_setup(editor, n, b) for n, b in CONFIGS]
    times = _times(editor, setups, rounds)
    try:
        memory = [_child_memory(n, b, THREADS) for n, b in CONFIGS]
    except RuntimeError as e:
        return [skipped_row("edit", what, f"peak memory: {e}")]
    per_frame = [statistics.median(t) / s[0].shape[0] for t, s in zip(times, setups, strict=True)]
    rows = []
    for (n, b), setup, pf, mem in zip(CONFIGS, setups, per_frame, memory, strict=True):
        clip, sampling, settings, work = setup
        ratio, work_ratio = pf / per_frame[0], work / setups[0][3]
        batch = f", --window-batch {b}" if b > 1 else ""
        rows.append({
            "area": "edit",
            "what": f"whole videos: embedded toy model, {n} window{'s' if n > 1 else ''} of {settings.window} frames "
                    f"({clip.shape[0]} frames {clip.shape[1]}x{clip.shape[2]}{batch}), {sampling.steps} steps, CPU, "
                    f"{THREADS} thread, median of {rounds}",
            "value": f"{pf * 1e3:.0f} ms/frame ({ratio:.2f}x one window's; overlaps denoised twice make it "
                     f"{work_ratio:.2f}x the work per frame); peak RSS "
                     f"{mem['maxrss_mb']:.0f} MB, the edit +{mem['edit_mb']:.0f} MB over the loaded model",
            "target": "time/frame <= 1.2 x work per frame (linear in windows); batch 1: peak RSS <= 1.1 x one window's",
            "ok": ratio <= 1.2 * work_ratio and (b > 1 or mem["maxrss_mb"] <= 1.1 * memory[0]["maxrss_mb"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, type=int, metavar=("WINDOWS", "BATCH"), help="peak memory of one edit here")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        sys.stdout.write(json.dumps(peak_memory(*args.child)) + "\n")
        return 0
    for row in long_edit_rows(args.quick):
        sys.stdout.write(f"| {row['area']} | {row['what']} | {row['value']} | {row['target']} | {row['ok']} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
