"""Training: the loss falls, resume is exact, a killed checkpoint write is harmless, torchrun + FSDP2."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_train import tiny_recipe_overrides, write_artifact_manifest

from sama_cli.core.errors import ConfigError
from sama_cli.data.dataset import BucketSampler
from sama_cli.model.weights import load_checkpoint
from sama_cli.train import checkpoint as ckpt
from sama_cli.train import loop as sama_train
from sama_cli.train.loop import MicroBatch, lr_at, train
from sama_cli.train.recipe import load_recipe
from sama_cli.train.state import SkipPolicy

REPO = Path(__file__).resolve().parent.parent


def run(manifest: Path, out: Path, steps: int, **extra) -> object:
    return train(load_recipe(None, tiny_recipe_overrides(manifest, out, steps, **extra)))


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_checkpoint(folder)
    return model.state_dict()


def test_loss_falls_and_exports(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data", with_images=True)
    result = run(manifest, tmp_path / "run", 40, **{"train.export_release": True})
    curve = losses(tmp_path / "run")
    assert len(curve) == 40
    assert sum(curve[-8:]) / 8 < 0.85 * sum(curve[:5]) / 5
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "recipe.yaml").is_file()
    model, _, meta = load_checkpoint(result.export["ema"])
    assert meta["codec"] == {"name": "test"} and meta["text_encoder"] == "test-text"
    assert meta["stage"] == 1 and model.config.preset == "tiny"
    # the EMA also in the authors' layout; it loads back (self-contained) to the same weights
    from sama_cli.model.weights import load_model

    released, _ = load_model(result.export["ema_release"], num_heads=model.config.num_heads)
    a, b = model.state_dict(), released.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # keep_last=2: only the two newest complete checkpoints remain
    assert [s for s, _ in ckpt.complete_checkpoints(tmp_path / "run" / "checkpoints")] == [39, 40]


def test_exact_resume_including_ema_and_sampler(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    straight = run(manifest, tmp_path / "straight", 6)
    run(manifest, tmp_path / "resumed", 3)  # stops after its checkpoint at step 3
    resumed = run(manifest, tmp_path / "resumed", 6)  # picks up at step 3
    for kind in ("model", "ema"):
        a, b = weights(Path(straight.export[kind])), weights(Path(resumed.export[kind]))
        for k in a:
            assert torch.equal(a[k], b[k]), f"{kind}: {k}"
    assert losses(tmp_path / "straight")[3:] == losses(tmp_path / "resumed")[3:]
    ema, raw = weights(Path(straight.export["ema"])), weights(Path(straight.export["model"]))
    assert not torch.equal(ema["backbone.proj_out.weight"], raw["backbone.proj_out.weight"])


def test_resolved_recipe_is_saved_beside_each_checkpoint(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    recipe = load_recipe(None, tiny_recipe_overrides(manifest, tmp_path / "run", 4, **{"train.save_every": 2}))
    train(recipe)
    saved = [p / "recipe.yaml" for _, p in ckpt.complete_checkpoints(tmp_path / "run" / "checkpoints")]
    assert len(saved) == 2
    for path in [*saved, tmp_path / "run" / "recipe.yaml"]:
        assert path.read_text() == recipe.to_yaml()
        assert load_recipe(path).to_dict() == recipe.to_dict()  # loads back as the same recipe


def test_resume_with_another_world_size_warns(tmp_path: Path, capsys) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    run(manifest, tmp_path / "run", 3)
    trainer = tmp_path / "run" / "checkpoints" / "step_00000003" / "trainer.json"
    trainer.write_text(json.dumps({**json.loads(trainer.read_text()), "world": 2}))
    capsys.readouterr()
    run(manifest, tmp_path / "run", 4)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "world size" in line]
    assert len(warnings) == 1 and "saved by 2 processes, resuming on 1" in warnings[0]


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch.distributed.checkpoint as dcp
from sama_cli.train import checkpoint as ckpt
from sama_cli.train import loop as sama_train
from sama_cli.train.recipe import load_recipe
from sama_cli.data.dataset import BucketSampler
from sama_cli.train.loop import MicroBatch, lr_at, train
from helpers_train import tiny_recipe_overrides
from pathlib import Path
real = dcp.save
def dying_save(state, checkpoint_id):
    if checkpoint_id.endswith("step_00000006.tmp"):
        real(state, checkpoint_id=checkpoint_id)  # shards are on disk, metadata too: die before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    return real(state, checkpoint_id=checkpoint_id)
ckpt.dcp.save = dying_save
train(load_recipe(None, tiny_recipe_overrides(Path({manifest!r}), Path({out!r}), 9)))
"""


