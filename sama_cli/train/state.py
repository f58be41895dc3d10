"""The trainer's state beside the weights and the optimizer: the EMA of the weights and the skip policy.

Each is a small object that owns its state and hands it to the checkpoint (`state_dict`) and takes it
back on resume (`load_state_dict`): the EMA's tensors go into the DCP checkpoint under "ema", the skip
policy's numbers into trainer.json (keys `loss_mean`, `spike_streak` and `SKIP_COUNTERS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

LOSS_MEAN_DECAY = 0.99  # running mean used by loss-spike skipping
SPIKE_WARMUP = 20  # steps before spike skipping starts
# The running mean follows taken steps only, so a loss that settles above skip_loss_spike x the mean would
# be skipped forever. A loss still that high after this many spike skips since the last taken step is a
# new level, not a spike: the step is taken and the mean restarts from its loss.
MAX_SPIKE_SKIPS = 10
SKIP_COUNTERS = ("skipped", "skipped_nonfinite", "skipped_gradnorm", "skipped_spike")
SKIP_REASONS = {"nonfinite": "non-finite loss or grad norm", "gradnorm": "grad norm too large", "spike": "loss spike"}


class EMA:
    """Exponential moving average of the trainable parameters, updated after every taken step:
    `ema <- decay * ema + (1 - decay) * param` (one lerp towards the parameter by 1 - decay). Before
    step `start` the decay is 0, so the EMA follows the weights. The tensors live where the parameters
    do (sharded like them under FSDP2)."""

    def __init__(self, named_parameters: Iterable[tuple[str, torch.nn.Parameter]], decay: float, start: int = 0):
        named = [(n, p) for n, p in named_parameters if p.requires_grad]
        self.decay, self.start = decay, start
        self.params = [p for _, p in named]
        self.tensors = {n: p.detach().clone() for n, p in named}

    def decay_at(self, step: int) -> float:
        return 0.0 if step < self.start else self.decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        torch._foreach_lerp_(list(self.tensors.values()), self.params, 1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA tensors themselves, not copies: the checkpoint loads into them in place."""
        return self.tensors

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for k, v in state.items():
            if self.tensors[k] is not v:
                self.tensors[k].copy_(v)


@dataclass
class Verdict:
    """What the skip policy made of one step."""

    skip: str | None  # "nonfinite", "gradnorm", "spike", or None: the step is taken
    message: str | None = None  # a warning for the log, if the step deserves one


class SkipPolicy:
    """Skip a step whose loss or grad norm is not finite, whose grad norm exceeds `max_grad_norm`, or
    (after `warmup` steps) whose loss exceeds `spike_factor` x the running mean of the taken steps'
    losses; a loss still that high after `max_spike_skips` spike skips in a row is taken as a new level.
    Counts the skips by reason."""

    def __init__(self, max_grad_norm: float, spike_factor: float, *, warmup: int = SPIKE_WARMUP,
                 max_spike_skips: int = MAX_SPIKE_SKIPS, mean_decay: float = LOSS_MEAN_DECAY):
        self.max_grad_norm, self.spike_factor = max_grad_norm, spike_factor
        self.warmup, self.max_spike_skips, self.mean_decay = warmup, max_spike_skips, mean_decay
        self.loss_mean: float | None = None  # running mean of the taken steps' losses
        self.spike_streak = 0  # spike skips since the last taken step
        self.counts = dict.fromkeys(SKIP_COUNTERS, 0)

    def judge(self, step: int, loss: float, grad_norm: float) -> Verdict:
        """Decide on step `step` and update the running mean, the streak and the counters."""
        mean = self.loss_mean
        spike = mean is not None and step >= self.warmup and loss > self.spike_factor * mean
        skip = None
        if not math.isfinite(grad_norm) or not math.isfinite(loss):
            skip = "nonfinite"
        elif grad_norm > self.max_grad_norm:
            skip = "gradnorm"
        elif spike and self.spike_streak < self.max_spike_skips:
            skip = "spike"
        if skip is not None:
            self.counts["skipped"] += 1
            self.counts[f"skipped_{skip}"] += 1
            if skip == "spike":
                self.spike_streak += 1
            return Verdict(skip, f"skipped ({SKIP_REASONS[skip]}: loss {loss:.4g}, running mean {mean or 0:.4g}, "
                                 f"grad norm {grad_norm:.4g})")
        self.spike_streak = 0
        if spike:  # still high after max_spike_skips skips: the new level
            self.loss_mean = loss
            return Verdict(None, f"loss {loss:.4g} stayed above {self.spike_factor:g}x its running mean for "
                                 f"{self.max_spike_skips} skips; step taken, the mean restarts from it")
        self.loss_mean = loss if mean is None else self.mean_decay * mean + (1 - self.mean_decay) * loss
        return Verdict(None)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers for trainer.json (the layout older checkpoints have too)."""
        return {"loss_mean": self.loss_mean, "spike_streak": self.spike_streak, **self.counts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """From trainer.json; other keys (step, world) are ignored, and a key a checkpoint lacks keeps its
        starting value, as resume always did."""
        self.loss_mean = state.get("loss_mean", self.loss_mean)
        self.spike_streak = state.get("spike_streak", self.spike_streak)
        for key in SKIP_COUNTERS:
            self.counts[key] = state.get(key, self.counts[key])
