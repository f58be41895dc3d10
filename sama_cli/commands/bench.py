"""`sama bench run | compare | page | filter`: judged and exact evaluation of edits, their HTML pages, and data
filtering."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from sama_cli.core.console import err
from sama_cli.core.errors import EXIT_FAILED

bench_app = typer.Typer(help="Evaluate edits (VIE-Bench, OpenVE-Bench, ReCo-Bench, toy, fixtures) and filter data.",
                        no_args_is_help=True)

JUDGE_HELP = ("openai:MODEL (OpenAI-compatible endpoint; key from $SAMA_JUDGE_API_KEY or $OPENAI_API_KEY) or "
              "local:PATH (a transformers VLM folder). Without one, judged benchmarks report weight-free "
              "metrics only.")


@bench_app.command("run", no_args_is_help=True)
def run(
    bench: str = typer.Argument(..., help="vie | openve | reco | toy | fixtures."),
    data: Path = typer.Option(None, "--data", help="The benchmark's folder (toy: the synth folder; fixtures: the "
                              "real clips shipped with sama, or $SAMA_SHARED_DIR/fixtures/real)."),
    edits: Path = typer.Option(None, "--edits", help="Edited videos: a folder of <id>.mp4, or a manifest with id "
                               "and output (fixtures: the SAMA-14B outputs by default)."),
    judge: str = typer.Option(None, "--judge", help=JUDGE_HELP),
    base_url: str = typer.Option(None, "--base-url", help="Endpoint for openai judges (vLLM, SGLang, gateways)."),
    out: Path = typer.Option(..., "-o", "--out", help="Report folder."),
    limit: int = typer.Option(None, "--limit", help="Score only the first N samples."),
    workers: int = typer.Option(4, "--workers", help="Concurrent samples (a local judge's model calls take turns)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per judge request."),
    retries: int = typer.Option(4, "--retries", help="Retries on rate limits, server errors, bad replies."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry waits this many seconds, then doubles."),
    split: str = typer.Option(None, "--split", help="Only samples of these splits, e.g. test,heldout (toy: train | test | heldout)."),
    baseline: str = typer.Option(None, "--baseline", help="Score the source or the true target instead (toy)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore and do not write the judge cache."),
    prompt_file: list[str] = typer.Option(None, "--prompt-file", help="The judge's wording from FILE instead of "
                                          "ours (every category), or CATEGORY=FILE for one category; repeatable. "
                                          "The report records which wording scored what."),
    source_dir: str = typer.Option(None, "--source-dir", help="reco: the sources' folder (default ori_videos)."),
    failed_as: str = typer.Option(None, "--failed-as", help="reco: a judge failure counts as 'zero' (the "
                                  "release's rule, default) or is 'excluded'."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Score edits on a benchmark and write scores, summaries, a paper-style table and bar charts."""
    from sama_cli.eval.judges import make_judge
    from sama_cli.eval.runner import run as run_bench
    from sama_cli.eval.vie import fixtures_dir

    adapter = _benchmarks().get_adapter(bench)
    _configure(adapter, prompt_file or [], source_dir, failed_as)
    if data is None:
        if bench != "fixtures":
            raise typer.BadParameter("--data is required for this benchmark")
        data = fixtures_dir()
    # without --judge a judged benchmark still runs: weight-free metrics only, the report says so
    j = (make_judge(judge, base_url=base_url, timeout=timeout, retries=retries, backoff=backoff)
         if adapter.needs_judge and judge else None)
    summary = run_bench(adapter, data, edits, j, out, limit=limit, workers=workers, baseline=baseline,
                        use_cache=not no_cache, split=split)
    err.print((out / "report.md").read_text())
    err.print(f"report: {out}")
    err.print(f"page: {out / 'index.html'} (source and edit side by side, every sample's scores)")
    if as_json:
        sys.stdout.write(json.dumps({**summary, "page": str(out / "index.html")}, default=str) + "\n")
    if summary["failed"]:
        err.print(f"[yellow]{summary['failed']} samples failed (see scores.jsonl)[/yellow]")
        raise typer.Exit(EXIT_FAILED)


