"""The trainer's state and the training draw: EMA and skip-policy arithmetic by hand, an exact resume of
the whole trainer state across forced skips and spikes, the training sigmas at shift 5, and the data
settings `data.weights` and `data.drop_text` doing what they say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers_train import (
    assert_identical,
    checkpoint_contents,
    scale_velocity_at,
    tiny_recipe_overrides,
    write_artifact_manifest,
)

from sama_cli.model.flow import sample_training_sigmas
from sama_cli.model.transformer import SamaTransformer
from sama_cli.model.weights import load_checkpoint
from sama_cli.train import loop as sama_train
from sama_cli.train.recipe import load_recipe
from sama_cli.train.state import EMA, MAX_SPIKE_SKIPS, SPIKE_WARMUP, SkipPolicy


def recipe_for(manifest: Path, out: Path, steps: int, **extra):
    return load_recipe(None, tiny_recipe_overrides(manifest, out, steps, **{"train.tensorboard": False, **extra}))


# ---- EMA ------------------------------------------------------------------------------------------------
def scalar_params(**values: float | list[float]) -> dict[str, torch.nn.Parameter]:
    return {k: torch.nn.Parameter(torch.tensor(v)) for k, v in values.items()}


def test_ema_three_updates_by_hand() -> None:
    p = scalar_params(a=1.0, b=[-2.0, 10.0])
    frozen = torch.nn.Parameter(torch.tensor(7.0), requires_grad=False)
    ema = EMA([*p.items(), ("frozen", frozen)], decay=0.9)
    assert list(ema.state_dict()) == ["a", "b"]  # trainable parameters only
    # ema <- 0.9 ema + 0.1 param, worked out by hand:
    #   a: 1 -> (p=2) 1.1 -> (p=4) 1.39 -> (p=-1) 1.151;  b: [-2, 10] -> (p=[0, 20]) [-1.8, 11] -> [-1.62, 11.9] -> [-1.458, 12.71]
    want = {"a": [1.1, 1.39, 1.151], "b": [[-1.8, 11.0], [-1.62, 11.9], [-1.458, 12.71]]}
    for step, a in enumerate([2.0, 4.0, -1.0]):
        with torch.no_grad():
            p["a"].fill_(a)
            p["b"].copy_(torch.tensor([0.0, 20.0]))
        ema.update(step)
        for k in ("a", "b"):
            assert ema.state_dict()[k].tolist() == pytest.approx(want[k][step], rel=1e-6), (k, step)
    assert p["a"].item() == -1.0  # the EMA never writes into the weights


def test_ema_copies_the_weights_before_ema_start() -> None:
    p = scalar_params(a=1.0)
    ema = EMA(p.items(), decay=0.9, start=2)
    for step, a in enumerate([2.0, 4.0, 5.0]):
        with torch.no_grad():
            p["a"].fill_(a)
        ema.update(step)
        # steps 0 and 1 are before ema_start: decay 0, the EMA is the weight; step 2: 4 + 0.1 (5 - 4) = 4.1
        assert ema.state_dict()["a"].item() == pytest.approx([2.0, 4.0, 4.1][step], rel=1e-6)


def test_ema_state_dict_round_trip_loads_in_place() -> None:
    ema = EMA(scalar_params(a=1.0).items(), decay=0.9)
    live = ema.state_dict()["a"]
    ema.load_state_dict({"a": torch.tensor(3.5)})
    assert ema.state_dict()["a"] is live and live.item() == 3.5


# ---- skip policy ----------------------------------------------------------------------------------------
def test_skip_policy_by_hand() -> None:
    policy = SkipPolicy(max_grad_norm=10.0, spike_factor=2.0, warmup=2, max_spike_skips=2)
    steps = [  # (loss, grad norm) -> verdict, running mean after the step, streak after the step
        ((1.0, 1.0), None, 1.0, 0),  # the first taken step starts the mean
        ((4.0, 1.0), None, 0.99 * 1.0 + 0.01 * 4.0, 0),  # before the warm-up a high loss is no spike: 1.03
        ((3.0, 1.0), "spike", 1.03, 1),  # 3 > 2 x 1.03
        ((math.nan, 1.0), "nonfinite", 1.03, 1),  # other skips leave the streak alone
        ((1.0, 11.0), "gradnorm", 1.03, 1),
        ((3.0, 1.0), "spike", 1.03, 2),
        ((3.0, 1.0), None, 3.0, 0),  # still a spike after 2 skips: a new level, the mean restarts from it
        ((3.5, 1.0), None, 0.99 * 3.0 + 0.01 * 3.5, 0),  # 3.005
    ]
    for step, ((loss, norm), skip, mean, streak) in enumerate(steps):
        verdict = policy.judge(step, loss, norm)
        assert (verdict.skip, policy.loss_mean, policy.spike_streak) == (skip, pytest.approx(mean, rel=1e-12), streak)
        assert (verdict.message is not None) == (skip is not None or step == 6), step
    assert policy.loss_mean == pytest.approx(3.005, rel=1e-12)
    saved = policy.state_dict()
    # the layout trainer.json has always had
    assert saved == {"loss_mean": policy.loss_mean, "spike_streak": 0, "skipped": 4, "skipped_nonfinite": 1,
                     "skipped_gradnorm": 1, "skipped_spike": 2}
    assert list(saved) == ["loss_mean", "spike_streak", "skipped", "skipped_nonfinite", "skipped_gradnorm",
                           "skipped_spike"]
    again = SkipPolicy(max_grad_norm=10.0, spike_factor=2.0)
    again.load_state_dict(json.loads(json.dumps({**saved, "step": 8, "world": 1})))
    assert again.state_dict() == saved


# ---- resume: the whole trainer state, across forced skips and spikes --------------------------------------
def test_resume_restores_the_whole_trainer_state_bit_for_bit(tmp_path: Path, monkeypatch) -> None:
    """32 steps straight vs 24 + 8 resumed, with a non-finite loss at step 3, a huge grad norm at step 6
    and loss spikes at steps 21-31 (after the warm-up): the checkpoint at 24 falls inside the spike
    streak, and the streak reaches MAX_SPIKE_SKIPS (10) only if it survives the resume, so step 31 is
    taken as a new level. Weights, EMA, optimizer, RNG, running mean, counters and streak must match."""
    assert (SPIKE_WARMUP, MAX_SPIKE_SKIPS) == (20, 10)  # the real policy: steps 21.. are judged as spikes
    manifest = write_artifact_manifest(tmp_path / "data")
    factors = {3: math.nan, 6: 1000.0, **dict.fromkeys(range(21, 32), 10.0)}
    monkeypatch.setattr(sama_train, "draw_micro_batch", scale_velocity_at(sama_train.draw_micro_batch, factors))
    policies: list[SkipPolicy] = []

    class Recorded(SkipPolicy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            policies.append(self)

    monkeypatch.setattr(sama_train, "SkipPolicy", Recorded)
    settings = {"train.save_every": 12, "train.keep_last": 5}
    straight = sama_train.train(recipe_for(manifest, tmp_path / "straight", 32, **settings))
    sama_train.train(recipe_for(manifest, tmp_path / "resumed", 24, **settings))
    resumed = sama_train.train(recipe_for(manifest, tmp_path / "resumed", 32, **settings))

    # the policy in memory at the end: running mean, counters and streak, bit for bit
    assert len(policies) == 3
    assert_identical(vars(policies[0]), vars(policies[2]), "skip policy")
    # the anomalies happened as forced: 1 non-finite, 1 grad norm, 10 spikes (21-30), step 31 a new level
    assert policies[0].counts == {"skipped": 12, "skipped_nonfinite": 1, "skipped_gradnorm": 1, "skipped_spike": 10}
    assert policies[0].spike_streak == 0 and straight.skipped == resumed.skipped == 12
    spiked = [json.loads(line)["loss"] for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert policies[0].loss_mean == spiked[31]  # restarted from the new level's loss

    a = checkpoint_contents(tmp_path / "straight" / "checkpoints" / "step_00000032")
    b = checkpoint_contents(tmp_path / "resumed" / "checkpoints" / "step_00000032")
    assert set(a) == {"model", "optim", "ema", "trainer", "rng"}
    assert a["optim"]["state"] and a["ema"]
    assert_identical(a, b, "checkpoint")

    def rows(out: Path) -> list[dict]:
        volatile = ("time", "step_time", "samples_per_s")
        return [{k: v for k, v in json.loads(line).items() if k not in volatile}
                for line in (out / "metrics.jsonl").read_text().splitlines()]

    assert json.dumps(rows(tmp_path / "straight")) == json.dumps(rows(tmp_path / "resumed"))
    for kind in ("model", "ema"):  # and the exports made from them
        assert_identical(load_checkpoint(straight.export[kind])[0].state_dict(),
                         load_checkpoint(resumed.export[kind])[0].state_dict(), kind)


def test_a_trainer_json_in_the_old_layout_resumes(tmp_path: Path) -> None:
    """trainer.json as checkpoints have always written it: the skip policy picks every number up."""
    manifest = write_artifact_manifest(tmp_path / "data")
    recipe = recipe_for(manifest, tmp_path / "run", 3, **{"train.save_every": 3})
    sama_train.train(recipe)
    trainer = tmp_path / "run" / "checkpoints" / "step_00000003" / "trainer.json"
    old = {"loss_mean": 2.25, "spike_streak": 4, "skipped": 7, "skipped_nonfinite": 1, "skipped_gradnorm": 2,
           "skipped_spike": 4, "step": 3, "world": 1}
    trainer.write_text(json.dumps(old, indent=2))
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 5))
    assert sama_train.resume(run) == 3
    assert run.policy.state_dict() == {k: v for k, v in old.items() if k not in ("step", "world")}


# ---- the training draw ---------------------------------------------------------------------------------
# shift 5 on the release's grid s_i = 1 - i/1000 (i = 0..999): sigma = 5 s / (1 + 4 s), by hand
HAND_SIGMAS = {0: 1.0,  # s = 1: 5 / 5
               1: 4.995 / 4.996,  # s = 0.999: 0.99979983987...
               250: 0.9375,  # s = 0.75: 3.75 / 4
               500: 2.5 / 3,  # s = 0.5: 0.8333...
               750: 0.625,  # s = 0.25: 1.25 / 2
               900: 0.5 / 1.4,  # s = 0.1: 0.357142857...
               999: 0.005 / 1.004}  # s = 0.001: 0.00498007968...


def fixed_randint(ids: list[int], calls: list[tuple]):
    def randint(low, high, size, generator=None):
        calls.append((low, high, tuple(size)))
        return torch.tensor(ids[: size[0]])
    return randint


def test_training_sigmas_at_shift_5_by_hand(monkeypatch) -> None:
    ids, calls = list(HAND_SIGMAS), []
    monkeypatch.setattr(torch, "randint", fixed_randint(ids, calls))
    sigma = sample_training_sigmas(len(ids), torch.Generator().manual_seed(0), shift=5.0)
    assert calls == [(0, 1000, (len(ids),))]  # a uniform index into the 1000-point grid
    assert sigma.dtype == torch.float32
    assert sigma.tolist() == pytest.approx(list(HAND_SIGMAS.values()), rel=1e-6)


def test_training_sigmas_are_a_uniform_draw_of_the_shifted_grid() -> None:
    """The mean of 5 s / (1 + 4 s) over s uniform on (0, 1] is 5/4 (1 - ln 5 / 4) = 0.74705; on the grid
    1/1000, ..., 1 (right end points of an increasing function) half a step more: 0.74755."""
    sigma = sample_training_sigmas(200_000, torch.Generator().manual_seed(1), shift=5.0)
    assert float(sigma.double().mean()) == pytest.approx(1.25 - 5 / 16 * math.log(5) + 0.0005, abs=0.003)
    assert float(sigma.max()) == 1.0 and float(sigma.min()) == pytest.approx(0.005 / 1.004, rel=1e-6)


def test_the_loop_draws_its_sigmas_at_the_recipes_shift(tmp_path: Path, monkeypatch) -> None:
    """At train.shift 3 (not the default 5, so a loop that dropped the setting would show):
    sigma = 3 s / (1 + 2 s), by hand: s = 0.5 -> 1.5 / 2 = 0.75; s = 0.001 -> 0.003 / 1.002."""
    manifest = write_artifact_manifest(tmp_path / "data")
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 1, **{"train.shift": 3.0}))
    calls: list[tuple] = []
    monkeypatch.setattr(torch, "randint", fixed_randint([500, 999], calls))
    mb = sama_train.draw_micro_batch(run.dataset, run.sampler, run.recipe, 0, run.d, run.config.text_len, run.device)
    assert calls == [(0, 1000, (2,))]
    assert mb.sigma.tolist() == pytest.approx([0.75, 0.003 / 1.002], rel=1e-6)


def drawn_ids(run, ticks: int) -> list[str]:
    return [run.dataset.samples[i].id for t in range(ticks) for i in run.sampler.indices(t)]


def test_data_weights_decide_how_often_each_manifest_is_drawn(tmp_path: Path) -> None:
    a = write_artifact_manifest(tmp_path / "a", n=4, seed=1, prefix="a")
    b = write_artifact_manifest(tmp_path / "b", n=4, seed=2, prefix="b")
    both = {"data.manifests": f"[{a},{b}]"}
    never_a = sama_train.build(recipe_for(a, tmp_path / "run", 1, **both, **{"data.weights": "[0.0, 1.0]"}))
    ids = drawn_ids(never_a, 500)
    assert len(ids) == 1000 and not any(i.startswith("a") for i in ids)
    # weights 1 : 3 over 4 + 4 rows of one shape, 2 drawn per step without replacement. By hand:
    # first pick b with 12/16; the second with 9/13 after a b, 12/15 after an a:
    # share of b = (0.75 + 0.75 * 9/13 + 0.25 * 0.8) / 2 = 0.7346
    one_to_three = sama_train.build(recipe_for(a, tmp_path / "run", 1, **both, **{"data.weights": "[1.0, 3.0]"}))
    ids = drawn_ids(one_to_three, 1000)
    share_b = sum(i.startswith("b") for i in ids) / len(ids)
    assert share_b == pytest.approx((0.75 + 0.75 * 9 / 13 + 0.25 * 0.8) / 2, abs=0.03)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_drop_text_empties_the_text_reaching_the_model(tmp_path: Path, monkeypatch, p: float) -> None:
    manifest = write_artifact_manifest(tmp_path / "data")
    seen: list[torch.Tensor] = []
    real = SamaTransformer.forward

    def spy(self, latents, timestep, context, *args, **kwargs):
        seen.append(context.detach().clone())  # (B, text_len, D)
        return real(self, latents, timestep, context, *args, **kwargs)

    monkeypatch.setattr(SamaTransformer, "forward", spy)
    run = sama_train.build(recipe_for(manifest, tmp_path / "run", 4, **{"data.drop_text": p}))
    for step in range(4):
        sama_train.train_step(run, step)
    per_sample = torch.cat([c.flatten(1).abs().sum(1) for c in seen])  # (4 steps x B,)
    assert len(per_sample) == 8
    if p == 1.0:
        assert (per_sample == 0).all()
    else:
        assert (per_sample > 0).all()
