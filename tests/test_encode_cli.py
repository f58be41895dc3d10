"""`sama encode` on real fixtures and manifests: artifacts, cache, failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REAL_FIXTURES

from sama_cli.io.artifacts import load_artifact
from sama_cli.io.manifest import read_manifest
from sama_cli.io.video import probe

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
    total = probe(CLIP).frames  # --max-frames cut the clip: said once on stderr, and recorded
    assert art.meta["frames_total"] == total > 6 and f"first 6 of {total} frames" in res.stderr
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
    # atomic writes use hidden temp files that keep the real suffix (.name.XXXX.safetensors): none is left
    assert not list(out.rglob(".*")) and not list(out.rglob("b.*"))


def test_encode_pipes_rows_to_stdout_and_reads_stdin(tmp_path: Path) -> None:
    synth = sama("synth", tmp_path / "toy", "--clips", "2", "--images", "0", "--t2v", "1")
    assert synth.returncode == 0, synth.stderr
    text = (tmp_path / "toy" / "manifest.jsonl").read_text()
    proc = subprocess.run([sys.executable, "-m", "sama_cli", "encode", "-", "-o", str(tmp_path / "lat"), "--stdout"],
                          input=text, capture_output=True, text=True, timeout=300, cwd=tmp_path / "toy")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(Path(r["artifacts"]["target_latents"]).is_absolute() for r in rows)


def test_synth_pipes_into_encode(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [sys.executable, "-m", "sama_cli"]
    synth = subprocess.Popen([*cmd, "synth", "toy", "--clips", "2", "--images", "1", "--t2v", "1", "--frames", "5",
                              "--size", "32", "--stdout"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    enc = subprocess.Popen([*cmd, "encode", "-", "-o", "lat", "--vae", "pixel:s4", "--text-encoder", "tiny",
                            "--stdout"], cwd=elsewhere, stdin=synth.stdout, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    synth.stdout.close()  # encode owns the pipe now
    out, enc_err = enc.communicate(timeout=300)
    synth_err = synth.stderr.read()
    assert synth.wait(timeout=60) == 0, synth_err
    assert enc.returncode == 0, enc_err
    assert "sama synth" in synth_err and "sama encode" in enc_err  # logs on stderr, rows on stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows] == [r["kind"] for r in read_manifest(tmp_path / "toy" / "manifest.jsonl").rows]
    assert len(rows) == 4
    for row in rows:  # synth's paths were absolute: they resolved from another folder
        assert Path(row["target"]).is_relative_to(tmp_path / "toy")
        assert Path(row["artifacts"]["target_latents"]).is_relative_to(elsewhere / "lat")
        assert Path(row["artifacts"]["text"]).is_file()


def test_bad_options_and_codec_errors_are_one_line(tmp_path: Path) -> None:
    for args, words in (((CLIP, "--resize", "bogus"), "--resize must be one of"),
                        ((CLIP, "--vae", "pixel:sx"), "--vae 'pixel:sx' is not a codec spec")):
        res = sama("encode", *args, "-o", tmp_path / "x")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert [line for line in res.stderr.splitlines() if line.strip()] == [res.stderr.strip()]
        assert words in res.stderr
    import torch

    from sama_cli.data.latents import EncodeOptions, encode
    from sama_cli.model.vae import load_codec

    summary, _ = encode([str(CLIP)], tmp_path / "y", codec=load_codec("pixel:s3"), device=torch.device("cpu"),
                        opts=EncodeOptions(size=(64, 32), max_frames=1))
    [failed] = summary.failed
    assert "divisible by 3" in failed["error"] and failed["error"].startswith(str(CLIP))
