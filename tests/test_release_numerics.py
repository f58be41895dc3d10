"""The training numerics and recipes of issue 15, against the release (Cynthiazxy123/SAMA @ 5c6bb5b):
DiffSynth's timestep loss weight, the timestep rounded to bf16 before the DiT (training and sampling),
the interleaved image/video batch order, the release's optimizer defaults in the recipes. Every expected
number is worked out by hand (or from the release's formula in plain Python) in the comments."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers_train import tiny_recipe_overrides, write_artifact_manifest

from sama_cli.core.errors import ConfigError
from sama_cli.data.dataset import ArtifactDataset, BucketSampler
from sama_cli.edit.sampler import SamplingConfig, sample
from sama_cli.model.flow import change_weights, release_training_weights, sama_loss
from sama_cli.model.transformer import SamaOutput, SamaTransformer
from sama_cli.train import loop as sama_train
from sama_cli.train.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent


def recipe_for(manifest: Path, out: Path, steps: int, **extra):
    return load_recipe(None, tiny_recipe_overrides(manifest, out, steps, **{"train.tensorboard": False, **extra}))


def fixed_randint(ids: list[int]):
    """torch.randint returning the given grid indices (the draw's only randint call)."""
    def randint(low, high, size, generator=None):
        assert (low, high) == (0, 1000)
        return torch.tensor(ids[: size[0]])
    return randint


# ---- 1. loss weighting ----------------------------------------------------------------------------------
# The release's grid (FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True), set_timesteps(1000,
# training=True)): index i -> s = 1 - i/1000 -> sigma = 5 s / (1 + 4 s) -> t = 1000 sigma, and the weight is
# y(t) = exp(-2 ((t - 500) / 1000)^2), minus min_grid y, times 1000 / sum_grid (y - min y).
#   i = 0:   s = 1,     t = 1000,                       y = exp(-2 * 0.5^2)       = exp(-0.5)      = 0.6065307
#   i = 500: s = 0.5,   t = 2.5 / 3 * 1000 = 833.333,   y = exp(-2 * 0.333333^2)  = exp(-0.222222) = 0.8007374
#   i = 800: s = 0.2,   t = 1 / 1.8 * 1000 = 555.556,   y = exp(-2 * 0.0555556^2) = exp(-0.0061728) = 0.9938462
#   i = 900: s = 0.1,   t = 0.5 / 1.4 * 1000 = 357.143, y = exp(-2 * 0.142857^2)  = exp(-0.0408163) = 0.9600054
#   i = 999: s = 0.001, t = 0.005 / 1.004 * 1000 = 4.98008, y = exp(-2 * 0.495020^2) = exp(-0.490090) = 0.6125716
# The grid's t runs from 4.98 to 1000, and |t - 500| is largest at t = 1000: min y = exp(-0.5), so w[0] = 0.
Y = {0: 0.6065307, 500: 0.8007374, 800: 0.9938462, 900: 0.9600054, 999: 0.6125716}
Y_MIN = math.exp(-0.5)


def test_release_loss_weights_at_shift_5_by_hand() -> None:
    w = release_training_weights(shift=5.0, grid=1000)
    assert w.shape == (1000,) and w.dtype == torch.float64
    assert float(w[0]) == 0.0  # the pure-noise end weighs nothing
    # ratios do not depend on the normaliser:
    # w800 / w500 = (0.9938462 - 0.6065307) / (0.8007374 - 0.6065307) = 0.3873155 / 0.1942067 = 1.99434
    assert float(w[800] / w[500]) == pytest.approx(1.99434, rel=1e-5)
    # w999 / w900 = (0.6125716 - 0.6065307) / (0.9600054 - 0.6065307) = 0.0060409 / 0.3534747 = 0.017090
    assert float(w[999] / w[900]) == pytest.approx(0.017090, rel=1e-4)
    # normalised over the grid: mean 1. The normaliser from the release's formula in plain Python,
    # sum_i (y_i - exp(-0.5)) over the 1000 points = 189.4956 (the bump's mean above its floor is 0.18950)
    total = sum(math.exp(-2 * ((5000 * s / (1 + 4 * s) - 500) / 1000) ** 2) - Y_MIN
                for s in (1 - i / 1000 for i in range(1000)))
    assert total == pytest.approx(189.4956, rel=1e-6)
    assert float(w.sum()) == pytest.approx(1000.0, rel=1e-12)
    for i, y in Y.items():  # w500 = 0.1942067 * 1000 / 189.4956 = 1.02486; w800 = 2.04393; w900 = 1.86535
        assert float(w[i]) == pytest.approx((y - Y_MIN) * 1000 / 189.4956, rel=2e-6, abs=1e-6), i
    # the peak of the bump, t = 500, lies between grid points: no weight exceeds (1 - e^-0.5) * 1000 / 189.4956
    assert float(w.max()) < (1 - Y_MIN) * 1000 / 189.4956 + 1e-9


def test_flow_loss_is_weighted_per_sample_and_the_semantic_loss_is_not() -> None:
    pred = torch.zeros(2, 1, 1, 1, 2)
    target = torch.stack([torch.full((1, 1, 1, 2), 1.0), torch.full((1, 1, 1, 2), 2.0)])  # MSEs 1 and 4
    sem_pred, sem_target = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)  # L1 = 1 for both samples
    parts = sama_loss(pred, target, sem_pred, sem_target, semantic_weight=0.1, weights=torch.tensor([0.5, 2.0]))
    # per sample: (0.5 * 1 + 2 * 4) / 2 = 4.25 (not mean(w) * mean(MSE) = 1.25 * 2.5 = 3.125)
    assert float(parts.flow) == pytest.approx(4.25)
    # L_sem unweighted: 1, not (0.5 * 1 + 2 * 1) / 2 = 1.25; total 4.25 + 0.1 * 1 = 4.35
    assert float(parts.semantic) == pytest.approx(1.0)
    assert float(parts.total) == pytest.approx(4.35)
    unweighted = sama_loss(pred, target, sem_pred, sem_target, semantic_weight=0.1)
    assert float(unweighted.flow) == pytest.approx(2.5) and float(unweighted.total) == pytest.approx(2.6)