def test_sigkill_during_checkpoint_write_leaves_previous_usable(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(REPO / "tests"), manifest=str(manifest), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = out / "checkpoints"
    assert (root / "step_00000006.tmp").is_dir()  # the interrupted write
    assert [s for s, _ in ckpt.complete_checkpoints(root)] == [3]
    assert [r["step"] for r in rows(out)] == [1, 2, 3, 4, 5, 6]  # logged past the last checkpoint
    resumed = run(manifest, out, 9)
    straight = run(manifest, tmp_path / "straight", 9)
    # steps 4-6 are logged once: the resumed run dropped the rows after its checkpoint
    assert [r["step"] for r in rows(out)] == list(range(1, 10))
    assert losses(out) == losses(tmp_path / "straight")
    a, b = weights(Path(straight.export["ema"])), weights(Path(resumed.export["ema"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (root / "step_00000006.tmp").exists()
    assert [s for s, _ in ckpt.complete_checkpoints(root)] == [6, 9]


def test_recipe_validation_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key train.stepz"):
        load_recipe(bad)
    bad.write_text("optim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"optim.lr must be a number"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match=r"data.manifests\[0\] does not exist"):
        run(tmp_path / "missing.jsonl", tmp_path / "o", 2)
    r = load_recipe(None, ["optim.betas=[0.8, 0.9]", "train.steps=7", "model.overrides={semantic_rope: identity}"])
    assert r.optim.betas == (0.8, 0.9) and r.train.steps == 7 and r.model.overrides == {"semantic_rope": "identity"}


def torchrun_train(tmp_path: Path, manifest: Path, out: Path, steps: int, **extra) -> tuple[dict, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: fsdp-test\n")
    args = tiny_recipe_overrides(manifest, out, steps, **{"train.parallel": "fsdp", **extra})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sama_cli", "train", str(recipe), *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_torchrun_fsdp2_two_processes_checkpoint_and_resume(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    out = tmp_path / "fsdp"
    torchrun_train(tmp_path, manifest, out, 3)
    summary, stderr = torchrun_train(tmp_path, manifest, out, 6)
    assert summary["steps"] == 6 and "resumed from" in stderr
    assert [s for s, _ in ckpt.complete_checkpoints(out / "checkpoints")] == [3, 6]
    straight, _ = torchrun_train(tmp_path, manifest, tmp_path / "straight", 6)
    a, b = weights(Path(straight["export"]["ema"])), weights(Path(summary["export"]["ema"]))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_ranks_get_their_shards_of_rank0s_weights(tmp_path: Path) -> None:
    """Under FSDP only rank 0 reads the weights; rank 1 builds on meta and receives its shards. With lr 0
    the exported model must be the init checkpoint bit for bit (garbage on rank 1 would show)."""
    from sama_cli.model.config import from_preset
    from sama_cli.model.transformer import build_model
    from sama_cli.model.weights import save_checkpoint

    manifest = write_artifact_manifest(tmp_path / "data")
    init = build_model(from_preset("tiny"), seed=11)
    with torch.no_grad():
        init.type_embedding.weight.normal_(0, 0.5)  # not the zero init a fresh model would have
    save_checkpoint(init, tmp_path / "init")
    summary, _ = torchrun_train(tmp_path, manifest, tmp_path / "run", 1, **{
        "model.init": str(tmp_path / "init"), "optim.lr": 0.0, "optim.weight_decay": 0.0})
    a, b = init.state_dict(), weights(Path(summary["export"]["model"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_recipes_load_and_carry_the_paper_numbers() -> None:
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        r = load_recipe(path)
        if r.model.preset.startswith("wan2.1"):
            assert r.train.semantic_weight == 0.1 and r.train.shift == 5.0
            assert r.model.overrides["anchor_frames"] == 1 and r.model.overrides["semantic_local_grid"] == 8
            if r.lora is None:  # full training: the paper's EMA and the release's batches
                assert r.train.ema_decay == 0.9998 and r.data.task_ratio == [1, 2, 3, 4]
                assert (r.data.image_batch, r.data.video_batch) == (16, 4)
            else:  # LoRA on one GPU (issue 18): DiffSynth's rank and rate, a batch one GPU holds
                assert r.lora.rank == 32 and r.optim.lr == 1e-4 and r.train.parallel == "none"


def test_cosine_lr_after_warmup_by_hand() -> None:
    r = load_recipe(None, ["optim.lr=0.001", "optim.warmup_steps=4", "optim.schedule=cosine",
                           "optim.min_lr_ratio=0.1", "train.steps=12"])
    # warm-up: linear from lr/4; then floor + (lr - floor) * (1 + cos(pi * progress)) / 2 over 8 steps
    want = {0: 0.25e-3, 3: 1e-3, 4: 1e-3, 6: 0.1e-3 + 0.9e-3 * (1 + 0.5**0.5) / 2, 8: 0.55e-3,
            10: 0.1e-3 + 0.9e-3 * (1 - 0.5**0.5) / 2, 12: 0.1e-3, 20: 0.1e-3}
    for step, lr in want.items():
        assert lr_at(step, r) == pytest.approx(lr, rel=1e-12), step
    constant = load_recipe(None, ["optim.lr=0.001", "optim.warmup_steps=4", "train.steps=12"])
    assert [lr_at(s, constant) for s in (1, 4, 11)] == pytest.approx([0.5e-3, 1e-3, 1e-3])


class GradRecordingAdamW(torch.optim.AdamW):
    """AdamW that keeps a copy of the gradients it is asked to apply."""

    seen: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        GradRecordingAdamW.seen.append([p.grad.clone() for g in self.param_groups for p in g["params"]])
        return super().step(closure)


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(tmp_path: Path, monkeypatch) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    monkeypatch.setattr(torch.optim, "AdamW", GradRecordingAdamW)
    GradRecordingAdamW.seen = []
    common = {"optim.grad_clip": 1e9, "train.save_every": 100, "data.drop_text": 0.5}
    run(manifest, tmp_path / "accumulated", 1, **{"optim.accumulate": 2, **common})  # 2 micro-batches of 2

    # the same 4 samples and noise as one batch: the two micro-batches the loop drew, concatenated
    real = sama_train.draw_micro_batch

    def both_micro_batches(dataset, sampler, recipe, tick, d, text_len, device):
        half = BucketSampler(dataset, video_batch=2, image_batch=4, seed=recipe.train.seed)
        parts = [real(dataset, half, recipe, 2 * tick + j, d, text_len, device) for j in (0, 1)]
        cat = {f.name: None if getattr(parts[0], f.name) is None else torch.cat([getattr(p, f.name) for p in parts])
               for f in dataclasses.fields(MicroBatch) if f.name != "task"}
        return MicroBatch(**cat)

    monkeypatch.setattr(sama_train, "draw_micro_batch", both_micro_batches)
    run(manifest, tmp_path / "one_batch", 1, **{"data.video_batch": 4, **common})
    accumulated, one_batch = GradRecordingAdamW.seen
    assert len(accumulated) == len(one_batch)
    for a, b in zip(accumulated, one_batch, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert losses(tmp_path / "accumulated") == pytest.approx(losses(tmp_path / "one_batch"), rel=1e-5)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_huge_grad_norm_skips_leave_the_weights_and_are_counted_apart(tmp_path: Path) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    overrides = tiny_recipe_overrides(manifest, tmp_path / "run", 3, **{"optim.skip_grad_norm": 0.0})
    result = train(load_recipe(None, overrides))
    assert result.skipped == 3
    counts = [(r["skipped"], r["skipped_gradnorm"], r["skipped_nonfinite"], r["skipped_spike"])
              for r in rows(tmp_path / "run")]
    assert counts == [(1, 1, 0, 0), (2, 2, 0, 0), (3, 3, 0, 0)]
    initial = sama_train.build_for_training(load_recipe(None, overrides)).state_dict()
    for kind in ("model", "ema"):
        after = weights(Path(result.export[kind]))
        assert all(torch.equal(initial[k], after[k]) for k in initial), kind


def test_loss_spike_skips_are_bounded_and_leave_the_weights(tmp_path: Path, monkeypatch) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    monkeypatch.setattr(sama_train, "SkipPolicy", functools.partial(SkipPolicy, warmup=2, max_spike_skips=2))
    spiky = {"optim.skip_loss_spike": 0.001, "train.save_every": 100}  # every loss after warm-up is a "spike"
    run(manifest, tmp_path / "long", 8, **spiky)
    # steps 0-1 taken; 2-3 skipped; 4 taken (the mean restarts from its loss); 5-6 skipped; 7 taken
    assert [r["skipped_spike"] for r in rows(tmp_path / "long")] == [0, 0, 1, 2, 2, 3, 4, 4]
    assert all(r["skipped"] == r["skipped_spike"] and r["skipped_gradnorm"] == 0 for r in rows(tmp_path / "long"))
    two, four = run(manifest, tmp_path / "two", 2, **spiky), run(manifest, tmp_path / "four", 4, **spiky)
    for kind in ("model", "ema"):
        a, b = weights(Path(two.export[kind])), weights(Path(four.export[kind]))
        assert all(torch.equal(a[k], b[k]) for k in a), kind


@pytest.mark.parametrize("bar", [False, True])
def test_cli_shows_loss_parts_step_time_and_throughput(tmp_path: Path, monkeypatch, bar: bool) -> None:
    from typer.testing import CliRunner

    from sama_cli.cli import app

    manifest = write_artifact_manifest(tmp_path / "data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: cli-test\n")
    monkeypatch.setenv("SAMA_PROGRESS", "1" if bar else "0")  # stderr is not a terminal here: lines, or a forced bar
    args = tiny_recipe_overrides(manifest, tmp_path / "run", 3, **{"train.save_every": 100})
    res = CliRunner().invoke(app, ["train", str(recipe), *args])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if "samples/s" in line]
    for part in ("loss ", "fm ", "sem ", "s/step", "samples/s"):
        assert all(part in line for line in lines), part
    if bar:
        assert lines and "step 1/3" not in res.stderr and "━ 3/3" in res.stderr
    else:
        assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
