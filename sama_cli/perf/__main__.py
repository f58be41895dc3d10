"""`make bench`: speed rows for every part that has a target, written as one Markdown table.

    python -m sama_cli.perf -o out/bench [--quick]

Each row names what was measured, the number, and the target where the issues set one. Timings are
medians over repeats after a warm-up, on whatever machine runs them (the table records it).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from sama_cli.io.artifacts import atomic_write_text
from sama_cli.perf.timing import skipped_row


def optional_rows(module: str, fn: str, quick: bool) -> list[dict]:
    """Rows contributed by other parts (bench harness, pretexts) when they are installed."""
    import importlib
    import inspect

    try:
        f = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:  # a missing extra (openai, opencv): say so, do not drop the row
        return [skipped_row(module.rsplit(".", 1)[-1], fn, f"{type(e).__name__}: {e}")]
    return f(quick=quick) if "quick" in inspect.signature(f).parameters else f()


def render(rows: list[dict]) -> str:
    head = (f"# sama benchmarks\n\nMachine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, {platform.python_version()}\n\n")
    lines = ["| area | what | measured | target | ok |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['area']} | {r['what']} | {r['value']} | {r.get('target', '-')} | "
                     f"{'yes' if r.get('ok', True) else '**no**'} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="out/bench", help="output folder for bench.md and bench.json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for smoke runs)")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    sections = [
        lambda: optional_rows("sama_cli.perf.startup", "startup_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.forward_speed", "model_overhead_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.train_speed", "train_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.edit_speed", "edit_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.long_edit_speed", "long_edit_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.fast_edit_speed", "fast_edit_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.pretext_speed", "perturb_throughput_rows", args.quick),
        lambda: optional_rows("sama_cli.perf.judge_speed", "judge_throughput_rows", args.quick),
    ]
    for section in sections:
        rows += section()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = render(rows)
    atomic_write_text(out / "bench.md", table)
    atomic_write_text(out / "bench.json", json.dumps(rows, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
