"""Side-by-side stills of toy edits (docs/, `make toy-figures`): for each edit kind a few clips of one split,
each shown as source | edit | truth at its first and last frame, enlarged without smoothing so that a pixel
stays a pixel, with the instruction and the oracle's edit accuracy beside it.

    python -m sama_cli.toy.figure DATA EDITS OUT.png [--split heldout] [--per-kind 3] [--scale 4]

DATA is a `sama synth` folder, EDITS a folder of <id>.mp4 made by `sama edit --manifest` (lossless
edits show the sampler's own frames). Clips are taken in id order, so the figure is the same on every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from sama_cli.core.errors import InputError
from sama_cli.io.manifest import read_manifest
from sama_cli.io.video import read_video
from sama_cli.toy.world import EDIT_KINDS, load_scene_record, oracle_scores

GAP = 6  # pixels between the first-frame and last-frame triples
LABEL_W = 330  # the text column
INK, PAPER = (20, 20, 20), (250, 250, 250)


def pick(data: Path, edits: Path, split: str, per_kind: int) -> list[dict]:
    """The first `per_kind` video edits of each kind in `split` that have an edit, in id order."""
    rows = [r for r in read_manifest(data / "manifest.jsonl").rows
            if r["kind"] == "video_edit" and r.get("split") == split and (edits / f"{r['id']}.mp4").is_file()]
    out = []
    for kind in EDIT_KINDS:
        out += sorted((r for r in rows if r.get("edit") == kind), key=lambda r: r["id"])[:per_kind]
    if not out:
        raise InputError(f"no edited video_edit clips of split {split!r} (run `sama edit --manifest`)", path=edits)
    return out


def strip(frames: list[torch.Tensor], scale: int) -> Image.Image:
    """Frames (H, W, 3) uint8 side by side, each enlarged `scale` times by nearest neighbour."""
    row = torch.cat(frames, dim=1).numpy()
    img = Image.fromarray(row)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def figure(data: Path, edits: Path, split: str, per_kind: int = 3, scale: int = 4) -> tuple[Image.Image, list[dict]]:
    font = ImageFont.load_default()
    tiles, listed = [], []
    for r in pick(data, edits, split, per_kind):
        src = read_video(data / r["source"]).frames
        tgt = read_video(data / r["target"]).frames
        out = read_video(edits / f"{r['id']}.mp4").frames
        acc = oracle_scores(out, load_scene_record(data / r["scene"]))["edit_accuracy"]
        first, last = strip([src[0], out[0], tgt[0]], scale), strip([src[-1], out[-1], tgt[-1]], scale)
        tile = Image.new("RGB", (LABEL_W + first.width + GAP + last.width, first.height), PAPER)
        tile.paste(first, (LABEL_W, 0))
        tile.paste(last, (LABEL_W + first.width + GAP, 0))
        draw = ImageDraw.Draw(tile)
        draw.text((6, 6), f"{r['edit']} ({r['id']})", fill=INK, font=font)
        draw.text((6, 24), f'"{r["instruction"]}"', fill=INK, font=font)
        draw.text((6, 42), f"edit accuracy {acc:.2f}", fill=INK, font=font)
        tiles.append(tile)
        listed.append({"id": r["id"], "kind": r["edit"], "instruction": r["instruction"], "edit_accuracy": acc})
    head = Image.new("RGB", (tiles[0].width, 20), PAPER)
    ImageDraw.Draw(head).text((6, 4), f"split {split}: source | edit | truth, first frame and last frame",
                              fill=INK, font=font)
    sheet = Image.new("RGB", (tiles[0].width, head.height + sum(t.height + 2 for t in tiles)), (200, 200, 200))
    sheet.paste(head, (0, 0))
    y = head.height
    for t in tiles:
        sheet.paste(t, (0, y))
        y += t.height + 2
    return sheet, listed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sama_cli.toy.figure", description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("edits", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--split", default="heldout")
    p.add_argument("--per-kind", type=int, default=3)
    p.add_argument("--scale", type=int, default=4)
    a = p.parse_args(argv)
    try:
        sheet, listed = figure(a.data, a.edits, a.split, a.per_kind, a.scale)
    except InputError as e:
        print(f"error: {e}")
        return 1
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp.png")
    sheet.save(tmp)
    tmp.replace(a.out)
    (a.out.with_suffix(".json")).write_text(json.dumps(listed, indent=1) + "\n")
    print(f"wrote {a.out} ({len(listed)} clips of split {a.split})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