@bench_app.command("compare", no_args_is_help=True)
def compare(report_a: Path = typer.Argument(..., help="Report folder A."),
            report_b: Path = typer.Argument(..., help="Report folder B."),
            out: Path = typer.Option(None, "-o", "--out", help="Also write OUT/index.html: each sample's source, "
                                     "A's edit and B's edit side by side with both scores and the change."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout (the per-category rows).")) -> None:
    """Per-category difference B - A of two reports of the same benchmark."""
    from rich.table import Table

    from sama_cli.eval.report import compare as diff

    _benchmarks()
    from sama_cli.eval.report import compare_warnings

    rows = diff(report_a, report_b)
    for warning in compare_warnings(report_a, report_b):
        err.print(f"[yellow]warning: {warning}[/yellow]")
    table = Table(title=f"{report_b} - {report_a}", show_edge=False)
    for col in ("category", "A", "B", "B - A"):
        table.add_column(col)
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(r["category"], f(r["a"]), f(r["b"]), f(r["delta"]))
    err.print(table)
    if out is not None:
        from sama_cli.eval.report import compare_page

        err.print(f"page: {compare_page(report_a, report_b, out)} (both edits of each sample beside the source)")
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")


@bench_app.command("page", no_args_is_help=True)
def page(report: Path = typer.Argument(..., help="A report folder of `sama bench run`."),
         data: Path = typer.Option(None, "--data", help="The benchmark's folder, for reports whose rows do not "
                                   "record their source videos (written before pages existed)."),
         as_json: bool = typer.Option(False, "--json", help="Print {\"page\": path} on stdout.")) -> None:
    """Write (again) REPORT/index.html from the report's summary.json and scores.jsonl."""
    from sama_cli.eval.report import page_from_report

    _benchmarks()
    path = page_from_report(report, data)
    err.print(f"page: {path}")
    if as_json:
        sys.stdout.write(json.dumps({"page": str(path)}) + "\n")


@bench_app.command("filter", no_args_is_help=True)
def filter_(
    manifest: str = typer.Argument(..., help="A manifest of video_edit / image_edit pairs: sama JSONL, or "
                                  "DiffSynth metadata .csv/.json/.jsonl (video, source_video, prompt)."),
    judge: str = typer.Option(..., "--judge", help=JUDGE_HELP),
    out: Path = typer.Option(..., "-o", "--out", help="The filtered manifest (.jsonl)."),
    base_path: Path = typer.Option(None, "--base-path", help="The folder the manifest's relative paths resolve "
                                   "against (DiffSynth's --dataset_base_path). Default: the manifest file's folder."),
    base_url: str = typer.Option(None, "--base-url", help="Endpoint for openai judges."),
    image_min: float = typer.Option(9.0, help="Images: keep at >= this on every criterion."),
    video_min: float = typer.Option(8.0, help="Videos: keep at >= this on most criteria..."),
    video_motion_above: float = typer.Option(8.0, help="...and > this on motion consistency."),
    workers: int = typer.Option(4, "--workers", help="Concurrent judge requests."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per judge request."),
    retries: int = typer.Option(4, "--retries", help="Retries on rate limits, server errors, bad replies."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry waits this many seconds, then doubles."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """The paper's VLM filter: judge pairs, keep those that pass the thresholds, record the scores."""
    from concurrent.futures import ThreadPoolExecutor

    from sama_cli.core.console import progress
    from sama_cli.eval.filtering import Thresholds, judge_row
    from sama_cli.eval.judges import JudgeCache, make_judge
    from sama_cli.io.manifest import read_manifest, write_manifest

    m = read_manifest(manifest, base_path=base_path, keep_going=True)  # a bad row fails alone, like a judge error
    rows = [r for r in m.rows if r["kind"] in ("video_edit", "image_edit") and r.get("target")]
    j = make_judge(judge, base_url=base_url, timeout=timeout, retries=retries, backoff=backoff)
    cache = JudgeCache(out.parent / f".{out.stem}.cache")
    th = Thresholds(image_min, video_min, video_motion_above)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(progress(pool.map(lambda r: judge_row(r, j, cache), rows), "filter", total=len(rows)))
    kept, failed, scored = [], list(m.failed), []
    for row, (res, video) in zip(rows, results, strict=True):
        if res.scores is None:
            failed.append({"id": row["id"], "error": res.error, "raw": res.raw})
            continue
        passed = th.passes(res.scores, video)
        scored.append({**row, "filter": {"scores": res.scores, "passed": passed, "judge": j.name}})
        if passed:
            kept.append(scored[-1])
    write_manifest(kept, out)
    write_manifest(scored, out.with_name(out.stem + ".scored.jsonl"))
    summary = {"rows": len(rows), "kept": len(kept), "dropped": len(scored) - len(kept), "failed": failed}
    err.print(f"[bold]sama bench filter[/bold]: kept {len(kept)} of {len(rows)} ({len(failed)} failed) -> {out}")
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _configure(adapter, prompt_files: list[str], source_dir: str | None, failed_as: str | None) -> None:
    """The run's options that belong to one benchmark: wordings, ReCo's sources folder and failure rule."""
    from sama_cli.core.errors import InputError

    adapter.set_wordings(prompt_files)
    if (source_dir or failed_as) and adapter.name != "reco":
        raise InputError("--source-dir and --failed-as apply to reco only")
    if failed_as not in (None, "zero", "excluded"):
        raise InputError(f"--failed-as must be zero or excluded, not {failed_as!r}")
    adapter.source_dir = source_dir
    adapter.failed_as = failed_as or adapter.failed_as


def _benchmarks():
    """The benchmark registry with every benchmark in it: the toy world's registers itself on import."""
    import sama_cli.toy.adapter  # noqa: F401
    from sama_cli.eval import adapters

    return adapters


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
