"""The end of `make demo`: its per-kind table (issue 19) for this run's models, the embedded model (from
its model card) and the unedited source. Values written by hand into fake reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sama_cli.toy import demo


def _report(folder: Path, per_kind: dict) -> None:
    folder.mkdir(parents=True)
    splits = {s: {"edit_accuracy": 0.0} for s in per_kind}
    (folder / "summary.json").write_text(json.dumps({"benchmark": "toy", "categories": {}, "overall": {},
                                                     "splits": splits, "split_categories": per_kind}))


def test_kind_table_has_every_arm_and_the_embedded_model(tmp_path: Path) -> None:
    acc = lambda v: {"edit_accuracy": v, "psnr": 99.0}  # noqa: E731
    _report(tmp_path / "report", {"test": {"recolour": acc(0.7), "style": acc(0.9)}, "heldout": {"recolour": acc(0.5)}})
    _report(tmp_path / "report_stage0", {"test": {"recolour": acc(0.1)}})
    _report(tmp_path / "report_source", {"test": {"recolour": acc(0.0), "style": acc(0.25)}})
    shipped = {"test": {"recolour": acc(0.95)}}
    k = demo.kind_scores(tmp_path, shipped)
    assert list(k["test"]) == ["stage 1 (SAMA)", demo.SHIPPED, "stage 0 only", "unedited source"]
    assert k["test"]["stage 1 (SAMA)"] == {"recolour": 0.7, "style": 0.9}
    assert k["test"][demo.SHIPPED] == {"recolour": 0.95}
    assert k["test"]["unedited source"]["style"] == pytest.approx(0.25)
    assert k["heldout"] == {"stage 1 (SAMA)": {"recolour": 0.5}}
    assert list(demo.kind_scores(tmp_path, None)["test"]) == ["stage 1 (SAMA)", "stage 0 only", "unedited source"]


def test_the_readme_table_goes_between_its_markers(tmp_path: Path) -> None:
    from sama_cli.toy.embedded import README_BEGIN, README_END, kind_table, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    model = {"test": {"recolour": {"edit_accuracy": 0.91, "preservation_psnr": 38.04, "trajectory_error": 1.234}},
             "heldout": {"recolour": {"edit_accuracy": 0.62}}}
    source = {"test": {"recolour": {"edit_accuracy": 0.0}}}
    table = kind_table(model, source)
    assert table.splitlines()[2] == "| recolour | 0.910 | 0.000 | 0.620 | - | 38.0 | 1.23 |"
    assert update_readme(readme, table)
    assert readme.read_text() == f"# x\nbefore\n{README_BEGIN}\n{table}\n{README_END}\nafter\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, table) and plain.read_text() == "no markers\n"


def test_the_embedded_model_is_a_reproduction_check_only_when_it_had_the_demos_recipe(tmp_path: Path) -> None:
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "recipe.yaml").write_text("name: toy_stage1\ntrain: {steps: 3000}\n")
    recipe = demo._recipe_name(tmp_path / "stage1")
    assert recipe == "toy_stage1" and demo._recipe_name(tmp_path / "none") is None
    same = demo._shipped_line({"recipe": "toy_stage1", "steps": 3000}, recipe, 0.62, 0.60)
    assert "same recipes" in same and "(within the documented tolerance of ±0.05)" in same
    assert "outside" in demo._shipped_line({"recipe": "toy_stage1"}, recipe, 0.70, 0.60)
    # make toy-model's longer recipe: a comparison, never a verdict on reproduction
    other = demo._shipped_line({"recipe": "toy_model_stage1", "steps": 8000}, recipe, 0.93, 0.60)
    assert other == ("the embedded model (toy_model_stage1, 8000 stage-1 steps: make toy-model): test edit accuracy "
                     "0.930; this run (toy_stage1) 0.600")
