"""`perturb`, `anchor` and the whole data chain: synth -> perturb --mix -> encode -> anchor -> loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sama_cli.anchors import select_frames
from sama_cli.artifacts import load_artifact
from sama_cli.data import ArtifactDataset, BucketSampler, collate
from sama_cli.manifest import read_manifest
from sama_cli.model.siglip import load_semantic_encoder
from sama_cli.pretext import TASK_PREFIXES
from sama_cli.video_io import probe, read_video


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
    from sama_cli.pretext import unshuffle

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
    art = load_artifact(next(tmp_path.glob("*.anchors.safetensors")), "anchors")
    assert art["tokens"].shape == (3 * 65, 24) and art.meta["frames"] == [0, 4, 8]
    enc = load_semantic_encoder("tiny")
    expected = enc(read_video(clip).frames[[0, 4, 8]]).reshape(-1, 24)
    torch.testing.assert_close(art["tokens"], expected)
    assert select_frames(9, 2, "first") == [0, 1] and select_frames(1, 2, "first") == [0, 0]
    assert sama("anchor", clip, "-o", tmp_path, "--select", "middle").returncode == 2
