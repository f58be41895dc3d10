"""`sama encode` on real fixtures and manifests: artifacts, cache, failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REAL_FIXTURES

from sama_cli.artifacts import load_artifact
from sama_cli.manifest import read_manifest

CLIP = REAL_FIXTURES / "replace-03-source.mp4"


def sama(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_encode_real_clip_with_tiny_vae_records_padding(tmp_path: Path) -> None:
    res = sama("encode", CLIP, "-o", tmp_path / "lat", "--vae", "tiny", "--max-frames", "6", "--size", "64x32",
               "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["files"] == 1 and summary["frames"] == 6
    art = load_artifact(next((tmp_path / "lat").glob("*.latents.safetensors")), "latents")
    assert art["latents"].shape == (16, 3, 8, 4)  # 6 frames padded to 9 -> 3 latent frames
    assert art.meta["padded_frames"] == 3 and art.meta["frames"] == 6 and art.meta["fps"] == 24.0
    assert "padded to 9" in res.stderr
    again = sama("encode", CLIP, "-o", tmp_path / "lat", "--vae", "tiny", "--max-frames", "6", "--size", "64x32",
                 "--json")
    assert json.loads(again.stdout)["skipped"] == 1 and json.loads(again.stdout)["files"] == 0
    over = sama("encode", CLIP, "-o", tmp_path / "lat", "--vae", "tiny", "--max-frames", "6", "--size", "64x32",
                "--overwrite", "--json")
    assert json.loads(over.stdout)["files"] == 1


def test_encode_manifest_fills_artifacts_and_survives_a_bad_file(tmp_path: Path) -> None:
    shutil.copy(REAL_FIXTURES / "add-03-source.mp4", tmp_path / "a.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 4096)
    rows = [{"id": "a", "kind": "video_edit", "source": "a.mp4", "target": "a.mp4", "instruction": "add a hat"},
            {"id": "b", "kind": "video_edit", "source": "broken.mp4", "instruction": "remove it"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "enc"
    res = sama("encode", tmp_path / "m.jsonl", "-o", out, "--vae", "pixel:s4", "--text-encoder", "tiny",
               "--max-frames", "3", "--size", "64x32", "--json")
    assert res.returncode == 1, res.stderr  # one row failed, the other is done
    summary = json.loads(res.stdout)
    assert [f["id"] for f in summary["failed"]] == ["b"] and "broken.mp4" in summary["failed"][0]["error"]
    manifest = read_manifest(out / "manifest.jsonl")
    assert [r["id"] for r in manifest.rows] == ["a"]
    arts = manifest.rows[0]["artifacts"]
    assert load_artifact(arts["source_latents"], "latents")["latents"].shape == (48, 3, 16, 8)
    text = load_artifact(arts["text"], "text-embeds")
    assert text.meta["prompt"] == "[Video edit] add a hat" and text["embeds"].shape[1] == 32
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob("b.*"))


def test_encode_pipes_rows_to_stdout_and_reads_stdin(tmp_path: Path) -> None:
    synth = sama("synth", tmp_path / "toy", "--clips", "2", "--images", "0", "--t2v", "1")
    assert synth.returncode == 0, synth.stderr
    text = (tmp_path / "toy" / "manifest.jsonl").read_text()
    proc = subprocess.run([sys.executable, "-m", "sama_cli", "encode", "-", "-o", str(tmp_path / "lat"), "--stdout"],
                          input=text, capture_output=True, text=True, timeout=300, cwd=tmp_path / "toy")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(Path(r["artifacts"]["target_latents"]).is_absolute() for r in rows)
