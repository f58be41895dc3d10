"""`make bench` rows for start-up: whole processes, as a shell runs them. `sama --help` must answer at
once (it imports no torch); a cached `sama encode` (every output already there) pays for what the command
uses and little more. Both next to a bare `python -c pass` and `python -c "import torch"`.

Every process runs with its bytecode cached (in a folder of our own, not beside the installed files), as
after any pip install: under PYTHONDONTWRITEBYTECODE each run would compile every module it imports again,
which measures the environment, not sama."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET_S = 0.5


def sama_command() -> list[str]:
    """The `sama` console script beside this interpreter (what users run), else `python -m sama_cli`."""
    script = Path(sys.executable).with_name("sama")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sama_cli"]


def cached_bytecode_env(cache: Path) -> dict[str, str]:
    """This environment with Python's bytecode cache on, kept under `cache`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache)}


def process_seconds(commands: dict[str, list[str]], repeats: int,
                    env: dict[str, str] | None = None) -> dict[str, float]:
    """Median wall time of each whole process, after one warm-up run each; the commands take turns
    (a, b, c, a, b, c, ...) so that the load of a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for turn in range(repeats + 1):
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            if turn:  # turn 0 warms the page cache and writes the bytecode
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _cached_encode(folder: Path, env: dict[str, str]) -> list[str]:
    """An encode command whose only output already exists: a 5-frame 32x32 clip, encoded once here."""
    import torch

    from sama_cli.io.video import write_video

    clip = folder / "clip.mp4"
    write_video(clip, torch.zeros(5, 32, 32, 3, dtype=torch.uint8), 8, lossless=True)
    cmd = [*sama_command(), "encode", str(clip), "-o", str(folder / "lat"), "--vae", "pixel", "--device", "cpu"]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    again = subprocess.run([*cmd, "--json"], check=True, capture_output=True, text=True, env=env)
    summary = json.loads(again.stdout)
    assert summary["skipped"] == 1 and summary["files"] == 0, f"the second encode was not a no-op: {summary}"
    return cmd


def startup_rows(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = cached_bytecode_env(Path(tmp) / "pycache")
        s = process_seconds({"pass": [py, "-c", "pass"], "torch": [py, "-c", "import torch"],
                             "help": [*sama_command(), "--help"], "encode": _cached_encode(Path(tmp), env)},
                            repeats, env)
    base = f"python -c pass {s['pass']:.3f} s, python -c 'import torch' {s['torch']:.2f} s"
    return [
        {"area": "start-up", "what": f"`sama --help`, whole process, bytecode cached (median of {repeats})",
         "value": f"{s['help']:.3f} s ({s['help'] / s['torch']:.2f}x import torch; {base})",
         "target": f"< {HELP_TARGET_S} s", "ok": s["help"] < HELP_TARGET_S},
        {"area": "start-up", "what": f"`sama encode` with its output cached (a no-op), whole process (median of "
                                     f"{repeats})",
         "value": f"{s['encode']:.2f} s ({s['encode'] / s['torch']:.2f}x import torch)", "target": "-", "ok": True},
    ]