def test_change_weights_weigh_the_positions_an_edit_changes_by_hand() -> None:
    """train.change_weight (ours, issue 19): 1 + strength where the target differs from the source by more
    than the threshold in some channel, normalised per sample. Sample 0: position 1 changed (0.5 > 0.1; 0.05
    at position 3 is under it): w = [1, 4, 1, 1] / (7/4). Sample 1: channel 1 changed at position 0 only."""
    target = torch.zeros(2, 2, 1, 1, 4)
    target[0, 0, 0, 0] = torch.tensor([0.0, 0.5, 0.0, 0.05])
    target[1, 1, 0, 0, 0] = -0.2  # a change in one channel is a change of the position
    w = change_weights(target, torch.zeros_like(target), strength=3.0, threshold=0.1)
    assert w.shape == (2, 1, 1, 1, 4)
    assert w[0].flatten().tolist() == pytest.approx([4 / 7, 16 / 7, 4 / 7, 4 / 7])
    assert w[1].flatten().tolist() == pytest.approx([16 / 7, 4 / 7, 4 / 7, 4 / 7])
    # everything changed (a whole-frame edit) or nothing: uniform
    assert change_weights(torch.ones(1, 1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2), 3.0, 0.1).flatten().tolist() == [1.0] * 4
    assert change_weights(torch.ones(1, 1, 1, 2, 2), torch.ones(1, 1, 1, 2, 2), 3.0, 0.1).flatten().tolist() == [1.0] * 4
    # in the loss: errors [1, 4, 0, 0] weighted [4, 16, 4, 4] / 7 -> (4 + 64) / 7 / 4 = 17 / 7 (unweighted 5 / 4)
    pred, tgt = torch.zeros(1, 1, 1, 1, 4), torch.tensor([1.0, 2.0, 0.0, 0.0]).view(1, 1, 1, 1, 4)
    assert float(sama_loss(pred, tgt, position_weights=w[:1]).flow) == pytest.approx(17 / 7)
    assert float(sama_loss(pred, tgt).flow) == pytest.approx(5 / 4)
    # with per-sample weights too: 0.5 * 17 / 7
    assert float(sama_loss(pred, tgt, weights=torch.tensor([0.5]), position_weights=w[:1]).flow) == pytest.approx(8.5 / 7)


