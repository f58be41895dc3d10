"""Rectified flow (docs/sama.md §4): noising, velocity targets, shifted schedules, the SAMA loss, Euler
steps.

Convention: sigma 0 is data, sigma 1 is noise; `x_sigma = (1 - sigma) x0 + sigma eps`, the model
predicts the velocity `eps - x0`, and the DiT's timestep is `1000 sigma`. Nothing here knows about
attention; the model knows nothing about sigmas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor:
    """`shift sigma / (1 + (shift - 1) sigma)`: spends more steps at high noise for large frames."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


def release_grid(num: int) -> torch.Tensor:
    """`linspace(1, 0, num + 1)[:-1]`: the release builds its FlowMatchScheduler with `sigma_min=0,
    extra_one_step=True` (wan_video_semantic.py), so the grid stops one step short of 0. (num,) float64."""
    return torch.linspace(1.0, 0.0, num + 1, dtype=torch.float64)[:-1]


def inference_sigmas(num_steps: int = 50, shift: float = 5.0) -> torch.Tensor:
    """The release's sampling schedule: the shifted grid of `num_steps` sigmas from 1 down to 1/num_steps
    (before the shift), then 0 appended (the last step lands on data). Returns (num_steps + 1,) float64."""
    return torch.cat([shift_sigma(release_grid(num_steps), shift), torch.zeros(1, dtype=torch.float64)])


def timestep_of(sigma: torch.Tensor) -> torch.Tensor:
    return sigma * NUM_TRAIN_TIMESTEPS


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma for a per-sample sigma (B,) broadcast over the remaining dims of x0."""
    s = sigma.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - x0


def sample_training_sigmas(batch: int, generator: torch.Generator | None = None, shift: float = 5.0,
                           grid: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Per-sample training sigmas: a uniform draw from the release's shifted grid of `grid` sigmas
    (`set_timesteps(1000, training=True)` on the same scheduler: 1, 0.999, ..., 0.001 before the shift;
    shift 5 in the release). (B,) float32."""
    ids = torch.randint(0, grid, (batch,), generator=generator)
    return shift_sigma(release_grid(grid), shift)[ids].float()


def euler_step(x: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One flow-matching Euler step from sigma to sigma_next (the release's FlowMatchScheduler.step)."""
    return x + velocity * (sigma_next - sigma)


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def dual_cfg_combine(v_it: torch.Tensor, v_0t: torch.Tensor, v_i0: torch.Tensor, s_source: float,
                     s_text: float) -> torch.Tensor:
    """Dual guidance over source (I) and text (T), docs/sama.md §4:
    v = v(I,T) + s_I (v(I,T) - v(0,T)) + s_T (v(I,T) - v(I,0))."""
    return v_it + s_source * (v_it - v_0t) + s_text * (v_it - v_i0)


@dataclass
class LossParts:
    total: torch.Tensor
    flow: torch.Tensor  # L_FM: MSE on the target tokens
    semantic: torch.Tensor  # L_sem: L1 on the semantic head (0 when there are no semantic tokens)

    def as_floats(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "loss_fm": float(self.flow.detach()),
                "loss_sem": float(self.semantic.detach())}


def sama_loss(video_pred: torch.Tensor, video_target: torch.Tensor, semantic_pred: torch.Tensor | None = None,
              semantic_target: torch.Tensor | None = None, semantic_weight: float = 0.1) -> LossParts:
    """L = MSE(v, eps - x0) + lambda * L1(sem_pred, eps_s - s)   (docs/sama.md §3, lambda = 0.1).

    Targets carry no gradient (they are data and noise), so nothing flows back through the semantic
    target into the projector: no collapse path."""
    flow = F.mse_loss(video_pred.float(), video_target.detach().float())
    if semantic_pred is None or semantic_target is None:
        semantic = flow.new_zeros(())
    else:
        semantic = F.l1_loss(semantic_pred.float(), semantic_target.detach().float())
    return LossParts(total=flow + semantic_weight * semantic, flow=flow, semantic=semantic)
