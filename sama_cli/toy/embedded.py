"""Store a finished toy run (`make toy-model`'s out/toy_model, or a demo's out/demo) as the embedded default
model: the stage-1 EMA weights in fp16 (half the bytes; loaded back to fp32 on CPU) and a model card with its
held-out toy-bench scores, overall and per edit kind.

    python -m sama_cli.toy.embedded out/toy_model sama_cli/assets/toy_model      (the end of `make toy-model`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from sama_cli.model.config import ModelConfig
from sama_cli.model.weights import save_checkpoint
from sama_cli.toy.adapter import TOY_METRICS
from sama_cli.toy.world import EDIT_KINDS

CARD = """# sama toy-world model (the embedded default)

**What it is.** A {params:.1f}M-parameter SAMA transformer (preset `toy`: dim 256, 4 layers, patch {patch},
pixel:s4 codec, tiny text encoder, channel source concatenation, Semantic Anchoring on) trained on the toy world of
docs/sama.md §8: 32x32 frames, 5 frames, 1–3 flat shapes (circle, square, triangle) in named colours moving
and bouncing over flat or gradient backgrounds, on a {grid}-px lattice (`sama synth --grid {grid}`).

**Trained on.** `sama synth` seed 0 ({data}; edit kinds {edits}); stage 0 `recipes/{r0}.yaml` ({s0} steps:
image edits and text-to-video clips with the motion-alignment pretexts), then stage 1 `recipes/{r1}.yaml`
({s1} steps: image and video edits; {img_share:.0%} of its steps draw an image batch), batch {vb} videos / {ib}
images, on 2 CPU cores. Regenerate exactly:
`{how}` (same recipes, same seeds; CPU results match to float rounding).

**Scores** (20 Euler steps, guidance 1, exact oracle; split `test`: held-out clips of colour/shape
combinations seen in training; `heldout`: combinations never seen, which tests composition):

| model | split | {header} |
|---|---|{sep}
{rows}

**Per edit kind** (edit accuracy beside the unedited source's; preservation PSNR outside the edit and
trajectory error of the edited object on split `test`):

{per_kind}

**What it does well** (edit accuracy ≥ 0.9 on held-out clips): {good}. **Partly** (0.5–0.9): {fair}.
**Mostly not** (< 0.5): {poor}. **What it cannot do.** Anything outside the toy world: real videos, other
sizes than 32x32 (they are resized), other words than the toy vocabulary. It exists so that `sama edit`
works out of the box and the pipeline can be checked end to end on a laptop; for real edits use the SAMA
release weights: `sama edit in.mp4 "make it winter" --model /path/to/SAMA-14B --base /path/to/Wan2.1-T2V-14B -o out.mp4`.

**Why object edits failed before (issue 19), and what changed.** The first embedded model (the demo's, 3000
stage-1 steps) changed backgrounds and styles but returned the source, slightly noisy, for recolour, remove,
add and replace, on training clips as well as held-out ones (train split: recolour 0.27, remove 0.38, add
0.02). What we found, in order:
1. *"add" was not an edit a model could learn*: the new object went to a random place with a random
   velocity, so source and words did not determine the target. Naming the place ("at the top left") does not
   fix it for this architecture: Wan's blocks see positions only through RoPE, relative to content, and on a
   flat background every token sees the same thing, so no token can know it is top left (add stayed at
   0.05–0.08 in every run with named places). Now the new object is put *on* an object the instruction names
   ("put a small blue circle on the red square"), 0.7x its size, and moves with it: found like a recolour.
2. *The tiny text encoder was a bag of words*: a random UMT5's relative-position bias is near zero, so the two
   "red"s of "make the red circle magenta" / "make the magenta circle red" came out nearly equal (cosine
   0.995), and the DiT's cross-attention has no positions of its own: it could not tell the old colour from
   the new one. Its heads now look at the previous word, the next word and the word itself (cosine 0.16).
   "navy" and "take ... out" were unknown words; they are in its vocabulary now.
