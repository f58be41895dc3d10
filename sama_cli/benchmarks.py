"""`make bench`: speed rows for every part that has a target, written as one Markdown table.

    python -m sama_cli.benchmarks -o out/bench [--quick]

Each row names what was measured, the number, and the target where the issues set one. Timings are
medians over repeats after a warm-up, on whatever machine runs them (the table records it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sama_cli.artifacts import atomic_write_text


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


# ---- model: SAMA forward+backward vs the plain diffusers backbone on the same token count ------------
def model_overhead_rows(quick: bool = False) -> list[dict]:
    from sama_cli.model.config import from_preset

    configs = {
        "tiny": from_preset("tiny"),
        "mid (dim 512, 4 layers)": from_preset("tiny", dim=512, num_heads=8, num_layers=4, ffn_dim=1536,
                                               text_dim=64, semantic_mlp_hidden=256),
    }
    return [_overhead_row(name, cfg, quick) for name, cfg in configs.items()]


def _overhead_row(name: str, cfg, quick: bool) -> dict:
    from diffusers import WanTransformer3DModel

    from sama_cli.model.transformer import build_model

    ours = build_model(cfg, seed=0)
    plain = WanTransformer3DModel(**cfg.diffusers_kwargs())
    plain.load_state_dict(ours.backbone.state_dict())
    g = torch.Generator().manual_seed(0)
    # ours: 256 source + 64 semantic + 256 target tokens = 576; plain: 9 frames of 8x8 = 576 tokens
    src = torch.randn(1, 16, 4, 16, 16, generator=g)
    tgt = torch.randn(1, 16, 4, 16, 16, generator=g)
    sem = torch.randn(1, 64, cfg.semantic_dim, generator=g)
    big = torch.randn(1, 16, 9, 16, 16, generator=g)
    ctx = torch.randn(1, 32, cfg.text_dim, generator=g)
    t = torch.tensor([500.0])

    def step_ours():
        out = ours(tgt, t, ctx, source_latents=src, semantic_latents=sem)
        (out.video.square().mean() + out.semantic.square().mean()).backward()

    def step_plain():
        plain(big, t, ctx, return_dict=False)[0].square().mean().backward()

    repeats = (5 if quick else 15) * (4 if name == "tiny" else 1)
    a, b = compare_seconds(step_ours, step_plain, repeats)
    return {"area": "model", "what": f"SAMA fwd+bwd vs diffusers backbone, 576 tokens, {name}",
            "value": f"{a * 1e3:.1f} ms vs {b * 1e3:.1f} ms ({(a / b - 1) * 100:+.1f}%)",
            "target": "overhead <= 5%", "ok": a / b - 1 <= 0.05}


# ---- training: toy-size step time and where it goes ------------------------------------------------
def train_rows(quick: bool = False) -> list[dict]:
    """The toy stage-1 recipe (image + video edits; the demo's model, from scratch here) on a small toy
    world made by the same commands as `make demo`: time per step, samples/s, and where the time goes."""
    import subprocess
    import sys

    from sama_cli.config import load_recipe
    from sama_cli.train import train

    recipe_path = Path(__file__).resolve().parent.parent / "recipes" / "toy_stage1.yaml"
    if not recipe_path.is_file():
        return [_skipped("train", "toy recipe step time", f"{recipe_path} not found (run from a source checkout)")]
    steps = 20 if quick else 80
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)

        def sama(*args: object) -> None:
            subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], check=True, capture_output=True)

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


def _skipped(area: str, what: str, why: str) -> dict:
    return {"area": area, "what": what, "value": f"not measured: {why}", "target": "-", "ok": False}


def optional_rows(module: str, fn: str, quick: bool) -> list[dict]:
    """Rows contributed by other parts (bench harness, pretexts) when they are installed."""
    import importlib
    import inspect

    try:
        f = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:  # a missing extra (openai, opencv): say so, do not drop the row
        return [_skipped(module.rsplit(".", 1)[-1], fn, f"{type(e).__name__}: {e}")]
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
        lambda: model_overhead_rows(args.quick),
        lambda: train_rows(args.quick),
        lambda: optional_rows("sama_cli.edit_bench", "edit_rows", args.quick),
        lambda: optional_rows("sama_cli.pretext_bench", "perturb_throughput_rows", args.quick),
        lambda: optional_rows("sama_cli.bench.speed", "judge_throughput_rows", args.quick),
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
