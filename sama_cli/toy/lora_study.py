"""`make toy-lora`: a LoRA teaches the embedded toy model an edit it never saw (issue 18) -> docs/lora.md.

The new edit is `recolour_new`: paint an object purple, a colour that appears nowhere in the base model's
data (toy/world.py NEW_COLOURS). Per seed: `sama synth` data where half the edits are the new kind and the
rest the six old kinds in turn (replay, so the adapter does not unlearn them), `sama train
recipes/toy_lora.yaml` from the embedded model, then the held-out clips of every kind edited by the base
model and by the base with the adapter (`sama edit --lora`), scored by the exact oracle. The table: edit
accuracy per kind, mean ± std over seeds, base and LoRA; the trainable parameters and optimizer state
against full fine-tuning of the same model.

    python -m sama_cli.toy.lora_study --out out/toy_lora --doc docs/lora.md --seeds 1 2 3
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sama_cli.toy.study import model_card, sama, study_parser, world_grid, write_study
from sama_cli.toy.world import ALL_KINDS

RECIPE = "recipes/toy_lora.yaml"
NEW_KIND = "recolour_new"
EDIT_ARGS = ["--steps", "20", "--guidance", "1", "--shift", "5", "--clip-batch", "8", "--split", "test", "--kind", "video_edit",
             "--lossless"]


def kinds_of(report: Path) -> dict[str, float]:
    summary = json.loads((report / "summary.json").read_text())
    return {k: v["edit_accuracy"] for k, v in summary.get("split_categories", {}).get("test", {}).items()}


def counts_of(report: Path) -> dict[str, int]:
    """Test clips scored per kind."""
    rows = [json.loads(line) for line in (report / "scores.jsonl").read_text().splitlines() if line.strip()]
    out: dict[str, int] = {}
    for r in rows:
        if r.get("split") == "test" and r.get("scores"):
            out[r["category"]] = out.get(r["category"], 0) + 1
    return out


def scored(root: Path, arm: str, base: str, extra: list[str]) -> Path:
    """The report of `root/toy`'s test clips edited by `base` (with `extra` edit options, e.g. --lora) into
    root/edits_ARM and scored into root/report_ARM; made once (a finished report is read as it is)."""
    edits, report = root / f"edits_{arm}", root / f"report_{arm}"
    if not (report / "summary.json").is_file():
        sama("edit", "--manifest", root / "toy" / "manifest.jsonl", "--model", base, "-o", edits, *EDIT_ARGS, *extra)
        sama("bench", "run", "toy", "--data", root / "toy", "--split", "test", "--edits", edits, "-o", report)
    return report


def run_seed(seed: int, out: Path, clips: int, images: int, steps: int, base: str, grid: int = 1) -> dict[str, Any]:
    root = out / f"s{seed}"
    weights = ",".join([f"{NEW_KIND}=6"] + [f"{k}=1" for k in ALL_KINDS if k != NEW_KIND])
    if not (root / "anc" / "manifest.jsonl").is_file():
        sama("synth", root / "toy", "--clips", clips, "--images", images, "--t2v", 0, "--frames", 5, "--size", 32,
             "--kind-weights", weights, "--seed", 100 + seed, "--heldout-frac", 0, "--grid", grid)
        sama("encode", root / "toy" / "manifest.jsonl", "-o", root / "lat", "--vae", "pixel:s4", "--text-encoder", "tiny")
        sama("anchor", root / "lat" / "manifest.jsonl", "-o", root / "anc", "--grid", 2)
    lora = root / "lora" / "export" / "lora_ema.safetensors"
    timing = root / "lora" / "train_seconds.json"  # kept, so that a rerun that only re-scores reports it
    if not lora.is_file():
        t0 = time.perf_counter()
        sama("train", RECIPE, f"data.manifests=[{root / 'anc' / 'manifest.jsonl'}]", f"train.seed={seed}",
             f"train.steps={steps}", f"train.out_dir={root / 'lora'}", f"model.init={base}")
        timing.write_text(json.dumps({"train_seconds": time.perf_counter() - t0}))
    train_seconds = json.loads(timing.read_text())["train_seconds"] if timing.is_file() else float("nan")
    result: dict[str, Any] = {"seed": seed, "train_seconds": train_seconds}
    for arm, extra in (("base", []), ("lora", ["--lora", str(lora)])):
        result[arm] = kinds_of(scored(root, arm, base, extra))
    result["clips"] = counts_of(root / "report_base")
    return result


def old_kinds(out: Path, base: str, runs: list[dict[str, Any]], clips: int, grid: int = 1) -> dict[str, Any]:
    """The old kinds on one larger fixed set of clips from the base model's own world (`sama synth` on the
    base's lattice, every clip a test clip): edited by the base once and by the base with each seed's adapter. The
    seeds' data hold only a few test clips of each old kind; this set holds `clips` / 6 of each."""
    root = out / "old_kinds"
    if not (root / "toy" / "manifest.jsonl").is_file():
        sama("synth", root / "toy", "--clips", clips, "--images", 0, "--t2v", 0, "--frames", 5, "--size", 32,
             "--seed", 99, "--heldout-frac", 0, "--test-frac", 1.0, "--grid", grid)
    arms = [("base", [])] + [(f"lora_s{r['seed']}", ["--lora", str(out / f"s{r['seed']}" / "lora" / "export" /
                                                                  "lora_ema.safetensors")]) for r in runs]
    scores = {}
    for arm, extra in arms:
        scores[arm] = kinds_of(scored(root, arm, base, extra))
    counts = counts_of(root / "report_base")
    table = {}
    for k, b in scores["base"].items():
        lora = [v[k] for arm, v in scores.items() if arm != "base"]
        table[k] = {"clips": counts.get(k, 0), "base": b, "lora": mean_std(lora),
                    "change": mean_std([x - b for x in lora])}
    return table


