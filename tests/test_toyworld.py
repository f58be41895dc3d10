"""The toy world: determinism, exact ground truth, held-out split, the oracle, `sama synth`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sama_cli.core.errors import InputError
from sama_cli.io.manifest import read_manifest
from sama_cli.io.video import read_video
from sama_cli.toy.world import (
    HELDOUT_COMBOS,
    PALETTE,
    Edit,
    Scene,
    edit_mask,
    generate,
    load_scene_record,
    object_masks,
    oracle_scores,
    render,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def samples():
    return generate(36, 6, 4, seed=5, size=32, frames=9)


def test_deterministic_by_seed(samples) -> None:
    again = generate(36, 6, 4, seed=5, size=32, frames=9)
    assert [s.record(8) for s in samples] == [s.record(8) for s in again]
    other = generate(36, 6, 4, seed=6, size=32, frames=9)
    assert [s.record(8) for s in samples] != [s.record(8) for s in other]
    # a sample does not depend on how many others there are
    assert generate(3, 0, 0, seed=5)[2].record(8) == samples[2].record(8)


def test_target_differs_from_source_exactly_inside_the_edit_mask(samples) -> None:
    kinds = set()
    for s in samples:
        if s.kind == "t2v":
            continue
        kinds.add(s.edit.kind)
        a, b, mask = render(s.source), render(s.target), edit_mask(s.source, s.target, s.edit)
        changed = (a != b).any(-1)
        assert not (changed & ~mask).any(), f"{s.id}: pixels changed outside the edit mask"
        assert changed.any(), f"{s.id}: the edit changed nothing"
    assert kinds == {"recolour", "replace", "remove", "add", "background", "style"}


def test_masks_match_renders_and_objects_stay_in_frame(samples) -> None:
    for s in samples[:10]:
        frames, masks = render(s.target), object_masks(s.target)
        for i, obj in enumerate(s.target.objects):
            if s.target.style is None and (masks == i).any():
                assert (frames[masks == i] == torch.tensor(PALETTE[obj.colour], dtype=torch.uint8)).all()
            for t in range(s.target.frames):
                cx, cy = obj.centre(t, s.target.width, s.target.height)
                assert obj.radius - 1e-6 <= cx <= s.target.width - obj.radius + 1e-6
                assert obj.radius - 1e-6 <= cy <= s.target.height - obj.radius + 1e-6


def test_heldout_combos_never_appear_as_post_edit_objects_in_train(samples) -> None:
    seen_heldout = 0
    for s in samples:
        if s.kind == "t2v" or s.edit.new_index is None:
            continue
        obj = s.target.objects[s.edit.new_index]
        if s.split in ("train", "test"):  # test: new clips of seen combinations
            assert (obj.colour, obj.shape) not in HELDOUT_COMBOS
        else:
            assert s.split == "heldout" and (obj.colour, obj.shape) in HELDOUT_COMBOS
            seen_heldout += 1
    assert seen_heldout > 0
    splits = [s.split for s in samples if s.kind != "t2v"]
    assert splits.count("test") > 0 and splits.count("train") > splits.count("test")


def test_oracle_perfect_for_truth_lower_for_source_and_wrong_edit(samples) -> None:
    s = next(x for x in samples if x.kind == "video_edit" and x.edit.kind == "recolour")
    record = s.record(8)
    truth = oracle_scores(render(s.target), record)
    assert truth["edit_accuracy"] == 1.0 and truth["psnr"] == 100.0 and truth["preservation_psnr"] == 100.0
    assert truth["trajectory_error"] < 1.0
    untouched = oracle_scores(render(s.source), record)
    assert untouched["edit_accuracy"] < 0.6 and untouched["psnr"] < truth["psnr"]
    wrong_colour = next(c for c in PALETTE if c not in (s.target.objects[s.edit.new_index].colour,
                                                        s.source.objects[s.edit.target_index].colour))
    wrong = Scene.from_dict(record["target"])
    wrong.objects[s.edit.new_index].colour = wrong_colour
    bad = oracle_scores(render(wrong), record)
    assert bad["edit_accuracy"] < 0.6 and bad["trajectory_error"] > truth["trajectory_error"] + 3
    with pytest.raises(InputError, match="shape"):
        oracle_scores(render(s.target)[:4], record)


def test_synth_cli_writes_lossless_videos_and_a_valid_manifest(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    proc = subprocess.run([sys.executable, "-m", "sama_cli", "synth", str(out), "--clips", "8", "--images", "2",
                           "--t2v", "2", "--seed", "3", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 12 and summary["kinds"] == {"video_edit": 8, "image_edit": 2, "t2v": 2}
    manifest = read_manifest(out / "manifest.jsonl")  # validates kinds and that every file exists
    row = next(r for r in manifest.rows if r["kind"] == "video_edit")
    record = load_scene_record(row["scene"])
    assert torch.equal(read_video(row["target"]).frames, render(Scene.from_dict(record["target"])))
    # how the world was made, for the card of a model trained on it (studies synthesize more of the same world)
    assert json.loads((out / "world.json").read_text()) == {
        "seed": 3, "size": 32, "frames": 9, "fps": 8.0, "grid": 1, "heldout_frac": 0.2, "test_frac": 0.15,
        "kind_weights": {}, "clips": 8, "images": 2, "t2v": 2}
    assert torch.equal(read_video(row["source"]).frames, render(Scene.from_dict(record["source"])))
    assert record["instruction"] == row["instruction"] and Edit(**record["edit"]).kind == row["edit"]
    image = next(r for r in manifest.rows if r["kind"] == "image_edit")
    assert read_video(image["source"]).frames.shape == (1, 32, 32, 3)
    again = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "sama_cli", "synth", str(again), "--clips", "8", "--images", "2",
                    "--t2v", "2", "--seed", "3"], capture_output=True, text=True, timeout=120, check=True)
    assert (again / "manifest.jsonl").read_text() == (out / "manifest.jsonl").read_text()
    # a relative output folder: the manifest still resolves (regression: paths were joined twice)
    subprocess.run([sys.executable, "-m", "sama_cli", "synth", "rel", "--clips", "2", "--images", "0", "--t2v", "1"],
                   capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    assert len(read_manifest(tmp_path / "rel" / "manifest.jsonl")) == 3
    bad = subprocess.run([sys.executable, "-m", "sama_cli", "synth", str(tmp_path / "x"), "--frames", "8"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "4k+1" in bad.stderr and not (tmp_path / "x" / "manifest.jsonl").exists()


def test_captions_vary_in_wording_and_name_every_object() -> None:
    from sama_cli.toy.world import CAPTIONS, caption, generate

    clips = generate(0, 0, 40, seed=0, size=32, frames=5)
    texts = [caption(s.target) for s in clips]
    import re

    patterns = [re.compile("^" + re.escape(t).replace(r"\{things\}", ".+").replace(r"\{bg\}", ".+") + "$")
                for t in CAPTIONS]
    used = {next(i for i, p in enumerate(patterns) if p.match(text)) for text in texts}
    assert len(used) >= 3  # several wordings, chosen by scene content
    assert texts == [caption(s.target) for s in generate(0, 0, 40, seed=0, size=32, frames=5)]
    for s, text in zip(clips, texts, strict=True):
        assert all(f"{o.colour} {o.shape}" in text for o in s.target.objects) and " a orange" not in text


def test_add_puts_a_small_object_on_the_named_one_and_it_moves_with_it() -> None:
    """"add" is determined by the source and the words (issue 19: a random place made it a guess, and a
    place named by the frame cannot be found by a DiT without absolute positions): the new object sits
    on the named one, 0.7 x its radius, in another colour, and has its centre in every frame."""
    seen = 0
    for s in generate(120, 0, 0, seed=3, size=32, frames=5):
        if s.edit.kind != "add":
            continue
        new = s.target.objects[s.edit.new_index]
        host = s.source.objects[new.on]
        assert s.edit.instruction.endswith(f"small {new.colour} {new.shape} on the {host.colour} {host.shape}")
        assert new.radius == round(0.7 * host.radius, 2) and new.colour != host.colour
        masks = object_masks(s.target)
        for t in range(5):
            hx, hy = host.centre(t, 32, 32)
            ys, xs = torch.nonzero(masks[t] == s.edit.new_index, as_tuple=True)
            if new.shape == "circle":  # a circle's pixels are centred on the host's centre (to the pixel grid)
                assert abs(float(xs.float().mean()) + 0.5 - hx) < 0.5 and abs(float(ys.float().mean()) + 0.5 - hy) < 0.5
            # every shape lies within 0.85 * sqrt(2) r of its centre (a square's corners)
            assert ((xs.float() + 0.5 - hx) ** 2 + (ys.float() + 0.5 - hy) ** 2).max() <= 2 * (0.85 * new.radius) ** 2 + 1e-4
        seen += 1
    assert seen >= 10


def test_every_toy_word_is_in_the_tiny_vocabulary() -> None:
    """No toy instruction or caption reaches the tiny encoder as <unk> ("navy" and "take ... out" did)."""
    from sama_cli.model.text_encoder import tiny_tokenizer

    tok = tiny_tokenizer()
    samples = generate(120, 12, 30, seed=2)
    texts = [s.record(8.0)["caption"] for s in samples] + [s.edit.instruction for s in samples if s.edit]
    for text in texts:
        assert tok.unk_token_id not in tok(text).input_ids, text


def test_kind_weights_repeat_kinds_in_turn(tmp_path: Path) -> None:
    from sama_cli.toy.world import kind_cycle

    assert kind_cycle() == ("recolour", "replace", "remove", "add", "background", "style")
    assert kind_cycle({"recolour": 2, "style": 0}) == ("recolour", "recolour", "replace", "remove", "add", "background")
    kinds = [s.edit.kind for s in generate(12, 0, 0, seed=1, kind_weights={"add": 3, "background": 0, "style": 0})]
    assert kinds == ["recolour", "replace", "remove", "add", "add", "add"] * 2
    # default weights: the same samples as before the option existed
    assert [s.record(8) for s in generate(6, 0, 0, seed=1, kind_weights={})] == [s.record(8) for s in generate(6, 0, 0, seed=1)]
    res = subprocess.run([sys.executable, "-m", "sama_cli", "synth", str(tmp_path / "t"), "--kind-weights", "paint=2"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "--kind-weights: unknown edit kind 'paint'" in res.stderr
    assert not (tmp_path / "t").exists()


def test_grid_keeps_every_centre_on_its_lattice_through_bounces(tmp_path: Path) -> None:
    """`--grid g`: objects' centres lie on multiples of g pixels in every frame, bounces included (a fold at
    r and 32 - r maps the lattice onto itself only when 2r is a multiple of g: grid 4 keeps the 6-px radius,
    and the 0.7 x 6 = 4.2-px objects that "add" puts on it); grid 1 is the world as it was."""
    from sama_cli.toy.world import centre_of, radii

    assert radii(32, 1) == [5, 6] and radii(32, 2) == [5, 6] and radii(32, 4) == [6]
    for grid in (2, 4):
        samples = generate(60, 6, 6, seed=4, size=32, frames=9, grid=grid)
        steps = set()
        for s in samples:
            for scene in filter(None, (s.source, s.target)):
                for i, obj in enumerate(scene.objects):
                    path = [centre_of(scene, i, t) for t in range(scene.frames)]
                    assert all(x % grid == 0 and y % grid == 0 for x, y in path), (grid, s.id, path)
                    steps |= {(abs(b[0] - a[0]), abs(b[1] - a[1])) for a, b in zip(path, path[1:], strict=False)}
                    if obj.on is None:
                        assert {abs(obj.vx), abs(obj.vy)} <= {0.0, float(grid)} and (obj.vx or obj.vy)
        # one lattice step a frame, or a bounce that folds part of one back (never a jump)
        assert max(max(d) for d in steps) <= grid
    assert [s.record(8) for s in generate(8, 2, 2, seed=1, grid=1)] == [s.record(8) for s in generate(8, 2, 2, seed=1)]
    res = subprocess.run([sys.executable, "-m", "sama_cli", "synth", str(tmp_path / "g"), "--grid", "3"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "--grid must be 1, 2 or 4 pixels, not 3" in res.stderr
    assert not (tmp_path / "g").exists()