@pytest.mark.parametrize("strength", [0.0, 3.0])
def test_the_loop_passes_change_weights_of_the_pairs_latents(tmp_path: Path, monkeypatch, strength: float) -> None:
    """Off (0, the default): no position weights. On: one per latent position of each pair; the test data's
    "edit" (negate and mirror) changes every position, so they are all 1 (the normalisation)."""
    manifest = write_artifact_manifest(tmp_path / "data")
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 1, **{"train.change_weight": strength,
                                                                         "data.video_batch": 2}))
    seen: list = []
    real = sama_train.sama_loss
    monkeypatch.setattr(sama_train, "sama_loss", lambda *a, **k: seen.append(k["position_weights"]) or real(*a, **k))
    sama_train.train_step(run, 0)
    if strength == 0:
        assert seen == [None]
    else:
        assert tuple(seen[0].shape) == (2, 1, 2, 4, 4) and seen[0].flatten().tolist() == pytest.approx([1.0] * 64)
    with pytest.raises(ConfigError, match="train.change_weight and train.change_threshold must be >= 0"):
        recipe_for(manifest, tmp_path / "run2", 1, **{"train.change_weight": -1.0})


@pytest.mark.parametrize("weighting", ["release", "none"])
def test_the_loop_weights_each_sample_by_its_timestep(tmp_path: Path, monkeypatch, weighting: str) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 1, **{"train.loss_weighting": weighting}))
    seen: list = []
    real = sama_train.sama_loss
    monkeypatch.setattr(sama_train, "sama_loss", lambda *a, **k: seen.append(k["weights"]) or real(*a, **k))
    monkeypatch.setattr(torch, "randint", fixed_randint([0, 500]))
    sama_train.train_step(run, 0)
    if weighting == "none":
        assert seen == [None]
    else:  # w0 = 0 and w500 = 1.02486 (above)
        assert seen[0].tolist() == pytest.approx([0.0, (Y[500] - Y_MIN) * 1000 / 189.4956], rel=2e-6)


