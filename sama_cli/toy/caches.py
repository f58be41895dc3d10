"""`make caches`: what the step caches of `sama edit --cache` cost in edit quality on the toy world (issue 17).

For each seed, `sama synth` makes fresh clips (seeds other than the 0 the embedded model trained on, every
edit kind in turn) and the embedded model edits each one uncached and with every cache setting. Per
setting: the fraction of block evaluations the cache skipped (EditReport.blocks_skipped), the exact
oracle's edit accuracy, and the PSNR of the cached edit to the uncached one. The default for each cache is
the setting that skips the most while losing at most 0.01 edit accuracy (paired over the same clips,
mean over seeds) and staying within 40 dB PSNR of the uncached edit: the oracle scores the edited object
within a tolerance, and a model that edits the toy world robustly tolerates settings (fbc 0.8) that change
much of the frame; the floor keeps a default close to what the model makes uncached.

    python -m sama_cli.toy.caches --out out/caches --doc docs/caches.md --seeds 1 2 3
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sama_cli.toy.study import model_note, study_model, study_parser, synth_clips, world_grid, write_study

SETTINGS = ("fbc:0.05", "fbc:0.1", "fbc:0.2", "fbc:0.4", "fbc:0.6", "fbc:0.8", "taylorseer:2", "taylorseer:3",
            "taylorseer:4", "taylorseer:6", "taylorseer:8")
MAX_LOSS = 0.01  # edit accuracy a default may cost
MIN_PSNR = 40.0  # dB to the uncached edit a default must keep


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two uint8 videos; 100 when they are equal."""
    mse = float((a.double() - b.double()).pow(2).mean())
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting over seeds: skipped fraction, edit accuracy, its paired loss against the uncached edit
    of the same clips, PSNR to the uncached edit; and the default of each cache."""
    seeds = sorted({r["seed"] for r in runs})
    base = {r["seed"]: r for r in runs if r["setting"] == "none"}
    out: dict[str, Any] = {"settings": {}, "seeds": seeds}
    for setting in ["none", *sorted({r["setting"] for r in runs} - {"none"}, key=lambda s: (s.split(":")[0],
                                                                                          float(s.split(":")[1])))]:
        rs = [r for r in runs if r["setting"] == setting]
        out["settings"][setting] = {
            "skipped": mean_std([r["skipped"] for r in rs]),
            "accuracy": mean_std([r["accuracy"] for r in rs]),
            "loss": mean_std([base[r["seed"]]["accuracy"] - r["accuracy"] for r in rs]),
            "psnr_to_uncached": mean_std([r["psnr"] for r in rs]),
            "seconds": mean_std([r["seconds"] for r in rs]),
        }
    defaults = {}
    for cache in sorted({s.split(":")[0] for s in out["settings"] if s != "none"}):
        ok = [(v["skipped"][0], s) for s, v in out["settings"].items()
              if s.startswith(cache + ":") and v["loss"][0] <= MAX_LOSS and v["psnr_to_uncached"][0] >= MIN_PSNR]
        defaults[cache] = max(ok)[1] if ok else None
    out["defaults"] = defaults
    return out


def render_doc(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Step caches on the toy world",
        "",
        f"Written by `make caches` (`{meta['command']}`, {meta['seconds'] / 60:.1f} min on {meta['threads']} CPU "
        f"thread(s)). Model: {meta['model']} ({meta['model_note']}). {meta['clips']} fresh clips per seed "
        f"(seeds {', '.join(map(str, summary['seeds']))}; every edit kind in turn), {meta['steps']} Euler steps, "
        "guidance 1: one cache context a clip. Skipped: the fraction of the blocks' self-attention evaluations "
        "a cache served instead of computing. Edit accuracy: the exact oracle's; its loss is paired with the "
        "uncached edits of the same clips. PSNR: cached edit against the uncached one. Mean ± std over seeds.",
        "",
        "| setting | blocks skipped | edit accuracy | accuracy lost | PSNR to uncached (dB) | s an edit |",
        "|---|---|---|---|---|---|",
    ]
    for setting, v in summary["settings"].items():
        lines.append(f"| {setting if setting != 'none' else 'no cache'} | {v['skipped'][0]:.2f} ± {v['skipped'][1]:.2f} "
                     f"| {v['accuracy'][0]:.3f} ± {v['accuracy'][1]:.3f} | {v['loss'][0]:+.3f} ± {v['loss'][1]:.3f} "
                     f"| {v['psnr_to_uncached'][0]:.1f} ± {v['psnr_to_uncached'][1]:.1f} "
                     f"| {v['seconds'][0]:.3f} |")
    tried = list(summary["settings"])

    def default(cache: str, pick: str | None) -> str:
        if pick is None:
            return f"`{cache}`: none of the settings tried stays within 0.01 and {MIN_PSNR:g} dB"
        last = [s for s in tried if s.startswith(cache + ":")][-1]
        return f"`{cache}` → `{pick}`" + (" (the largest tried: a larger one may qualify too)" if pick == last else "")

    lines += ["", f"**Defaults** (the most skipped at ≤ {MAX_LOSS} accuracy lost and ≥ {MIN_PSNR:g} dB to the uncached "
              "edit, mean over seeds): " + ", ".join(
        default(c, d) for c, d in summary["defaults"].items()) + ". `sama edit --cache fbc` and "
        "`--cache taylorseer` use these values when none is given (edit/speed.py: CACHES).", "",
        "Seconds are wall time per edit on this CPU; on a 14B model the blocks are nearly all of a step, so the "
        "skipped fraction is the speed-up to expect there, while the toy model's steps are dominated by "
        "fixed costs (text, codec, Python). A cache's error compounds with fewer, larger steps; these figures "
        f"are for {meta['steps']} steps."]
    return "\n".join(lines) + "\n"


def run_seed(editor, seed: int, root: Path, clips: int, settings: tuple[str, ...],
             grid: int = 1) -> list[dict[str, Any]]:
    from sama_cli.edit.editor import EditRequest, manifest_rows
    from sama_cli.io.video import read_video
    from sama_cli.toy.world import load_scene_record, oracle_scores

    folder = root / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    synth_clips(folder / "toy", seed, clips, frames=5, grid=grid)
    rows, _ = manifest_rows(folder / "toy" / "manifest.jsonl")
    runs, uncached = [], {}
    for setting in ("none", *settings):
        sampling, edit_settings = EditRequest(seed=seed, cache=None if setting == "none" else setting
                                              ).resolve(editor.defaults)
        accs, psnrs, skipped, t0 = [], [], [], time.perf_counter()
        for row in rows:
            frames = read_video(row["source"]).frames
            pred, report = editor.edit_frames(frames, row["instruction"], sampling, edit_settings)
            accs.append(oracle_scores(pred, load_scene_record(row["scene"]))["edit_accuracy"])
            skipped.append(report.blocks_skipped)
            if setting == "none":
                uncached[row["id"]] = pred
            psnrs.append(psnr(pred, uncached[row["id"]]))
        runs.append({"seed": seed, "setting": setting, "accuracy": statistics.fmean(accs),
                     "psnr": statistics.fmean(psnrs), "skipped": statistics.fmean(skipped),
                     "seconds": (time.perf_counter() - t0) / len(rows), "steps": sampling.steps})
    return runs


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, "caches", clips=24, threads=2)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args = p.parse_args(argv)

    from sama_cli.core.console import info
    from sama_cli.edit.speed import CacheSpec

    for s in args.settings:
        CacheSpec.parse(s)  # a typo fails before any edit
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, editor, card = study_model(args.model)
    runs = []
    for seed in args.seeds:
        info(f"caches: seed {seed}")
        runs += run_seed(editor, seed, args.out, args.clips, tuple(args.settings), world_grid(card))
    summary = summarise(runs)
    meta = {"command": "python -m sama_cli.toy.caches " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seconds": time.perf_counter() - t0, "threads": args.threads, "model": str(model.name or model),
            "model_note": model_note(card),
            "clips": args.clips, "steps": runs[0]["steps"]}
    write_study(args.doc, render_doc(summary, meta), {"meta": meta, "summary": summary, "runs": runs})
    info(f"wrote {args.doc} in {meta['seconds'] / 60:.1f} min; defaults {summary['defaults']}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
