"""The toy recipes run the whole data chain (synth -> perturb --mix -> encode -> anchor) and both stages
on CPU, and the loss falls; row selection by kind and the image/video step mix do what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sama_cli.data.dataset import ArtifactDataset, BucketSampler
from sama_cli.edit.loading import load_editor
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import build_model
from sama_cli.train.loop import train
from sama_cli.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def sama(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    steps = [("synth", root / "toy", "--clips", "10", "--images", "8", "--t2v", "10", "--frames", "5", "--size", "32"),
             ("perturb", "--mix", root / "toy" / "manifest.jsonl", "-o", root / "mix"),
             ("encode", root / "mix" / "manifest.jsonl", "-o", root / "lat", "--vae", "pixel:s4", "--text-encoder",
              "tiny"),
             ("anchor", root / "lat" / "manifest.jsonl", "-o", root / "anc", "--grid", "2")]
    for args in steps:
        res = sama(*args)
        assert res.returncode == 0, f"{args[0]}: {res.stderr}"
    return root / "anc" / "manifest.jsonl"


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_toy_stage0_then_stage1_run_and_the_loss_falls(toy_data: Path, tmp_path: Path) -> None:
    common = [f"data.manifests=[{toy_data}]", "train.log_every=1", "train.save_every=1000", "data.splits=[]"]
    s0 = load_recipe(REPO / "recipes" / "toy_stage0.yaml", [*common, "train.steps=24", f"train.out_dir={tmp_path / 's0'}"])
    assert s0.model.preset == "toy" and s0.data.kinds == ["image_edit", "t2v"]
    r0 = train(s0)
    losses = _losses(tmp_path / "s0")
    assert sum(losses[-6:]) / 6 < 0.8 * sum(losses[:6]) / 6, losses
    s1 = load_recipe(REPO / "recipes" / "toy_stage1.yaml",
                     [*common, "train.steps=24", f"train.out_dir={tmp_path / 's1'}", f"model.init={r0.export['ema']}"])
    r1 = train(s1)
    losses = _losses(tmp_path / "s1")
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6, losses
    doc = json.loads((Path(r1.export["ema"]) / "config.json").read_text())
    assert doc["config"]["preset"] == "toy" and doc["config"]["source_mode"] == "channel"
    # one pixel size in the data: the export records it, and `sama edit` works at it (not at the bucket)
    assert doc["meta"]["working_size"] == [32, 32]
    assert load_editor(r1.export["ema"], device="cpu").working_size == (32, 32)


def test_kinds_select_rows_and_image_ratio_sets_the_image_step_share(toy_data: Path) -> None:
    both = ArtifactDataset([toy_data], need_anchors=True, kinds=["image_edit", "video_edit"])
    assert {s.kind for s in both.samples} == {"image_edit", "video_edit"}
    stage0 = ArtifactDataset([toy_data], need_anchors=True, kinds=["image_edit", "t2v"])
    assert {s.kind for s in stage0.samples} == {"image_edit", "t2v"}
    sampler = BucketSampler(both, video_batch=2, image_batch=4, seed=0, image_ratio=0.25)
    images = sum(both.samples[sampler.indices(step)[0]].kind == "image_edit" for step in range(800))
    assert 160 < images < 240  # 25% of 800 steps, within sampling noise
    batch = sampler.indices(0)
    assert len(batch) == (4 if both.samples[batch[0]].kind == "image_edit" else 2)


def test_channel_mode_matches_a_source_of_another_length() -> None:
    model = build_model(from_preset("tiny", source_mode="channel", in_channels=4, out_channels=4), seed=0).eval()
    x = torch.randn(1, 4, 3, 4, 4)
    text = torch.randn(1, 16, 32)
    short = torch.randn(1, 4, 1, 4, 4)
    held = torch.cat([short] * 3, dim=2)
    with torch.no_grad():
        a = model(x, torch.tensor([500.0]), text, source_latents=short).video
        b = model(x, torch.tensor([500.0]), text, source_latents=held).video
        c = model(x, torch.tensor([500.0]), text, source_latents=torch.cat([held, short], dim=2)).video
    assert torch.equal(a, b) and torch.equal(b, c)  # held last frame; extra frames trimmed


def test_pretexts_on_the_fly_for_plain_t2v_batches(toy_data: Path, tmp_path: Path) -> None:
    from sama_cli.data.dataset import pretext_on_the_fly, step_generator
    from sama_cli.data.pretext import TASK_PREFIXES, prefixed
    from sama_cli.io.artifacts import load_artifact
    from sama_cli.model.text_encoder import load_text_encoder

    plain = toy_data.parents[1] / "toy" / "manifest.jsonl"
    res = sama("encode", plain, "-o", tmp_path / "lat", "--vae", "pixel:s4", "--text-encoder", "tiny")
    assert res.returncode == 0, res.stderr
    ds = ArtifactDataset([tmp_path / "lat" / "manifest.jsonl"], need_anchors=False, kinds=["t2v"])
    s = ds.samples[0]
    assert set(s.text_variants) == {"cube-inpaint", "tube-shuffle"} and s.fill == pytest.approx(-2.0)
    # the stored variant is the prefixed caption's embedding
    row = next(json.loads(line) for line in plain.read_text().splitlines() if json.loads(line)["id"] == s.id)
    enc = load_text_encoder("tiny")
    want = enc([prefixed(TASK_PREFIXES["cube-inpaint"], row["caption"])])[0]
    assert torch.allclose(s.text_variants["cube-inpaint"], want.float(), atol=1e-6)
    art = load_artifact(tmp_path / "lat" / "text" / f"{s.id}.safetensors", "text-embeds")
    assert torch.equal(art["embeds"].float(), s.text)

    batch = ds.samples[:4]
    out, task = pretext_on_the_fly(batch, [0, 1, 0, 0], step_generator(0, 0, 3))
    assert task == "cube-inpaint"
    for before, after in zip(batch, out, strict=True):
        blacked = (after.source == before.fill).all(dim=0).all(dim=-1).all(dim=-1)  # whole latent frames
        assert blacked.any() and not blacked[0] and torch.equal(after.source[:, ~blacked], before.target[:, ~blacked])
        assert after.text is before.text_variants["cube-inpaint"] and after.task == "cube-inpaint"
    out, task = pretext_on_the_fly(batch, [0, 0, 0, 1], step_generator(0, 1, 3))
    assert task == "tube-shuffle"
    assert all(torch.equal(a.source.flatten().sort().values, b.target.flatten().sort().values)
               for a, b in zip(out, batch, strict=True))
    assert pretext_on_the_fly(batch, [1, 0, 0, 0], step_generator(0, 2, 3)) == (batch, "none")
    assert pretext_on_the_fly(batch, [0, 0, 1, 0], step_generator(0, 2, 3))[1] == "none"  # speed: pre-perturbed only
    edits = [x for x in ArtifactDataset([toy_data], need_anchors=False, kinds=["video_edit"]).samples[:2]]
    assert pretext_on_the_fly(edits, [0, 1, 0, 0], step_generator(0, 3, 3)) == (edits, "none")

    recipe = load_recipe(REPO / "recipes" / "toy_stage0.yaml", [
        f"data.manifests=[{tmp_path / 'lat' / 'manifest.jsonl'}]", "data.kinds=[t2v]", "data.pretext_on_the_fly=true",
        "train.semantic=false", "train.steps=6", "train.log_every=6", f"train.out_dir={tmp_path / 'run'}"])
    train(recipe)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert sum(record["pretext_tasks"].values()) == 6 and set(record["pretext_tasks"]) <= {"none", "cube-inpaint",
                                                                                          "tube-shuffle"}


def test_a_model_trained_without_sa_samples_without_semantic_tokens(tmp_path: Path) -> None:
    from sama_cli.edit.sampler import SamplingConfig, sample

    config = from_preset("tiny", in_channels=4, out_channels=4)
    model = build_model(config.replace(extra={"semantic_anchoring": False}), seed=0).eval()
    with torch.no_grad():
        r = sample(model, (1, 4, 1, 4, 4), torch.randn(1, 16, 32), None, None, SamplingConfig(steps=2, guidance=1.0))
    assert r.semantic is None
    model_sa = build_model(config, seed=0).eval()
    with torch.no_grad():
        r = sample(model_sa, (1, 4, 1, 4, 4), torch.randn(1, 16, 32), None, None, SamplingConfig(steps=2, guidance=1.0))
    assert r.semantic is not None and r.semantic.shape[1] == config.semantic_tokens


def test_tensorboard_gets_the_logged_scalars_when_installed(tmp_path: Path, monkeypatch) -> None:
    import sama_cli.train.loop as train_module

    sys.path.insert(0, str(REPO / "tests"))
    from helpers_train import tiny_recipe_overrides, write_artifact_manifest

    calls: list[tuple[str, float, int]] = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter
        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def close(self) -> None:
            calls.append(("closed", 0.0, 0))

    monkeypatch.setattr(train_module, "tensorboard_writer", lambda folder, purge_step=None: Writer())
    manifest = write_artifact_manifest(tmp_path / "data")
    train(load_recipe(None, tiny_recipe_overrides(manifest, tmp_path / "run", 4, **{"train.log_every": 2})))
    assert [(t, s) for t, _, s in calls if t == "train/loss"] == [("train/loss", 1), ("train/loss", 2),
                                                                  ("train/loss", 4)]
    assert {t for t, _, _ in calls} >= {"train/loss_fm", "train/loss_sem", "train/lr", "train/grad_norm", "closed"}
    calls.clear()
    train(load_recipe(None, tiny_recipe_overrides(manifest, tmp_path / "off", 2, **{"train.tensorboard": False})))
    assert calls == []


def test_lazy_dataset_gives_the_same_buckets_samples_and_training(toy_data: Path, tmp_path: Path) -> None:
    """data.lazy keeps only paths and header shapes; buckets, samples and so training are unchanged."""
    eager = ArtifactDataset([toy_data], need_anchors=True)
    lazy = ArtifactDataset([toy_data], need_anchors=True, lazy=True)
    assert lazy.bucket_keys == eager.bucket_keys and dict(lazy.buckets) == dict(eager.buckets)
    assert lazy.provenance == eager.provenance and len(lazy) == len(eager)
    for i in (0, len(eager) // 2, len(eager) - 1):
        a, b = eager.samples[i], lazy.samples[i]
        assert (a.id, a.kind, a.task, a.bucket) == (b.id, b.kind, b.task, b.bucket)
        assert torch.equal(a.target, b.target) and torch.equal(a.text, b.text) and torch.equal(a.anchors, b.anchors)
    common = [f"data.manifests=[{toy_data}]", "train.log_every=1", "train.save_every=1000", "data.splits=[]",
              "train.steps=4", "model.init=null"]
    for name in ("false", "true"):
        train(load_recipe(REPO / "recipes" / "toy_stage1.yaml",
                          [*common, f"data.lazy={name}", f"train.out_dir={tmp_path / name}"]))
    assert _losses(tmp_path / "false") == _losses(tmp_path / "true")


@pytest.mark.parametrize("lazy", [False, True])
def test_a_row_without_latents_is_one_error_naming_the_line(tmp_path: Path, lazy: bool) -> None:
    from sama_cli.core.errors import InputError

    (tmp_path / "x.mp4").touch()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "kind": "t2v", "target": "x.mp4", "caption": "c"}\n')
    with pytest.raises(InputError, match=r"m\.jsonl:1: row 'a' has no artifacts\.target_latents \(run `sama encode`"):
        ArtifactDataset([manifest], need_anchors=True, lazy=lazy)
