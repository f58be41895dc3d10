"""Report folders: scores.jsonl, summary.json, summary.csv, report.md (laid out like the paper's table,
with its published rows alongside), a bar chart per category and index.html (the same table and charts,
then a card per sample: source and edit playing together, its scores; eval/gallery.py); and `compare` of
two reports, with a page of both edits of each sample."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError
from sama_cli.eval import gallery
from sama_cli.eval.adapters import Adapter, get_adapter
from sama_cli.eval.gallery import Card, clip_of, esc, fmt
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
    bench_page(adapter, rows, summary, out, label)


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


def read_rows(report: Path) -> list[dict[str, Any]]:
    """A report's scores.jsonl rows; a broken line is an error naming the file and line."""
    path = report / "scores.jsonl"
    if not path.is_file():
        raise InputError("not a bench report (no scores.jsonl)", path=path)
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"line {i} is not JSON ({e.msg})", path=path) from None
        if not isinstance(row, dict) or "id" not in row:
            raise InputError(f"line {i} is not a score row (no id)", path=path)
        rows.append(row)
    return rows


def _reason(raw: list[str]) -> str | None:
    """The judge's stated reason in its last reply, when the reply is JSON with one."""
    try:
        reply = json.loads(raw[-1])
    except (json.JSONDecodeError, TypeError, IndexError):
        return None
    if isinstance(reply, dict):
        for key in ("reason", "reasoning", "explanation", "rationale"):
            if isinstance(reply.get(key), str):
                return reply[key]
    return None


def _bench_card(adapter: Adapter, r: dict[str, Any], shown: dict) -> Card:
    ok = r.get("status") == "ok"
    score = r.get("score") if ok and isinstance(r.get("score"), (int, float)) else None
    card = Card(key=str(r["id"]), category=str(r.get("category", "")), sort_value=score,
                clips=[("source", clip_of(shown, r.get("source"), "source not recorded in this report")),
                       ("edit", clip_of(shown, r.get("edit"), "no edited video"))],
                error=None if ok else str(r.get("error", "failed")))
    if score is not None:
        card.badge = f"{adapter.headline or 'score'} {fmt(score)}"
    card.facts = [("instruction", str(r.get("instruction", "")))]
    card.facts += [(k, str(r[k])) for k in ("split", "judge", "rule", "wording") if r.get(k)]
    raw = [str(x) for x in r.get("raw") or []]
    if raw and (reason := _reason(raw)):
        card.facts.append(("judge's reason", reason))
    scores = r.get("scores") or {}
    titles = getattr(adapter, "column_titles", {})
    card.numbers = [("scores", [(titles.get(k, k), fmt(v)) for k, v in scores.items()]
                     + ([("score", fmt(score))] if score is not None and scores and adapter.needs_judge else [])),
                    ("weight-free metrics", [(k, fmt(v)) for k, v in (r.get("metrics") or {}).items()])]
    if raw:
        card.details.append((f"judge's reply ({len(raw)} {'reply' if len(raw) == 1 else 'replies'})",
                             "\n\n---\n\n".join(raw)))
    return card


def bench_page(adapter: Adapter, rows: list[dict[str, Any]], summary: dict[str, Any], out: Path,
               label: str = "this run", workers: int = 4) -> Path:
    """REPORT/index.html: report.md's tables (the paper's rows alongside), the bar charts, then a card per
    sample; clips the browser cannot play get preview copies in REPORT/previews."""
    shown = gallery.playables([p for r in rows for p in (r.get("source"), r.get("edit"))], out / gallery.PREVIEWS, workers)
    cards = [_bench_card(adapter, r, shown) for r in rows]
    charts = "".join(f"<img src=\"{esc(p.name)}\" alt=\"{esc(p.stem)}\">" for p in sorted(out.glob("bars_*.png")))
    tables = markdown(adapter, summary, label).split("\n", 1)[1]  # its "# <name> benchmark" is the page's title
    intro = f"<div class=\"split\"><div>{gallery.markdown_html(tables)}</div><div class=\"charts\">{charts}</div></div>"
    title = f"{adapter.name} benchmark: {out.name or out}"
    return gallery.write_page(out, gallery.page_html(title, cards, out, intro=intro, sort_label=adapter.headline or "score"))


def page_from_report(report: Path, data: Path | None = None, workers: int = 4) -> Path:
    """Write (again) a report folder's index.html from its summary.json and scores.jsonl. Rows written
    before reports recorded each sample's source take it from the benchmark's `data` folder."""
    summary = load_summary(report)
    rows = read_rows(report)
    adapter = get_adapter(summary.get("benchmark", ""))
    if data is not None and any("source" not in r for r in rows):
        sources = {s.id: str(s.source) for s in adapter.samples(data)}
        rows = [{**r, "source": r.get("source") or sources.get(str(r["id"]))} for r in rows]
    return bench_page(adapter, rows, summary, report, workers=workers)


def compare_page(a: Path, b: Path, out: Path, workers: int = 4) -> Path:
    """OUT/index.html for `compare A B`: per category A, B and B - A; then a card per sample with the
    source, A's edit and B's edit, each one's score and the change."""
    diff, warnings = compare(a, b), compare_warnings(a, b)
    rows_a, rows_b = {str(r["id"]): r for r in read_rows(a)}, {str(r["id"]): r for r in read_rows(b)}
    ids = list(dict.fromkeys([*rows_a, *rows_b]))
    shown = gallery.playables([p for r in (*rows_a.values(), *rows_b.values()) for p in (r.get("source"), r.get("edit"))],
                      Path(out) / gallery.PREVIEWS, workers)

    def score(r: dict | None) -> float | None:
        return r.get("score") if r and r.get("status") == "ok" and isinstance(r.get("score"), (int, float)) else None

    cards = []
    for i in ids:
        ra, rb = rows_a.get(i), rows_b.get(i)
        first = ra or rb
        sa, sb = score(ra), score(rb)
        delta = sb - sa if sa is not None and sb is not None else None
        errors = [f"{name}: {r.get('error', 'failed')}" for name, r in (("A", ra), ("B", rb)) if r and r.get("status") != "ok"]
        card = Card(key=i, category=str(first.get("category", "")), sort_value=delta,
                    clips=[("source", clip_of(shown, first.get("source"), "source not recorded in the reports")),
                           ("edit A", clip_of(shown, ra and ra.get("edit"), "not in report A")),
                           ("edit B", clip_of(shown, rb and rb.get("edit"), "not in report B"))],
                    error="; ".join(errors) or None,
                    badge="" if delta is None else f"B - A {delta:+.3f}")
        card.facts = [("instruction", str(first.get("instruction", "")))]
        card.numbers = [("score", [("A", fmt(sa)), ("B", fmt(sb)), ("B - A", "-" if delta is None else f"{delta:+.3f}")])]
        cards.append(card)
    header = ["category", "A", "B", "B - A"]
    table = gallery.table_html(header, [[r["category"], fmt(r["a"]), fmt(r["b"]),
                                 "-" if r["delta"] is None else f"{r['delta']:+.3f}"] for r in diff])
    intro = (f"<p>A: {esc(a)}<br>B: {esc(b)}</p>" + table
             + "".join(f"<p class=\"note\">warning: {esc(w)}</p>" for w in warnings))
    out = Path(out)
    return gallery.write_page(out, gallery.page_html(f"compare: {b.name} - {a.name}", cards, out, intro=intro, sort_label="B - A"))
