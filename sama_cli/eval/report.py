"""Report folders: scores.jsonl, summary.json, summary.csv, report.md (laid out like the paper's table,
with its published rows alongside) and a bar chart per category; and `compare` of two reports."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError
from sama_cli.eval.adapters import Adapter, get_adapter
from sama_cli.eval.runner import NO_JUDGE
from sama_cli.io.artifacts import atomic_write_text


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and not math.isnan(v) else "-"


def category_values(summary: dict[str, Any], headline: str = "") -> dict[str, float]:
    """One number per category: the benchmark's score, or an oracle benchmark's `headline` metric."""
    cats = summary.get("categories", {})
    return {c: (v[headline] if isinstance(v, dict) else v) for c, v in cats.items()}


def overall_value(summary: dict[str, Any], headline: str = "") -> float:
    overall = summary["overall"]
    return overall[headline] if isinstance(overall, dict) else overall


def markdown(adapter: Adapter, summary: dict[str, Any], label: str) -> str:
    lines = [f"# {adapter.name} benchmark", "",
             f"Judge: {summary['judge']} · prompt version {summary['prompt_version']} · "
             f"{summary['samples']} scored, {summary['failed']} failed, {summary['cached']} from cache", ""]
    cols = adapter.metric_columns
    if cols:
        lines += ["| category | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, values in [*summary["categories"].items(), *((f"split: {s}", v) for s, v in summary["splits"].items()),
                             ("overall", summary["overall"])]:
            lines.append(f"| {name} | " + " | ".join(_fmt(values[k]) for k in cols) + " |")
        lines += ["", adapter.metric_note]
    else:
        lines += _judged_tables(adapter, summary, label)
    if summary["judge"] == NO_JUDGE:
        lines += ["", "No judge was given (--judge): the benchmark's scores are not computed, only the "
                  "weight-free metrics below."]
    if summary.get("metrics"):
        lines += ["", "Weight-free metrics (mean): " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary["metrics"].items())]
    return "\n".join(lines) + "\n"


def _judged_tables(adapter: Adapter, summary: dict[str, Any], label: str) -> list[str]:
    """The benchmark's own table (a row per category and overall; its columns, samples scored and failed),
    then the paper's rows beside this run's, then which judge and wording scored it."""
    lines: list[str] = []
    table = summary.get("table") or {}
    if table:
        cols = adapter.columns()
        titles = [adapter.column_titles.get(c, c) for c in cols]
        lines += ["| category | " + " | ".join(titles) + " | n | failed |", "|---" * (len(cols) + 3) + "|"]
        for name, row in table.items():
            extra = f" ({row['as_zero']} counted as 0)" if row.get("as_zero") else ""
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c, float("nan"))) for c in cols)
                         + f" | {row['n']} | {row['failed']}{extra} |")
        lines.append("")
    cats = list(adapter.categories)
    ours = category_values(summary, adapter.headline)
    lines += ["| method | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|",
              f"| **{label}** | " + " | ".join(_fmt(ours.get(c, float("nan"))) for c in cats) + " |"]
    for row in adapter.paper_rows:
        lines.append(f"| {row['method']} | " + " | ".join(_fmt(row.get(c, float("nan"))) for c in cats) + " |")
    scale = f"{adapter.scale[0]:g}-{adapter.scale[1]:g}"
    wordings = sorted(set((summary.get("wording") or {}).values()))
    lines += ["", f"Scale {scale}. Judge model: {summary['judge']}. Wording: {'; '.join(wordings) or '-'}."]
    if summary.get("failed_as"):
        rule = "counted as 0 (the release's rule)" if summary["failed_as"] == "zero" else "left out (--failed-as excluded)"
        lines.append(f"A judge failure is {rule}; a missing video is left out.")
    lines.append(f"Published rows: {adapter.paper_source}; the paper's judges differ from this run's unless the same "
                 "judge model and wording were used.")
    return lines


def write_report(adapter: Adapter, rows: list[dict[str, Any]], summary: dict[str, Any], out: Path,
                 label: str = "this run") -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scores.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in rows))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    buf = io.StringIO()
    w = csv.writer(buf)
    if adapter.metric_columns:
        w.writerow(["category", *adapter.metric_columns])
        for c, v in summary["categories"].items():
            w.writerow([c, *(v[k] for k in adapter.metric_columns)])
        w.writerow(["overall", *(summary["overall"][k] for k in adapter.metric_columns)])
    else:
        w.writerow(["category", "score"])
        for c, v in category_values(summary, adapter.headline).items():
            w.writerow([c, v])
        w.writerow(["overall", summary["overall"]])
    atomic_write_text(out / "summary.csv", buf.getvalue())
    atomic_write_text(out / "report.md", markdown(adapter, summary, label))
    _bars(adapter, summary, out)


def _bars(adapter: Adapter, summary: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ours = category_values(summary, adapter.headline)
    for cat, value in ours.items():
        names, values = ["this run"], [value]
        for row in adapter.paper_rows:
            if cat in row:
                names.append(row["method"])
                values.append(row[cat])
        fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
        ax.bar(names, values, color=["#3465a4"] + ["#999999"] * (len(values) - 1))
        ax.set_title(f"{adapter.name}: {cat}")
        ax.set_ylim(0, adapter.scale[1])
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
        fig.tight_layout()
        fig.savefig(out / f"bars_{cat}.png")
        plt.close(fig)


def load_summary(report: Path) -> dict[str, Any]:
    path = report / "summary.json" if report.is_dir() else report
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"not a bench report ({e})", path=path) from None


def compare_warnings(a: Path, b: Path) -> list[str]:
    """What makes two reports' numbers not comparable as they stand: sample counts, failures, judge, wording."""
    sa, sb = load_summary(a), load_summary(b)
    out = []
    for key, what in (("samples", "scored samples"), ("failed", "failed samples"), ("judge", "judge"),
                      ("wording", "wording"), ("prompt_version", "prompt version"), ("failed_as", "failure rule")):
        if sa.get(key) != sb.get(key):
            out.append(f"the reports differ in {what}: {sa.get(key)} vs {sb.get(key)}")
    return out


def compare(a: Path, b: Path) -> list[dict[str, Any]]:
    """Per-category difference b - a (same benchmark)."""
    sa, sb = load_summary(a), load_summary(b)
    if sa.get("benchmark") != sb.get("benchmark"):
        raise InputError(f"cannot compare {sa.get('benchmark')} with {sb.get('benchmark')} reports")
    headline = get_adapter(sa["benchmark"]).headline
    va, vb = category_values(sa, headline), category_values(sb, headline)
    rows = [{"category": c, "a": va.get(c), "b": vb.get(c),
             "delta": (vb[c] - va[c]) if c in va and c in vb else None} for c in dict.fromkeys([*va, *vb])]
    oa, ob = overall_value(sa, headline), overall_value(sb, headline)
    rows.append({"category": "overall", "a": oa, "b": ob, "delta": ob - oa})
    return rows