# ---- 2. timestep precision ------------------------------------------------------------------------------
# bf16 keeps 8 significant bits: steps of 4 in [512, 1024), 2 in [256, 512), 1 in [128, 256), 0.5 in
# [64, 128), 1/32 in [4, 8); a value goes to the nearest step.
def spy_timesteps(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    real = SamaTransformer.forward

    def spy(self, latents, timestep, *args, **kwargs):
        seen.append(timestep.detach().clone())
        return real(self, latents, timestep, *args, **kwargs)

    monkeypatch.setattr(SamaTransformer, "forward", spy)
    return seen


@pytest.mark.parametrize("precision, dtype_opt, rounded", [("bf16", "model", True), ("fp32", "model", False),
                                                           ("bf16", "fp32", False)])
def test_training_timesteps_reach_the_model_rounded_to_bf16(tmp_path: Path, monkeypatch, precision: str,
                                                           dtype_opt: str, rounded: bool) -> None:
    """Grid indices 1, 500, 999 (s = 0.999, 0.5, 0.001):
      i = 1:   t = 4.995 / 4.996 * 1000 = 999.7998 -> bf16 1000 (996 | 1000) -> nearest grid point i = 0: sigma 1
      i = 500: t = 833.333 -> bf16 832 (832 | 836); nearest grid point to 832: i = 502 (s = 0.498:
               2.49 / 2.992 = 0.832219 -> t 832.219, off by 0.219) rather than 503 (831.660, off by 0.340)
               or 501 (832.777): sigma 0.832219
      i = 999: t = 4.98008 -> bf16 4.96875 (159/32 | 160/32); still nearest to i = 999 (i = 998 is t 9.92)
    The release noises with the sigma of the grid point nearest the rounded timestep (`add_noise`, argmin)."""
    manifest = write_artifact_manifest(tmp_path / "data")
    recipe = recipe_for(manifest, tmp_path / "run", 1, **{"train.precision": precision, "train.timestep_dtype": dtype_opt,
                                                          "data.video_batch": 3})
    run = sama_train.build(recipe)
    monkeypatch.setattr(torch, "randint", fixed_randint([1, 500, 999]))
    seen = spy_timesteps(monkeypatch)
    sama_train.train_step(run, 0)
    (t,) = seen
    if rounded:
        assert t.tolist() == [1000.0, 832.0, 4.96875]
        want_sigma, want_w = [1.0, 0.832219, 0.005 / 1.004], 0.0
    else:  # fp32: the grid as it is
        assert t.tolist() == pytest.approx([999.7998, 2500 / 3, 5 / 1.004], rel=1e-6)
        want_sigma, want_w = [4.995 / 4.996, 2.5 / 3, 0.005 / 1.004], None
    monkeypatch.setattr(torch, "randint", fixed_randint([1, 500, 999]))
    mb = sama_train.draw_micro_batch(run.dataset, run.sampler, run.recipe, 0, run.d, run.config.text_len, run.device)
    assert mb.sigma.tolist() == pytest.approx(want_sigma, rel=1e-5)
    if want_w is not None:
        assert float(mb.weight[0]) == want_w  # snapped to sigma 1: no weight


class Recording(torch.nn.Module):
    """A stand-in DiT in a chosen dtype that records the timesteps it is given (velocity 0)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
        self.config = SimpleNamespace(semantic_tokens=2, semantic_dim=3)
        self.seen: list[torch.Tensor] = []

    device = property(lambda self: self.anchor.device)
    dtype = property(lambda self: self.anchor.dtype)

    def forward(self, x, t, ctx, source_latents=None, semantic_latents=None):
        self.seen.append(t.detach().clone())
        return SamaOutput(video=torch.zeros_like(x), semantic=torch.zeros_like(semantic_latents))


# The 50-step shift-5 grid: s = 1 - i/50, t = 1000 * 5 s / (1 + 4 s):
#   i = 0: 1000 (bf16 exact); i = 1: s 0.98 -> 4.9 / 4.92 -> 995.935 -> 996; i = 20: s 0.6 -> 3 / 3.4 -> 882.353
#   -> 884 (off by 1.65); i = 25: s 0.5 -> 833.333 -> 832; i = 45: s 0.1 -> 357.143 -> 358 (356 | 358);
#   i = 48: s 0.04 -> 0.2 / 1.16 -> 172.414 -> 172; i = 49: s 0.02 -> 0.1 / 1.08 -> 92.5926 -> 92.5
SAMPLING = {0: (1000.0, 1000.0), 1: (995.935, 996.0), 20: (882.353, 884.0), 25: (833.333, 832.0),
            45: (357.143, 358.0), 48: (172.414, 172.0), 49: (92.5926, 92.5)}


@pytest.mark.parametrize("dtype, option, rounded", [(torch.bfloat16, "model", True), (torch.float32, "model", False),
                                                    (torch.bfloat16, "fp32", False)])
def test_sampling_timesteps_reach_the_model_rounded_to_bf16(dtype: torch.dtype, option: str, rounded: bool) -> None:
    model = Recording(dtype)
    cfg = SamplingConfig(steps=50, shift=5.0, guidance=1.0, timestep_dtype=option)
    sample(model, (1, 2, 1, 2, 2), torch.zeros(1, 4, 3), None, None, cfg)
    assert len(model.seen) == 50
    for i, (exact, bf16) in SAMPLING.items():
        t = model.seen[i]
        assert t.dtype == torch.float32 and t.shape == (1,)
        if rounded:
            assert float(t) == bf16, i
        else:
            assert float(t) == pytest.approx(exact, abs=1e-3), i
    with pytest.raises(ConfigError, match="timestep_dtype"):
        SamplingConfig(timestep_dtype="fp16").validate()


# ---- 3. batch order -------------------------------------------------------------------------------------
def kinds(dataset: ArtifactDataset, sampler: BucketSampler, steps: int) -> list[str]:
    return ["image" if dataset.samples[sampler.indices(s)[0]].target.shape[1] == 1 else "video" for s in range(steps)]


def test_interleave_alternates_image_and_video_batches(tmp_path: Path) -> None:
    # 8 rows: rows 0 and 4 are one-frame images, the other 6 two-frame videos
    dataset = ArtifactDataset([write_artifact_manifest(tmp_path / "d", with_images=True)], need_anchors=True)
    inter = BucketSampler(dataset, video_batch=2, image_batch=4, seed=0, order="interleave")
    assert kinds(dataset, inter, 8) == ["image", "video", "image", "video", "image", "video", "image", "video"]
    assert [len(inter.indices(s)) for s in range(4)] == [4, 2, 4, 2]  # the kind's batch size
    # stateless: a fresh sampler (a resumed run) continues the same; both ranks of two take the same kind
    again = BucketSampler(dataset, video_batch=2, image_batch=4, seed=0, order="interleave")
    assert [again.indices(s) for s in (5, 6)] == [inter.indices(s) for s in (5, 6)]
    ranks = [BucketSampler(dataset, video_batch=2, image_batch=4, seed=0, rank=r, world=2, order="interleave")
             for r in (0, 1)]
    assert kinds(dataset, ranks[0], 6) == kinds(dataset, ranks[1], 6) == ["image", "video"] * 3
    # by_rows draws the bucket by mass: images hold 2 of the 8 rows, so a quarter of the steps
    by_rows = BucketSampler(dataset, video_batch=2, image_batch=4, seed=0, order="by_rows")
    share = kinds(dataset, by_rows, 400).count("image") / 400
    assert 0.18 < share < 0.32
    # data of one kind: every step is that kind
    videos = ArtifactDataset([write_artifact_manifest(tmp_path / "v")], need_anchors=True)
    only = BucketSampler(videos, video_batch=2, image_batch=4, seed=0, order="interleave")
    assert kinds(videos, only, 4) == ["video"] * 4


def test_the_loop_trains_on_interleaved_batches(tmp_path: Path, monkeypatch) -> None:
    manifest = write_artifact_manifest(tmp_path / "data", with_images=True)
    frames: list[int] = []
    real = SamaTransformer.forward

    def spy(self, latents, *args, **kwargs):
        frames.append(latents.shape[2])
        return real(self, latents, *args, **kwargs)

    monkeypatch.setattr(SamaTransformer, "forward", spy)
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 4, **{"data.batch_order": "interleave"}))
    for step in range(4):
        sama_train.train_step(run, step)
    assert frames == [1, 2, 1, 2]  # image, video, image, video
    with pytest.raises(ConfigError, match="image_ratio"):
        load_recipe(None, ["data.batch_order=interleave", "data.image_ratio=0.3"])


# ---- 4. optimizer defaults and the recipes --------------------------------------------------------------
def test_release_warmup_is_ten_percent_and_null_grad_clip_clips_nothing(tmp_path: Path, monkeypatch) -> None:
    r = load_recipe(None, ["optim.lr=0.001", "optim.warmup_steps=-1", "train.steps=20000"])
    # 10% of 20000 = 2000 warm-up steps, linear: step k -> lr (k + 1) / 2000
    assert [sama_train.lr_at(s, r) for s in (0, 999, 1999, 2000, 19999)] == pytest.approx(
        [0.001 / 2000, 0.0005, 0.001, 0.001, 0.001])
    manifest = write_artifact_manifest(tmp_path / "data")
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 1, **{"optim.grad_clip": "null"}))
    limits: list[float] = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m, *a, **k: limits.append(m) or real(p, m, *a, **k))
    sama_train.train_step(run, 0)
    assert limits == [math.inf]


BIG = ["stage0_pretrain_14b", "stage0_pretrain_1.3b", "stage1_sft_14b", "stage1_sft_1.3b"]
NEW_KEYS = ("loss_weighting:", "timestep_dtype:", "batch_order:")


@pytest.mark.parametrize("name", [*BIG, "toy_stage0", "toy_stage1", "toy_model_stage0", "toy_model_stage1"])
def test_recipes_carry_the_new_keys_and_say_where_each_setting_comes_from(name: str) -> None:
    path = REPO / "recipes" / f"{name}.yaml"
    lines = path.read_text().splitlines()
    for key in NEW_KEYS:
        (line,) = [x for x in lines if x.strip().startswith(key)]
        assert "# release" in line or "# ours" in line, line
    # every setting with a value says release, paper or ours (name and out_dir are just names)
    doc = yaml.safe_load(path.read_text())
    for line in lines:
        key, _, rest = line.strip().partition(":")
        if line.startswith((" ", "\t")) or key in ("stage",):
            if rest.split("#")[0].strip() and key not in ("out_dir",):
                assert any(f"# {w}" in rest for w in ("release", "paper", "ours")), f"{name}: {line}"
    r = load_recipe(path)
    if name in BIG:
        assert doc["data"]["batch_order"] == "interleave" and r.data.batch_order == "interleave"
        assert (r.train.loss_weighting, r.train.timestep_dtype) == ("release", "model")
        assert (r.optim.weight_decay, r.optim.schedule, r.optim.grad_clip, r.optim.warmup_steps) == (0.01, "constant",
                                                                                                     None, -1)
        assert r.train.ema_decay == 0.9998 and r.train.precision == "bf16"
    else:
        # stage 1 spends half its steps on image edits (object edits are learned there, 5x cheaper than clips)
        assert r.data.batch_order == "by_rows" and r.data.image_ratio == (0.5 if r.stage == 1 else 0.3)
        assert r.train.loss_weighting == "release"
