"""The toy benchmark: the toy world's held-out edit pairs, scored by its exact oracle (no judge).

It lives with the toy world and registers itself with the evaluation package, which knows nothing of toy
scenes: `sama bench run toy` imports this module (sama_cli/commands/bench.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sama_cli.core.errors import InputError
from sama_cli.eval.adapters import Adapter, BenchSample, register
from sama_cli.io.manifest import read_manifest
from sama_cli.toy.world import ALL_KINDS, load_scene_record, oracle_scores

TOY_METRICS = ("edit_accuracy", "preservation_psnr", "preservation_ssim", "trajectory_error", "psnr")


@register
class ToyBench(Adapter):
    name = "toy"
    needs_judge = False
    scale = (0.0, 1.0)
    metric_columns = TOY_METRICS
    headline = "edit_accuracy"
    metric_note = ("edit_accuracy: share of edit-mask pixels within tolerance of the truth (1 = exact); "
                   "PSNR in dB (100 = exact); trajectory_error in pixels (lower is better).")
    categories = list(ALL_KINDS)  # the opt-in kinds too (recolour_new, `make toy-lora`): a summary lists those it has
    paper_rows = []

    def samples(self, data: Path) -> list[BenchSample]:
        path = data / "manifest.jsonl"
        if not path.is_file():
            raise InputError("no toy manifest (run `sama synth` to make the benchmark data)", path=path)
        out = []
        for row in read_manifest(path).rows:
            if row["kind"] != "video_edit":
                continue
            out.append(BenchSample(row["id"], row.get("edit", "edit"), row["instruction"], Path(row["source"]),
                                   extra={"scene": row["scene"], "target": row["target"],
                                          "split": row.get("split", "train")}))
        return out

    def oracle_scores(self, edit_frames, s: BenchSample) -> dict[str, float]:
        return oracle_scores(edit_frames, load_scene_record(s.extra["scene"]))

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        def mean(rs: list[dict], key: str) -> float:
            return sum(r["scores"][key] for r in rs) / len(rs) if rs else float("nan")

        by_cat: dict[str, list[dict]] = {}
        for r in rows:
            by_cat.setdefault(r["category"], []).append(r)
        cats = {c: {k: mean(by_cat[c], k) for k in TOY_METRICS} for c in self.categories if c in by_cat}
        splits = {s: {k: mean([r for r in rows if r["split"] == s], k) for k in TOY_METRICS}
                  for s in sorted({r["split"] for r in rows})}
        # per split and kind: the object edits and the whole-frame ones differ by an order of magnitude, and a
        # mean over kinds hides which ones a model can do (issue 19)
        per_kind = {s: {c: {k: mean(rs, k) for k in TOY_METRICS} for c in self.categories
                        if (rs := [r for r in rows if r["split"] == s and r["category"] == c])}
                    for s in splits}
        return {"categories": cats, "splits": splits, "split_categories": per_kind,
                "overall": {k: mean(rows, k) for k in TOY_METRICS}, "samples": len(rows)}
