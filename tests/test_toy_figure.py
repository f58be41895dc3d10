"""`python -m sama_cli.toy.figure`: the side-by-side stills of docs/ (issue 19). Edits that are the truth
itself score 1.0; the sheet's size follows from the layout by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from sama_cli.commands.synth import synthesize
from sama_cli.toy import figure


def test_figure_of_perfect_edits(tmp_path: Path) -> None:
    data, edits = tmp_path / "toy", tmp_path / "edits"
    synthesize(data, clips=60, images=0, t2v=0, seed=1, size=32, frames=5, fps=8.0, heldout_frac=0.2)
    edits.mkdir()
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        shutil.copy(data / r["target"], edits / f"{r['id']}.mp4")  # the truth, losslessly written by synth
    out = tmp_path / "fig" / "test.png"
    assert figure.main([str(data), str(edits), str(out), "--split", "train", "--per-kind", "1", "--scale", "2"]) == 0
    listed = json.loads(out.with_suffix(".json").read_text())
    assert [x["kind"] for x in listed] == ["recolour", "replace", "remove", "add", "background", "style"]
    assert all(x["edit_accuracy"] == 1.0 for x in listed)
    first = min((r for r in rows if r["split"] == "train" and r["edit"] == "recolour"), key=lambda r: r["id"])
    assert listed[0]["id"] == first["id"] and listed[0]["instruction"] == first["instruction"]
    img = Image.open(out)
    # a tile: the label column, then 3 frames of 32 px x2, a gap, 3 more; 6 tiles of 64 px + 2 px apart
    assert img.size == (figure.LABEL_W + 2 * 3 * 64 + figure.GAP, 20 + 6 * (64 + 2))


def test_figure_without_edits_is_an_error(tmp_path: Path, capsys) -> None:
    data = tmp_path / "toy"
    synthesize(data, clips=6, images=0, t2v=0, seed=1, size=32, frames=5, fps=8.0, heldout_frac=0.2)
    (tmp_path / "edits").mkdir()
    assert figure.main([str(data), str(tmp_path / "edits"), str(tmp_path / "x.png")]) == 1
    assert "no edited video_edit clips of split 'heldout'" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()
