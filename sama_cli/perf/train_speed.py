"""`make bench` row: time per training step of the toy stage-1 recipe and where it goes."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from sama_cli.core.paths import RECIPES
from sama_cli.perf.timing import run_sama, skipped_row


def train_rows(quick: bool = False) -> list[dict]:
    """The toy stage-1 recipe (image + video edits; the demo's model, from scratch here) on a small toy
    world made by the same commands as `make demo`: time per step, samples/s, and where the time goes."""

    from sama_cli.train.loop import train
    from sama_cli.train.recipe import load_recipe

    recipe_path = RECIPES / "toy_stage1.yaml"
    if not recipe_path.is_file():
        return [skipped_row("train", "toy recipe step time", f"{recipe_path} not found (run from a source checkout)")]
    steps = 20 if quick else 80
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sama = run_sama
        sama("synth", t / "toy", "--clips", 48, "--images", 24, "--t2v", 0, "--frames", 5, "--size", 32)
        sama("encode", t / "toy" / "manifest.jsonl", "-o", t / "lat", "--vae", "pixel:s4", "--text-encoder", "tiny")
        sama("anchor", t / "lat" / "manifest.jsonl", "-o", t / "anc", "--grid", 2)
        recipe = load_recipe(recipe_path, ["model.init=null", f"data.manifests=[{t / 'anc' / 'manifest.jsonl'}]",
                                           f"train.out_dir={t / 'run'}", f"train.steps={steps}",
                                           "train.save_every=100000", "train.tensorboard=false", "train.log_every=10"])
        result = train(recipe)
        rows = [json.loads(line) for line in (t / "run" / "metrics.jsonl").read_text().splitlines()]
    per_step = sum(result.timing.values())
    share = {k: v / per_step * 100 for k, v in result.timing.items()}
    steady = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)  # the first window holds warm-up
    return [{"area": "train", "what": f"toy_stage1 recipe (3.9M params, 8 videos / 16 images of 5x32x32), "
                                      f"{steps} steps, CPU",
             "value": f"{per_step * 1e3:.0f} ms/step, {steady:.1f} samples/s (data {share['data']:.0f}% | "
                      f"fwd+bwd {share['compute']:.0f}% | optimizer+EMA {share['optimizer']:.0f}%)",
             "target": "-", "ok": True}]