def sizes(base: str) -> dict[str, int]:
    """Trainable parameters and AdamW state bytes (two fp32 moments) with the recipe's LoRA and with full
    fine-tuning of the same model."""
    from sama_cli.model.lora import add_lora
    from sama_cli.model.weights import load_model
    from sama_cli.train.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    model, _ = load_model(base)
    full = sum(p.numel() for p in model.parameters())
    add_lora(model, recipe.lora.spec())
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"full_params": full, "lora_params": lora, "full_optim_bytes": 8 * full, "lora_optim_bytes": 8 * lora}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = [k for k in ALL_KINDS if any(k in r["base"] for r in runs)]
    table = {}
    for k in kinds:
        base = [r["base"][k] for r in runs if k in r["base"]]
        lora = [r["lora"][k] for r in runs if k in r["lora"]]
        table[k] = {"base": mean_std(base), "lora": mean_std(lora),
                    "change": mean_std([b - a for a, b in zip(base, lora, strict=True)])}
    return {"kinds": table, "seeds": [r["seed"] for r in runs]}


def render(summary: dict[str, Any], sz: dict[str, int], meta: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = [
        "# LoRA on the toy world: teaching the embedded model a new edit",
        "",
        f"Written by `make toy-lora` (`{meta['command']}`; LoRA training times below). Base: "
        f"the embedded toy model. New edit: `{NEW_KIND}`, paint an object purple, a colour absent from every "
        "scene and edit the base was trained on. Per seed: fresh `sama synth` data on the base's "
        f"{meta.get('grid', 1)}-px grid (half the edits the new kind, half the six old kinds in turn), `recipes/toy_lora.yaml` (rank "
        f"{meta['rank']}, {meta['steps']} steps), then the held-out clips (split `test`) of every kind edited "
        "by the base model and by the base with the adapter (`sama edit --lora`), 20 Euler steps, exact oracle. "
        f"Seeds {', '.join(map(str, summary['seeds']))}; mean ± std over seeds.",
        "",
        f"| edit kind | test clips ({len(runs)} seeds) | base | with the LoRA | change |",
        "|---|---|---|---|---|",
    ]
    for k, v in summary["kinds"].items():
        name = f"**{k}** (new)" if k == NEW_KIND else k
        clips = " + ".join(str(r.get("clips", {}).get(k, 0)) for r in runs)
        lines.append(f"| {name} | {clips} | {v['base'][0]:.3f} ± {v['base'][1]:.3f} | {v['lora'][0]:.3f} ± "
                     f"{v['lora'][1]:.3f} | {v['change'][0]:+.3f} ± {v['change'][1]:.3f} |")
    old = {k: v for k, v in summary["kinds"].items() if k != NEW_KIND}
    held = [k for k, v in old.items() if abs(v["change"][0]) <= max(v["base"][1], v["change"][1])]
    new = summary["kinds"].get(NEW_KIND)
    if new:
        lines += ["", f"The new kind: {new['base'][0]:.3f} -> {new['lora'][0]:.3f} (every seed: "
                  + ", ".join(f"{r['base'][NEW_KIND]:.3f} -> {r['lora'][NEW_KIND]:.3f}" for r in runs
                              if NEW_KIND in r["base"]) + "). The old kinds: "
                  + (f"every change is within the seed spread (|mean change| <= the base's std over seeds, or the "
                     f"change's own std): {', '.join(held)}." if len(held) == len(old) else
                     f"within the seed spread: {', '.join(held) or 'none'}; outside it: "
                     f"{', '.join(k for k in old if k not in held)}.")]
    big = summary.get("old_kinds") or {}
    if big:
        n = sum(v["clips"] for v in big.values())
        lines += ["", f"The old kinds on one larger fixed set ({n} test clips of the base model's own world, "
                  f"`sama synth --seed 99 --grid {meta.get('grid', 1)}`), edited by the base and by the base with each seed's LoRA; std over the "
                  f"{len(runs)} adapters:", "",
                  "| edit kind | test clips | base | with the LoRA | change |", "|---|---|---|---|---|"]
        for k, v in big.items():
            lines.append(f"| {k} | {v['clips']} | {v['base']:.3f} | {v['lora'][0]:.3f} ± {v['lora'][1]:.3f} | "
                         f"{v['change'][0]:+.3f} ± {v['change'][1]:.3f} |")
        real = sorted((k for k, v in big.items() if v["change"][0] < -max(v["change"][1], 0.005)),
                      key=lambda k: big[k]["change"][0])
        seed_std = {k: v["base"][1] for k, v in summary["kinds"].items()}
        lines += ["", ("Losses larger than their std over the adapters (small, but consistent: a real cost of the "
                       "adapter on these kinds): " + ", ".join(
                           f"{k} {big[k]['change'][0]:+.3f} (the first table's seed spread for it: "
                           f"{seed_std.get(k, float('nan')):.3f})" for k in real) + ".") if real else
                  "No old kind loses more than its std over the adapters (or 0.005)."]
    lines += [
        "",
        f"LoRA training took {min(meta['train_minutes']):.1f}-{max(meta['train_minutes']):.1f} min a seed "
        f"({meta['steps']} steps).",
        "",
        "| | trainable parameters | AdamW state |",
        "|---|---|---|",
        f"| full fine-tuning | {sz['full_params'] / 1e6:.2f}M | {sz['full_optim_bytes'] / 2**20:.1f} MiB |",
        f"| LoRA rank {meta['rank']} (+ SAMA modules) | {sz['lora_params'] / 1e6:.3f}M "
        f"({sz['lora_params'] / sz['full_params']:.1%}) | {sz['lora_optim_bytes'] / 2**20:.2f} MiB |",
        "",
        "Change: LoRA minus base on the same clips, per seed. The old kinds' change is to be read against their "
        "seed spread.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__ or "", "toy_lora", clips=300, threads=2)
    p.set_defaults(doc=Path("docs") / "lora.md")
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--steps", type=int, default=None, help="LoRA steps (default: the recipe's)")
    p.add_argument("--old-clips", type=int, default=240, help="clips of the fixed set that scores the old kinds")
    args = p.parse_args(argv)
    from sama_cli.edit.loading import default_model
    from sama_cli.train.recipe import load_recipe

    base = args.model or str(default_model())
    recipe = load_recipe(RECIPE)
    steps = args.steps or recipe.train.steps
    t0 = time.perf_counter()
    grid = world_grid(model_card(Path(base)))  # the toy world the base trained on
    runs = [run_seed(s, args.out, args.clips, args.images, steps, base, grid) for s in args.seeds]
    summary = summarise(runs)
    summary["old_kinds"] = old_kinds(args.out, base, runs, args.old_clips, grid)
    sz = sizes(base)
    given = sys.argv[1:] if argv is None else argv
    meta = {"command": "python -m sama_cli.toy.lora_study " + " ".join(given), "seconds": time.perf_counter() - t0,
            "rank": recipe.lora.rank, "steps": steps, "base": base, "grid": grid,
            "train_minutes": [r["train_seconds"] / 60 for r in runs]}
    write_study(args.doc, render(summary, sz, meta, runs), {"meta": meta, "summary": summary, "sizes": sz, "runs": runs})
    print(args.doc.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
