"""`perturb`, `anchor` and the whole data chain: synth -> perturb --mix -> encode -> anchor -> loader."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sama_cli.data.anchors import select_frames
from sama_cli.data.dataset import ArtifactDataset, BucketSampler, collate
from sama_cli.data.pretext import TASK_PREFIXES
from sama_cli.io.artifacts import load_artifact
from sama_cli.io.manifest import dumps_rows, read_manifest
from sama_cli.io.video import probe, read_video
from sama_cli.model.siglip import load_semantic_encoder


def sama(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=300)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    assert sama("synth", root, "--clips", "6", "--images", "2", "--t2v", "8", "--seed", "2").returncode == 0
    return root


def test_pipeline_produces_rows_the_training_loader_reads(toy: Path, tmp_path: Path) -> None:
    res = sama("perturb", "--mix", toy / "manifest.jsonl", "-o", tmp_path / "mix", "--seed", "4", "--json")
    assert res.returncode == 0, res.stderr
    tasks = json.loads(res.stdout)["tasks"]
    assert sum(tasks.values()) == 8
    res = sama("encode", tmp_path / "mix" / "manifest.jsonl", "-o", tmp_path / "lat", "--text-encoder", "tiny")
    assert res.returncode == 0, res.stderr
    res = sama("anchor", tmp_path / "lat" / "manifest.jsonl", "-o", tmp_path / "anc", "--grid", "2")
    assert res.returncode == 0, res.stderr
    rows = read_manifest(tmp_path / "anc" / "manifest.jsonl").rows
    for row in rows:
        if row["kind"] == "t2v":
            task = row["pretext"]["task"]
            assert row["prompt"].startswith(TASK_PREFIXES[task])
            assert ("source" in row) == (task != "none")
            assert ("source_latents" in row["artifacts"]) == (task != "none")
            if task != "none":
                assert probe(row["source"]).frames % 4 == 1
    ds = ArtifactDataset([tmp_path / "anc" / "manifest.jsonl"], need_anchors=True)
    assert len(ds) == 16 and ds.provenance["codec"]["name"] == "pixel"
    batch = collate([ds.samples[i] for i in BucketSampler(ds, video_batch=2, image_batch=2, seed=0).indices(0)], 16)
    assert batch.anchors.shape[1:] == (5, 24) and batch.text.shape[1:] == (16, 32)
    assert {s.task for s in ds.samples if s.kind == "t2v"} <= set(TASK_PREFIXES)


def test_perturb_one_clip_and_its_latents(toy: Path, tmp_path: Path) -> None:
    clip = next((toy / "videos").glob("t2v*.mp4"))
    res = sama("perturb", clip, "--task", "tube-shuffle", "--splits", "2,2,2", "-o", tmp_path / "s.mp4", "--json")
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["task"] == "tube-shuffle" and record["splits"] == [2, 2, 2] and record["seed"] == 0
    assert json.loads((tmp_path / "s.mp4.json").read_text()) == record  # the record lives beside the clip
    from sama_cli.data.pretext import unshuffle

    assert torch.equal(unshuffle(read_video(tmp_path / "s.mp4").frames, record), read_video(clip).frames)
    assert sama("encode", clip, "-o", tmp_path / "lat").returncode == 0
    lat = next((tmp_path / "lat").glob("*.safetensors"))
    res = sama("perturb", lat, "--task", "cube-inpaint", "-o", tmp_path / "masked.safetensors", "--json")
    assert res.returncode == 0, res.stderr
    art = load_artifact(tmp_path / "masked.safetensors", "latents")
    assert art.meta["pretext"]["space"] == "latent" and art.meta["pretext"]["prefix"] == TASK_PREFIXES["cube-inpaint"]
    bad = sama("perturb", lat, "--task", "speed", "-o", tmp_path / "x.safetensors")
    assert bad.returncode == 2 and "speed perturbation" in bad.stderr and not (tmp_path / "x.safetensors").exists()
    bad = sama("perturb", tmp_path / "nope.mp4", "--task", "speed", "-o", tmp_path / "y.mp4")
    assert bad.returncode == 2 and "nope.mp4" in bad.stderr


def test_anchor_tokens_come_from_the_recorded_frames(toy: Path, tmp_path: Path) -> None:
    clip = next((toy / "videos").glob("t2v*.mp4"))
    res = sama("anchor", clip, "-o", tmp_path, "--frames", "3", "--select", "uniform", "--json")
    assert res.returncode == 0, res.stderr
    assert "tiny is a small random SigLIP" in res.stderr and "only for tests" in res.stderr
    art = load_artifact(next(tmp_path.glob("*.anchors.safetensors")), "anchors")
    assert art["tokens"].shape == (3 * 65, 24) and art.meta["frames"] == [0, 4, 8]
    enc = load_semantic_encoder("tiny")
    expected = enc(read_video(clip).frames[[0, 4, 8]]).reshape(-1, 24)
    torch.testing.assert_close(art["tokens"], expected)
    assert select_frames(9, 2, "first") == [0, 1] and select_frames(1, 2, "first") == [0, 0]
    assert sama("anchor", clip, "-o", tmp_path, "--select", "middle").returncode == 2


def test_mix_is_deterministic_by_seed(toy: Path, tmp_path: Path) -> None:
    from sama_cli.data.pretext_files import mix

    for name in ("a", "b"):
        mix(str(toy / "manifest.jsonl"), tmp_path / name, seed=11)
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()  # paths are relative
    videos = sorted(p.name for p in (a / "videos").iterdir())
    assert videos and videos == sorted(p.name for p in (b / "videos").iterdir())
    for name in videos:
        assert (a / "videos" / name).read_bytes() == (b / "videos" / name).read_bytes(), name
    mix(str(toy / "manifest.jsonl"), tmp_path / "c", seed=12)
    assert (tmp_path / "c" / "manifest.jsonl").read_text() != (a / "manifest.jsonl").read_text()


def test_mix_reads_stdin_and_pipes_into_encode(toy: Path, tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    cmd = [sys.executable, "-m", "sama_cli"]
    mix = subprocess.Popen([*cmd, "perturb", "--mix", "-", "-o", "mix", "--seed", "3", "--stdout"], cwd=work,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    enc = subprocess.Popen([*cmd, "encode", "-", "-o", "lat", "--vae", "pixel:s4", "--stdout"], cwd=elsewhere,
                           stdin=mix.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mix.stdout.close()  # encode owns the pipe now
    mix.stdin.write(dumps_rows(read_manifest(toy / "manifest.jsonl").rows, None))  # absolute paths, as piped
    mix.stdin.close()
    out, enc_err = enc.communicate(timeout=300)
    mix_err = mix.stderr.read()
    assert mix.wait(timeout=60) == 0, mix_err
    assert enc.returncode == 0, enc_err
    assert "sama perturb --mix" in mix_err and "sama encode" in enc_err  # logs on stderr, rows on stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in read_manifest(toy / "manifest.jsonl").rows]
    for row in rows:
        assert Path(row["artifacts"]["target_latents"]).is_absolute()
        assert Path(row["artifacts"]["target_latents"]).is_relative_to(elsewhere / "lat")
        if row["kind"] == "t2v" and row["pretext"]["task"] != "none":
            assert Path(row["source"]).is_relative_to(work / "mix") and "source_latents" in row["artifacts"]


def test_anchor_shards_inputs_across_ranks(toy: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "sama_cli", "anchor", toy / "manifest.jsonl", "-o",
                                       tmp_path / "anc", "--grid", "2", "--stdout"], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr
    shards = [[json.loads(line)["id"] for line in out.splitlines()] for out, _ in outs]
    ids = [r["id"] for r in read_manifest(toy / "manifest.jsonl").rows]
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(ids)
    merged = read_manifest(tmp_path / "anc" / "manifest.jsonl").rows
    assert [r["id"] for r in merged] == ids and all(Path(r["artifacts"]["anchors"]).is_file() for r in merged)
    assert sorted(p.name for p in (tmp_path / "anc").iterdir()) == ["anchors", "manifest.jsonl"]  # parts merged
