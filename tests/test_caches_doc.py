"""`make caches` (issue 17): the summary over seeds and the default each cache gets, from runs written by
hand."""

from __future__ import annotations

import pytest

from sama_cli.toy import caches


def _run(seed, setting, acc, skipped=0.0, psnr=100.0):
    return {"seed": seed, "setting": setting, "accuracy": acc, "skipped": skipped, "psnr": psnr, "seconds": 0.1,
            "steps": 20}


def test_defaults_are_the_most_skipped_setting_within_the_allowed_loss() -> None:
    runs = [_run(1, "none", 0.90), _run(2, "none", 0.80),
            # fbc:0.05 loses 0.005 on average, fbc:0.1 loses 0.02 (too much) though it skips more
            _run(1, "fbc:0.05", 0.89, 0.3, 40.0), _run(2, "fbc:0.05", 0.80, 0.5, 42.0),
            _run(1, "fbc:0.1", 0.88, 0.6), _run(2, "fbc:0.1", 0.78, 0.6),
            _run(1, "taylorseer:2", 0.70, 0.3), _run(2, "taylorseer:2", 0.70, 0.3),
            # fbc:0.02 loses nothing and skips most, but drifts to 39.5 dB from the uncached edit: not a default
            _run(1, "fbc:0.02", 0.90, 0.9, 39.0), _run(2, "fbc:0.02", 0.80, 0.9, 40.0)]
    s = caches.summarise(runs)
    assert list(s["settings"]) == ["none", "fbc:0.02", "fbc:0.05", "fbc:0.1", "taylorseer:2"]
    assert s["settings"]["fbc:0.05"]["loss"][0] == pytest.approx(0.005)
    assert s["settings"]["fbc:0.05"]["skipped"] == pytest.approx((0.4, 0.1414213), rel=1e-5)
    assert s["settings"]["fbc:0.05"]["psnr_to_uncached"][0] == pytest.approx(41.0)
    assert s["defaults"] == {"fbc": "fbc:0.05", "taylorseer": None}
    doc = caches.render_doc(s, {"command": "x", "seconds": 60, "threads": 2, "model": "m", "model_note": "n",
                                "clips": 2, "steps": 20})
    assert "| fbc:0.05 | 0.40 ± 0.14 | 0.845 ± 0.064 | +0.005 ± 0.007 | 41.0 ± 1.4 | 0.100 |" in doc
    assert "`fbc` → `fbc:0.05`," in doc and "`taylorseer`: none of the settings tried" in doc


def test_psnr_by_hand() -> None:
    import torch

    a = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)
    b = a.clone()
    b[0, 0, 0, 0] = 255  # one value in 12 off by 255: mse = 255^2 / 12 -> 10 log10(12)
    assert caches.psnr(a, a) == 100.0 and caches.psnr(a, b) == pytest.approx(10.791812, rel=1e-6)


def test_a_study_writes_its_doc_and_record_side_by_side(tmp_path) -> None:
    import json

    from sama_cli.toy.study import model_note, write_study

    record = write_study(tmp_path / "docs" / "x.md", "# x\n", {"meta": {"a": 1}})
    assert (tmp_path / "docs" / "x.md").read_text() == "# x\n" and json.loads(record.read_text()) == {"meta": {"a": 1}}
    assert model_note({"recipe": "r", "steps": 8}) == "recipe r, 8 training steps, toy world on a 1-px grid"
    assert model_note({"recipe": "r", "steps": 8, "toy_synth": {"grid": 4}}).endswith("on a 4-px grid")
    assert model_note({}) == "no model card"


def test_a_study_makes_clips_of_its_models_world(tmp_path) -> None:
    """The studies synthesize fresh clips on the lattice the model's card names (a grid-4 model edited on
    grid-1 clips would be scored off its world)."""
    import json

    from sama_cli.toy.study import synth_clips, world_grid

    assert world_grid({"toy_synth": {"grid": 4}}) == 4 and world_grid({}) == 1
    synth_clips(tmp_path / "toy", seed=5, clips=6, frames=5, grid=4)
    assert json.loads((tmp_path / "toy" / "world.json").read_text())["grid"] == 4
    for scene in sorted((tmp_path / "toy" / "scenes").glob("*.json")):
        for side in ("source", "target"):
            for obj in json.loads(scene.read_text())[side]["objects"]:
                assert obj["x"] % 4 == 0 and obj["y"] % 4 == 0, (scene.name, obj)


def test_the_shipped_defaults_are_the_documented_picks() -> None:
    """`sama edit --cache fbc|taylorseer` without a value uses what docs/caches.md (make caches) picked."""
    import json
    from pathlib import Path

    from sama_cli.edit.speed import CACHES

    record = json.loads((Path(__file__).resolve().parent.parent / "docs" / "caches.json").read_text())
    for name, pick in record["summary"]["defaults"].items():
        assert pick == f"{name}:{CACHES[name][1]:g}", (name, pick)
