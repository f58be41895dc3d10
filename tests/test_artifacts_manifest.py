"""Artifacts (atomic, typed, validated) and manifests (resolution, errors with line numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sama_cli.core.errors import InputError
from sama_cli.io.artifacts import atomic_path, is_valid_cache, load_artifact, read_header, save_artifact
from sama_cli.io.manifest import read_manifest, row_prompt, write_manifest


def test_artifact_round_trip_and_validation(tmp_path: Path) -> None:
    t = torch.randn(16, 3, 4, 4)
    path = save_artifact(tmp_path / "a.safetensors", {"latents": t}, "latents", {"codec": {"name": "pixel"}, "fps": 8})
    art = load_artifact(path, "latents")
    assert torch.equal(art["latents"], t) and art.meta == {"codec": {"name": "pixel"}, "fps": 8}
    assert read_header(path) == ("latents", art.meta)
    assert is_valid_cache(path, "latents", {"fps": 8}) and not is_valid_cache(path, "latents", {"fps": 9})
    with pytest.raises(InputError, match="expected an artifact of kind 'anchors', found 'latents'"):
        load_artifact(path, "anchors")
    with pytest.raises(InputError, match="no tensor 'tokens'"):
        art["tokens"]
    from safetensors.torch import save_file

    save_file({"x": t}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="not a sama artifact"):
        load_artifact(tmp_path / "plain.safetensors")
    save_file({"x": t}, str(tmp_path / "future.safetensors"), metadata={"schema": "99", "kind": "latents"})
    with pytest.raises(InputError, match="newer than this sama supports"):
        load_artifact(tmp_path / "future.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.safetensors"):
        load_artifact(tmp_path / "cut.safetensors")
    with pytest.raises(ValueError, match="unknown artifact kind"):
        save_artifact(tmp_path / "b.safetensors", {"x": t}, "pictures", {})


def test_atomic_writes_never_leave_partial_files(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_outputs_get_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    """mkstemp creates 0600 files; outputs must be readable by whoever could read a plainly written file."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x")
    save_artifact(tmp_path / "a.safetensors", {"latents": torch.zeros(1)}, "latents", {})
    for p in (tmp_path / "out.bin", tmp_path / "a.safetensors"):
        assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~mask


def test_manifest_resolution_and_round_trip(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.lat").write_bytes(b"x")
    rows = [{"id": "a", "kind": "video_edit", "source": "clips/a.mp4", "instruction": "make it blue",
             "artifacts": {"source_latents": "a.lat"}, "extra": {"kept": True}},
            {"id": 2, "kind": "t2v", "target": "clips/a.mp4", "caption": "a clip", "prompt": "[Tag] a clip"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    m = read_manifest(tmp_path / "m.jsonl")
    assert m.rows[0]["source"] == str(tmp_path / "clips" / "a.mp4") and m.rows[1]["id"] == "2"
    assert m.rows[0]["artifacts"]["source_latents"] == str(tmp_path / "a.lat") and m.rows[0]["extra"] == {"kept": True}
    assert row_prompt(m.rows[0]) == "[Video edit] make it blue" and row_prompt(m.rows[1]) == "[Tag] a clip"
    write_manifest(m.rows, tmp_path / "copy.jsonl")
    first = json.loads((tmp_path / "copy.jsonl").read_text().splitlines()[0])
    assert first["source"] == "clips/a.mp4"  # written relative to the manifest's folder
    assert read_manifest(tmp_path / "copy.jsonl").rows == m.rows


@pytest.mark.parametrize("line,expected", [
    ('{"id": "a", "kind": "movie", "source": "x"}', "m.jsonl:2: unknown kind 'movie'"),
    ('{"id": "a", "kind": "video_edit", "source": "missing.mp4", "instruction": "x"}', "m.jsonl:2: source file does not exist"),
    ('{"id": "a", "kind": "t2v", "target": "ok.mp4"}', "m.jsonl:2: t2v row 'a' has no 'caption'"),
    ('{"kind": "t2v"}', "m.jsonl:2: row has no 'id'"),
    ("{not json", "m.jsonl:2: not valid JSON"),
    ('{"id": "ok", "kind": "t2v", "target": "ok.mp4", "caption": "c"}', "m.jsonl:2: duplicate id 'ok'"),
])
def test_manifest_errors_name_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    (tmp_path / "ok.mp4").write_bytes(b"x")
    good = '{"id": "ok", "kind": "t2v", "target": "ok.mp4", "caption": "c"}'
    (tmp_path / "m.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError) as info:
        read_manifest(tmp_path / "m.jsonl")
    assert expected in str(info.value)
