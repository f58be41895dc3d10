"""The end of `make demo`: one table of the held-out toy scores (stage 1, stage 0 only, the unedited
source) and where the files are. Exits 1 when stage 1 does not beat both on edit accuracy, so that a
demo that stopped learning cannot pass unnoticed.

    python -m sama_cli.demo out/demo [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.table import Table

from sama_cli.bench.adapters import TOY_METRICS
from sama_cli.bench.report import load_summary
from sama_cli.console import err

ARMS = (("stage 1 (SAMA)", "report"), ("stage 0 only", "report_stage0"), ("unedited source", "report_source"))


def heldout_scores(demo: Path) -> dict[str, dict[str, float]]:
    out = {}
    for label, folder in ARMS:
        summary = load_summary(demo / folder)
        out[label] = summary.get("splits", {}).get("heldout", summary["overall"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        err.print("usage: python -m sama_cli.demo DEMO_DIR [--json]")
        return 2
    demo = Path(args[0])
    scores = heldout_scores(demo)
    table = Table(title="toy world, held-out colour/shape combinations (exact oracle)", show_edge=False)
    table.add_column("model")
    for k in TOY_METRICS:
        table.add_column(k, justify="right")
    for label, s in scores.items():
        table.add_row(label, *(f"{s[k]:.3f}" for k in TOY_METRICS))
    err.print(table)
    err.print("edit_accuracy: share of the edited object's pixels within tolerance of the truth (higher is "
              "better); preservation outside it; trajectory_error in px (lower is better).")
    sbs = sorted((demo / "edits").glob("*.sbs.mp4"))
    err.print(f"side-by-side videos (source | edit): {demo / 'edits'}/*.sbs.mp4 ({len(sbs)} clips)")
    err.print(f"loss curves: {demo / 'stage0' / 'loss.png'}, {demo / 'stage1' / 'loss.png'}")
    err.print(f"reports: {demo / 'report' / 'report.md'} (and report_stage0/, report_source/)")
    err.print(f"the trained model: {demo / 'stage1' / 'export' / 'ema'} -> sama edit CLIP \"...\" --model <that> -o out.mp4")
    ours = scores["stage 1 (SAMA)"]["edit_accuracy"]
    beaten = {k: v["edit_accuracy"] for k, v in scores.items() if k != "stage 1 (SAMA)"}
    ok = all(ours > v for v in beaten.values())
    if "--json" in args:
        sys.stdout.write(json.dumps({"heldout": scores, "beats_baselines": ok}) + "\n")
    if ok:
        err.print(f"[green]stage 1 beats {' and '.join(beaten)} on held-out edit accuracy[/green] "
                  f"({ours:.3f} vs {', '.join(f'{v:.3f}' for v in beaten.values())})")
        return 0
    err.print(f"[red]stage 1 does not beat {' and '.join(k for k, v in beaten.items() if ours <= v)} on held-out edit "
              f"accuracy[/red] ({ours:.3f}); see docs/ablation.md for what the toy model can do")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