3. *Object edits are learned late.* With 1–2, 3000 steps (from scratch, 2400 edit pairs) still gave ~0 on
   object edits with any of: 4x the tokens per object (patch 1, at equal time), training shift 1 with an
   unweighted loss, bigger objects. The same run continued to 9000 steps: recolour 0.05 -> 0.21, replace 0.38
   -> 0.54, remove 0.09 -> 0.26, preservation PSNR 40.6 -> 42.9 dB. Trained on recolour alone for 3000 steps
   the model recolours partly (0.27): its outputs mix the old and new colour, sometimes on the wrong object,
   the signature of an under-trained flow model, not of a missing ability. Whole-frame edits change 70–85%
   of the pixels and dominate the loss early; object edits change ~7%. So this model sees object edits twice
   as often as whole-frame ones and trains longer, with a decaying learning rate.
4. *Its tokens were too narrow for their patch* (found on the previous embedded model; this one has patch 1x1x1).
   A 1x2x2 patch of the 48-channel pixel:s4 latent is 192 values, and with the source joined by channel a
   token embeds 384 values into width 256 (Wan: 64 values into 5120). The velocity has to carry the noise of
   all 192 target values, which leaves ~64 dimensions for what an edit changes inside an 8x8-pixel token:
   edited tokens come out speckled with noise the model cannot represent, kept tokens (a copy) come out
   clean. The previous model (patch 1x2x2, 16000 stage-1 steps) scored 0.70 / 0.56 / 0.69 / 0.51 (recolour / replace / remove / add) on 90 of its own
   training clips against 0.48 / 0.53 / 0.56 / 0.27 on the test split: short of its own training data too.
   Trained from scratch on image edits only (2500 steps, batch 32, 9000 new pairs) and scored on the test
   video edits, recolour / replace / remove / add:
   patch 1x2x2, width 256 (the previous model's shape): 0.09 / 0.43 / 0.12 / 0.06, flow loss 0.21 at the end;
   width 384: 0.22 / 0.42 / 0.28 / 0.08; patch 1x1x1 (96 values a token), width 256: 0.45 / 0.54 / 0.66 /
   0.18, preservation PSNR 38.9 dB, flow loss 0.07-0.08, sharp edges: after 2500 steps as good as the
   previous model after 18000, at ~3x the time a step. What did not move the previous model: 50 sampling steps instead of
   20 (0.705 vs 0.720 recolour on training clips), sampling shift 1, 1500 more steps with an unweighted
   loss at training shift 1 (the release's loss weight leaves the lowest noise levels nearly untrained);
   3000 more steps on 9000 new pairs with image-heavy batches helped a little (test recolour 0.48 -> 0.56).
5. *An earlier model* (patch 1x1x1, 2000 clips / 3000 images, 8000 stage-1 steps, 87 min) reached recolour /
   replace / remove / add 0.91 / 0.72 / 0.85 / 0.54 on the test split. Objects then sat at sub-pixel places
   and moved at any speed, so every frame of every object was a new pattern of 4x4-pixel cells to draw.
   Its successor put the world on the pixel grid (whole-pixel radius, centre and one of the 8 king's moves a
   frame), kept objects from starting on top of each other, and trained on 2500 clips / 6000 images with
   replace and add drawn 1.5x as often as recolour and remove, for 9500 stage-1 steps (102 min).
6. *The previous model* (that one) reached recolour / replace / remove / add 0.97 / 0.80 / 0.92 / 0.72 on the
   test split, heldout add 0.52. In its frames (source | truth | edit | wrong pixels) replace and add drew
   the right colour at the right place, but the new *shape* came out as a speckled blob, often still the
   old outline; replace was uniformly mediocre (median 0.82, 10th percentile 0.65), not a few failures.
   Recolour and remove are local (each 4x4-pixel token maps its own pixels); replace and add must draw a
   new sprite, and on the pixel grid an object sits at one of 16 offsets inside its tokens, so one shape is
   16 different patterns of token cells: non-local geometry to learn 16 times over.
7. *Objects on the tokens' lattice* (`sama synth --grid 4`): centres and per-frame steps are multiples of
   4 px (one token cell of the pixel:s4 codec) and the radius keeps bounces on the lattice (6 px at 32x32),
   so a shape is one pattern of cells wherever it is. At demo scale (300 + 2000 steps, one seed, split
   test, recolour / replace / remove / add): pixel grid 0.00 / 0.51 / 0.02 / 0.00, grid 4 0.27 / 0.67 /
   0.25 / 0.18; a 2-px lattice (4 offsets) helped less.
8. *Weighing what an edit changes* (`train.change_weight: 4`, ours): an object edit changes a few % of the
   latent positions, a whole-frame edit nearly all, so unweighted, object edits are a small part of the
   loss. The flow loss of an edit pair now weighs the positions where target and source differ (by more
   than 0.1 in some channel) 5x the others, normalised per sample so that every sample weighs the same. At
   demo scale: pixel grid 0.00 / 0.51 / 0.02 / 0.00 -> 0.27 / 0.55 / 0.72 / 0.10 with the weight; grid 4
   with the weight 0.63 / 0.67 / 0.60 / 0.16, the best pair tried. (At demo scale it cost preservation
   PSNR, remove 29.1 -> 24.4 dB on the pixel grid; this model's is higher than the previous one's.)
9. *This model*: grid 4 and change weight 4 in both stages, otherwise the previous model's data, recipes
   and steps; the whole `make toy-model` took 103 min on this machine (2 CPU cores). Against the previous model, split test, recolour / replace / remove / add: 0.97 / 0.80 / 0.92
   / 0.72 -> 0.99 / 0.96 / 0.90 / 0.97; preservation PSNR 41.0 -> 42.4 dB; `heldout` recolour 0.86 -> 0.90,
   replace 0.67 -> 0.74 (source 0.63), add 0.52 -> 0.63. The issue's goal (>= 0.9 on every kind on `test`,
   preservation >= 35 dB, trajectory error <= 1.5 px; >= 0.6 and above the source on every kind of
   `heldout`) is met, preservation and trajectory over all kinds (42.4 dB, 1.38 px; per kind, replace,
   remove and background keep 33.6-34.0 dB outside the edit). What is left: held-out *add* is all or nothing (median 0.86, but 36% of its clips
   score below 0.5: the new object is missing or in a colour seen with that shape in training) and its
   trajectory error is 6 px; *remove* is just over the line (0.90; 10th percentile 0.72: a trace of the
   object is left in some frames) with the highest trajectory error on `test` (3.4 px).
"""


def kind_table(model: dict, source: dict) -> str:
    """The card's per-kind table (markdown): edit accuracy on each split beside the unedited source's,
    then preservation PSNR and trajectory error on the held-out clips. `model`, `source`: the bench
    summaries' split -> kind -> scores."""
    splits = [s for s in ("test", "heldout") if s in model]
    head = "| kind | " + " | ".join(f"edit acc ({s}) | source ({s})" for s in splits) + " | keep PSNR (test) | traj px (test) |"
    lines = [head, "|---" * (1 + 2 * len(splits) + 2) + "|"]
    for kind in model.get("test", {}):
        cells = []
        for s in splits:
            m, src = model[s].get(kind), source.get(s, {}).get(kind)
            cells += [f"{m['edit_accuracy']:.3f}" if m else "-", f"{src['edit_accuracy']:.3f}" if src else "-"]
        t = model["test"][kind]
        cells += [f"{t['preservation_psnr']:.1f}", f"{t['trajectory_error']:.2f}"]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_BEGIN, README_END = "<!-- toy-model table: begin (written by make toy-model) -->", "<!-- toy-model table: end -->"


def update_readme(readme: Path, text: str) -> bool:
    """Put `text` between the README's toy-model markers (written atomically). False when it has none."""
    from sama_cli.io.artifacts import atomic_write_text

    doc = readme.read_text()
    begin, end = doc.find(README_BEGIN), doc.find(README_END)
    if begin < 0 or end < begin:
        return False
    atomic_write_text(readme, doc[: begin + len(README_BEGIN)] + "\n" + text.strip() + "\n" + doc[end:])
    return True


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
    # a video clip's scene (an image's has one frame): its size and length are what the model trained on
    scene = json.loads(next((demo / "toy" / "scenes").glob("vid*.json")).read_text())["target"]
    # the one size it was trained at: `sama edit` works at it unless told otherwise
    meta = {**doc["meta"], "stored_dtype": "float16", "toy_world": True,
            "working_size": [scene["height"], scene["width"]],
            "window_frames": scene["frames"],  # the clip length it trained on: the window of longer edits
            "sampling": {"steps": 20, "guidance": 1.0, "shift": 5.0}}  # as `make demo` edits (DEMO_EDIT)
    world = demo / "toy" / "world.json"  # how `sama synth` made its world (grid, size, ...): studies make more of it
    if world.is_file():
        meta["toy_synth"] = json.loads(world.read_text())
    summary = json.loads((demo / "report" / "summary.json").read_text())
    meta["toy_bench"] = summary["splits"]
    meta["toy_bench_kinds"] = summary["split_categories"]  # split -> kind -> scores (the demo's per-kind table)
    save_checkpoint(sd, out, config=config, meta=meta)

    rows = []
    for label, folder in (("this model (stage 1)", "report"), ("stage 0 only", "report_stage0"),
                          ("unedited source", "report_source")):
        if not (demo / folder / "summary.json").is_file():  # an arm that was not scored (stage 0 only is optional)
            continue
        splits = json.loads((demo / folder / "summary.json").read_text())["splits"]
        for split in ("test", "heldout"):
            if split in splits:
                rows.append(f"| {label} | {split} | " + " | ".join(f"{splits[split][k]:.3f}" for k in TOY_METRICS) + " |")
    source = json.loads((demo / "report_source" / "summary.json").read_text())["split_categories"]
    per_kind = kind_table(summary["split_categories"], source)
    recipes = {stage: yaml.safe_load((demo / stage / "recipe.yaml").read_text()) for stage in ("stage0", "stage1")}
    toy = [json.loads(line) for line in (demo / "toy" / "manifest.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in toy]
    data = ", ".join(f"{kinds.count(k)} {k}" for k in ("video_edit", "image_edit", "t2v"))
    edits = [r["edit"] for r in toy if r.get("edit")]
    edit_counts = ", ".join(f"{k} {edits.count(k)}" for k in EDIT_KINDS)
    test = summary["split_categories"].get("test", {})
    bands = {name: ", ".join(k for k, v in test.items() if lo <= v["edit_accuracy"] < hi) or "none"
             for name, lo, hi in (("good", 0.9, 2.0), ("fair", 0.5, 0.9), ("poor", -1.0, 0.5))}
    how = ("make toy-model" if recipes["stage1"]["name"].startswith("toy_model")
           else f"make demo && python -m sama_cli.toy.embedded {demo} {out}")
    params = sum(v.numel() for v in sd.values()) / 1e6
    grid = meta.get("toy_synth", {}).get("grid", 1)
    (out / "README.md").write_text(CARD.format(
        params=params, data=data, edits=edit_counts, r0=recipes["stage0"]["name"], r1=recipes["stage1"]["name"],
        s0=recipes["stage0"]["train"]["steps"], s1=recipes["stage1"]["train"]["steps"], how=how,
        patch="x".join(str(p) for p in config.patch_size), vb=recipes["stage1"]["data"]["video_batch"],
        ib=recipes["stage1"]["data"]["image_batch"], img_share=recipes["stage1"]["data"]["image_ratio"],
        grid=grid, header=" | ".join(TOY_METRICS), sep="---|" * len(TOY_METRICS), rows="\n".join(rows), per_kind=per_kind,
        **bands))
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if out.resolve() == (Path(__file__).resolve().parents[1] / "assets" / "toy_model") and readme.is_file():
        note = (f"Edit accuracy per kind of the embedded model ({recipes['stage1']['train']['steps']} stage-1 steps; "
                "`make toy-model` rewrites this table), beside the unedited source's; split `test`: held-out clips, "
                "`heldout`: unseen colour/shape combinations:")
        if update_readme(readme, note + "\n\n" + per_kind):
            print(f"updated the table in {readme}")
    print(f"wrote {out} ({sum(v.numel() * v.element_size() for v in sd.values()) / 2**20:.1f} MiB of weights)")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
