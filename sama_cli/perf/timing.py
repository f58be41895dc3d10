"""Timing helpers shared by the `make bench` rows."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_seconds(fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Medians of a and b timed alternately (a, b, a, b, ...), so that drift hits both alike."""
    fn_a(), fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def skipped_row(area: str, what: str, why: str) -> dict:
    return {"area": area, "what": what, "value": f"not measured: {why}", "target": "-", "ok": False}


def run_sama(*args: object) -> None:
    """`python -m sama_cli ARGS` for a bench's data (synth, encode, anchor); raises when it fails."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], check=True, capture_output=True)
