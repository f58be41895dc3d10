"""What the toy-world studies over seeds share (`make long-videos`, `make caches`): their command line, the
model they edit with, and fresh clips from `sama synth`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def study_parser(doc: str, name: str, clips: int, threads: int) -> argparse.ArgumentParser:
    """--out out/NAME, --doc docs/NAME.md, --model, --seeds 1 2 3 (the embedded model trained on seed 0,
    so every scene is new to it), --clips, --threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out") / name)
    p.add_argument("--doc", type=Path, default=Path("docs") / f"{name}.md")
    p.add_argument("--model", default=None, help="a sama checkpoint (default: the embedded toy model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--clips", type=int, default=clips, help="clips per seed (edit kinds in turn)")
    p.add_argument("--threads", type=int, default=threads, help="torch threads")
    return p


def study_model(model: str | None):
    """(path, editor on the CPU, model card meta) of `model`, or of the embedded model when None."""
    from sama_cli.edit.loading import default_model, load_editor

    path = Path(model or default_model() or "")
    editor = load_editor(model=str(path), device="cpu")
    return path, editor, model_card(path)


def model_card(path: Path) -> dict[str, Any]:
    """The meta of a sama checkpoint's config.json (its model card's numbers), {} when it has none."""
    config = Path(path) / "config.json"
    return json.loads(config.read_text()).get("meta", {}) if config.is_file() else {}


def world_grid(card: dict[str, Any]) -> int:
    """The pixel lattice of the toy world a model trained on (its card's `toy_synth`; 1 for older cards)."""
    return int(card.get("toy_synth", {}).get("grid", 1))


def synth_clips(folder: Path, seed: int, clips: int, frames: int, grid: int = 1) -> None:
    """`sama synth` video edits only, none held out: each seed its own scenes, on the model's lattice."""
    sama("synth", folder, "--clips", clips, "--images", 0, "--t2v", 0, "--frames", frames, "--seed", seed,
         "--heldout-frac", 0, "--grid", grid)


def sama(*args: Any) -> None:
    """Run `python -m sama_cli ARGS`; stop the study with its error when it fails."""
    cmd = [sys.executable, "-m", "sama_cli", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def write_study(doc: Path, text: str, record: dict[str, Any]) -> Path:
    """The study's markdown at `doc` and everything behind it (meta, summary, runs) beside it as .json, each
    written whole or not at all."""
    from sama_cli.io.artifacts import atomic_write_text

    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(doc, text)
    atomic_write_text(doc.with_suffix(".json"), json.dumps(record, indent=1))
    return doc.with_suffix(".json")


def model_note(card: dict[str, Any]) -> str:
    if not card:
        return "no model card"
    return (f"recipe {card.get('recipe', '?')}, {card.get('steps', '?')} training steps, toy world on a "
            f"{world_grid(card)}-px grid")
