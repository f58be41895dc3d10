"""Writes the system refuses (a full disk, a read-only folder): one line naming the path, the I/O exit
code, no temporary file left behind, nothing already on disk lost."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_train import tiny_recipe_overrides, write_artifact_manifest

from sama_cli.core.errors import EXIT_IO, StorageError, storage_error
from sama_cli.io.artifacts import atomic_write_text, save_artifact
from sama_cli.io.video import write_video
from sama_cli.train import checkpoint as ckpt
from sama_cli.train.loop import train
from sama_cli.train.recipe import load_recipe


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 48 KiB tmpfs where this machine lets the test mount one (root; CI runs as root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-fault tests below still run")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_encode_onto_a_full_disk_is_one_line_and_exit_74(tiny_disk: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8), 8)
    out = tiny_disk / "lat"
    res = subprocess.run([sys.executable, "-m", "sama_cli", "encode", clip, "-o", out, "--vae", "pixel:s1"],
                         capture_output=True, text=True)
    assert res.returncode == EXIT_IO == 74, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(out) in lines[0] and "No space left on device" in lines[0]
    assert "Traceback" not in res.stderr
    assert [p.name for p in out.rglob("*") if p.name.startswith(".")] == []  # no temporary file left


def test_a_refused_write_names_the_path_and_removes_the_temporary_file(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    atomic_write_text(tmp_path / "keep.txt", "old")
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    monkeypatch.setattr("sama_cli.io.artifacts.save_file", full)
    with pytest.raises(StorageError) as e:
        save_artifact(tmp_path / "a.safetensors", {"x": torch.zeros(2)}, "latents", {})
    assert e.value.exit_code == EXIT_IO and e.value.message.startswith(str(tmp_path / "a.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.geteuid() != 0:  # root writes into read-only folders anyway
            with pytest.raises(StorageError, match="Permission denied"):
                atomic_write_text(tmp_path / "ro" / "x.txt", "new")
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def test_library_ways_of_saying_disk_full_are_recognised() -> None:
    from safetensors import SafetensorError

    # the messages as these libraries raise them on a full 16 KiB tmpfs (safetensors 0.x, torch 2.13)
    safetensors_error = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert storage_error(safetensors_error, "a").message == "a: cannot write: No space left on device"
    assert storage_error(torch_error, "b").message == "b: cannot write: file write failed (is the disk full?)"
    assert storage_error(OSError(errno.EROFS, "Read-only file system"), "c").message == "c: cannot write: Read-only file system"
    assert storage_error(ValueError("bad value"), "d") is None
    assert storage_error(OSError(errno.ENOENT, "No such file or directory"), "e") is None  # not a write refusal


def test_a_checkpoint_that_cannot_be_written_is_removed_at_once_and_the_last_one_kept(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    out = tmp_path / "run"
    real = ckpt.dcp.save

    def filling_save(state, checkpoint_id):
        if checkpoint_id.endswith("step_00000006.tmp"):
            real(state, checkpoint_id=checkpoint_id)  # some shards written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", checkpoint_id)
        return real(state, checkpoint_id=checkpoint_id)

    monkeypatch.setattr(ckpt.dcp, "save", filling_save)
    with pytest.raises(StorageError) as e:
        train(load_recipe(None, tiny_recipe_overrides(manifest, out, 9)))
    root = out / "checkpoints"
    assert e.value.exit_code == EXIT_IO and "step_00000006.tmp" in e.value.message
    assert "No space left on device" in e.value.message
    assert not (root / "step_00000006.tmp").exists()  # the space is back now, not at the next run
    assert [s for s, _ in ckpt.complete_checkpoints(root)] == [3]
    assert json.loads((root / "step_00000003" / "trainer.json").read_text())["step"] == 3
