"""Refresh the embedded default model from a finished `make demo`: the stage-1 EMA weights, stored in
fp16 (half the bytes; the weights are loaded back to fp32 on CPU), and a model card with the demo's
held-out toy-bench scores.

    python -m sama_cli.toy.embedded out/demo sama_cli/assets/toy_model      (or `make toy-model`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from sama_cli.model.config import ModelConfig
from sama_cli.model.weights import save_checkpoint
from sama_cli.toy.adapter import TOY_METRICS

CARD = """# sama toy-world model (the embedded default)

**What it is.** A {params:.1f}M-parameter SAMA transformer (preset `toy`: dim 256, 4 layers, pixel:s4 codec,
tiny text encoder, channel source concatenation, Semantic Anchoring on) trained by `make demo` on the
toy world of docs/sama.md §8: 32x32 frames, 5 frames, 1–3 flat shapes (circle, square, triangle) in named
colours moving and bouncing over flat or gradient backgrounds.

**Trained on.** `sama synth` seed 0 ({data}); stage 0 `recipes/toy_stage0.yaml` ({s0} steps: image edits and
text-to-video clips with the motion-alignment pretexts), then stage 1 `recipes/toy_stage1.yaml` ({s1} steps:
image and video edits), batch 8 videos / 16 images, on 2 CPU cores. Regenerate exactly:
`make demo && make toy-model` (same recipes, same seeds; CPU results match to float rounding).

**Scores** (20 Euler steps, guidance 1, exact oracle; split `test`: held-out clips of colour/shape
combinations seen in training; `heldout`: combinations never seen, which tests composition):

| model | split | {header} |
|---|---|{sep}
{rows}

**Per edit kind** (edit accuracy on held-out clips, split `test`; the unedited source in brackets):
{per_kind}

**What it can do.** Change the background and apply a global style on new toy clips, keeping the
objects and their motion: those edits it gets right most of the time. **What it mostly cannot do.**
Edit single objects: recolouring, removing, adding or replacing a shape rarely lands within the oracle's
tolerance (replacing one is worse than leaving the clip alone), and colour/shape combinations it never
saw (split `heldout`) it cannot make. At 3.9M parameters and minutes of CPU training it has learned the
global edits and to copy what should stay, not to compose object edits. **What it cannot do.** Anything else: real videos, other sizes than 32x32 (they are resized),
other words than the toy vocabulary. It exists so that `sama edit` works out of the box and the
pipeline can be checked end to end on a laptop; for real edits use the SAMA release weights:
`sama edit in.mp4 "make it winter" --model /path/to/SAMA-14B --base /path/to/Wan2.1-T2V-14B -o out.mp4`.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m sama_cli.toy.embedded DEMO_DIR OUT_DIR", file=sys.stderr)
        return 2
    demo, out = Path(args[0]), Path(args[1])
    src = demo / "stage1" / "export" / "ema"
    doc = json.loads((src / "config.json").read_text())
    config = ModelConfig.from_dict(doc["config"])
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(src / "model.safetensors")).items()}
    scene = json.loads(next((demo / "toy" / "scenes").glob("*.json")).read_text())["target"]
    # the one size it was trained at: `sama edit` works at it unless told otherwise
    meta = {**doc["meta"], "stored_dtype": "float16", "toy_world": True,
            "working_size": [scene["height"], scene["width"]],
            "sampling": {"steps": 20, "guidance": 1.0, "shift": 5.0}}  # as `make demo` edits (DEMO_EDIT)
    meta["toy_bench"] = json.loads((demo / "report" / "summary.json").read_text())["splits"]
    save_checkpoint(sd, out, config=config, meta=meta)

    rows = []
    for label, folder in (("this model (stage 1)", "report"), ("stage 0 only", "report_stage0"),
                          ("unedited source", "report_source")):
        splits = json.loads((demo / folder / "summary.json").read_text())["splits"]
        for split in ("test", "heldout"):
            if split in splits:
                rows.append(f"| {label} | {split} | " + " | ".join(f"{splits[split][k]:.3f}" for k in TOY_METRICS) + " |")
    per_kind = []
    for folder in ("report", "report_source"):
        acc: dict[str, list[float]] = {}
        for line in (demo / folder / "scores.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["status"] == "ok" and r["split"] == "test":
                acc.setdefault(r["category"], []).append(r["scores"]["edit_accuracy"])
        per_kind.append({k: sum(v) / len(v) for k, v in acc.items()})
    kinds_line = ", ".join(f"{k} {per_kind[0][k]:.2f} ({per_kind[1].get(k, float('nan')):.2f})"
                           for k in per_kind[0])
    steps = {}
    for stage in ("stage0", "stage1"):
        recipe = (demo / stage / "recipe.yaml").read_text()
        steps[stage] = next(line.split(":")[1].strip() for line in recipe.splitlines() if line.strip().startswith("steps:"))
    toy = (demo / "toy" / "manifest.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in toy]
    data = ", ".join(f"{kinds.count(k)} {k}" for k in ("video_edit", "image_edit", "t2v"))
    params = sum(v.numel() for v in sd.values()) / 1e6
    (out / "README.md").write_text(CARD.format(params=params, data=data, s0=steps["stage0"], s1=steps["stage1"],
                                               header=" | ".join(TOY_METRICS), sep="---|" * len(TOY_METRICS),
                                               rows="\n".join(rows), per_kind=kinds_line))
    print(f"wrote {out} ({sum(v.numel() * v.element_size() for v in sd.values()) / 2**20:.1f} MiB of weights)")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
