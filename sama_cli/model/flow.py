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
    shift 5 in the release). (B,) float32: the sigmas of `draw_training_timesteps` in float32."""
    return draw_training_timesteps(batch, generator, shift, grid).sigma


def release_training_weights(shift: float = 5.0, grid: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """DiffSynth's per-timestep loss weight on the training grid (`FlowMatchScheduler.set_timesteps(grid,
    training=True)` in diffsynth/schedulers/flow_match.py, applied by `training_weight` in the Wan
    pipeline's `training_loss`): a Gaussian bump `exp(-2 ((t - grid/2) / grid)^2)` over the grid's
    timesteps `t = 1000 sigma'`, minus its smallest value (so the pure-noise end, t = 1000, weighs 0) and
    scaled so that the weights of the `grid` points sum to `grid` (mean 1 under the uniform draw).
    (grid,) float64, in the grid's order (index 0 is sigma 1)."""
    t = timestep_of(shift_sigma(release_grid(grid), shift))
    bump = torch.exp(-2 * ((t - grid / 2) / grid) ** 2)
    bump = bump - bump.min()
    return bump * (grid / bump.sum())


def round_timestep(timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The timestep as the release's DiT sees it: cast to the pipeline dtype (`timestep.to(dtype=
    self.torch_dtype)` in `training_loss` and `__call__`, wan_video_new.py / wan_video_semantic.py),
    so in bf16 its sinusoidal embedding sees the rounded value (1000 for 999.8, 832 for 833.3). Returned
    as float32 holding the rounded values; float32 leaves it as it is."""
    timestep = timestep.float()
    return timestep if dtype == torch.float32 else timestep.to(dtype).float()


@dataclass
class TrainingDraw:
    """One training noise level per sample."""

    sigma: torch.Tensor  # (B,) float32: the noise level of x_t
    timestep: torch.Tensor  # (B,) float32: the DiT's timestep (rounded to the model's dtype when asked)
    weight: torch.Tensor  # (B,) float32: the release's loss weight at the grid point used


def draw_training_timesteps(batch: int, generator: torch.Generator | None = None, shift: float = 5.0,
                            grid: int = NUM_TRAIN_TIMESTEPS,
                            timestep_dtype: torch.dtype = torch.float32) -> TrainingDraw:
    """The release's training draw (`training_loss` in wan_video_new.py): a uniform index into the shifted
    grid of `grid` timesteps, the timestep cast to the model's
    dtype, then the grid point nearest the cast value (`add_noise` and `training_weight` take
    `argmin |timesteps - t|`, the first on a tie) gives the noise level and the weight. In float32 the
    nearest point is the drawn one; in bf16 the top of the grid collapses (999.8 -> 1000 -> sigma 1)."""
    ids = torch.randint(0, grid, (batch,), generator=generator)
    sigmas = shift_sigma(release_grid(grid), shift)
    times = timestep_of(sigmas.float())  # float32, as the release scheduler's `timesteps`
    timestep = round_timestep(times[ids], timestep_dtype)
    if timestep_dtype != torch.float32:
        ids = (times[None, :] - timestep[:, None]).abs().argmin(dim=1)
    return TrainingDraw(sigma=sigmas[ids].float(), timestep=timestep,
                        weight=release_training_weights(shift, grid)[ids].float())


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


def change_weights(target: torch.Tensor, source: torch.Tensor, strength: float, threshold: float) -> torch.Tensor:
    """(B, 1, T, H, W) flow-loss weights of an edit pair's latent positions (`train.change_weight`, ours):
    1 + strength where the target differs from the source by more than `threshold` in some channel, 1
    elsewhere, divided by each sample's mean, so a sample weighs as much as before and only its positions
    are weighted against each other (a whole-frame edit, all changed, stays uniform). `target`, `source`:
    (B, C, T, H, W) clean latents of one grid."""
    changed = (target.float() - source.float()).abs().amax(1, keepdim=True) > threshold
    w = 1.0 + strength * changed.float()
    return w / w.mean(dim=(1, 2, 3, 4), keepdim=True)


def sama_loss(video_pred: torch.Tensor, video_target: torch.Tensor, semantic_pred: torch.Tensor | None = None,
              semantic_target: torch.Tensor | None = None, semantic_weight: float = 0.1,
              weights: torch.Tensor | None = None, position_weights: torch.Tensor | None = None) -> LossParts:
    """L = MSE(v, eps - x0) + lambda * L1(sem_pred, eps_s - s)   (docs/sama.md §3, lambda = 0.1).

    `position_weights` (B, 1, T, H, W), from `change_weights`: each sample's MSE weighs its positions.
    `weights` (B,): the flow term becomes the mean over samples of weight x that sample's MSE, as the
    release weights each sample's loss by its timestep (`loss * training_weight(timestep)`, one sample a
    call). The semantic term is not weighted: the release computes L_sem apart (model_fn_wan_video
    returns it as its own scalar) and its trainer, which combines the two, is not published; ours keeps
    the paper's L_FM + lambda L_sem, so the head also learns at t = 1000, where the weight is 0 and where
    sampling starts denoising the semantic tokens.

    Targets carry no gradient (they are data and noise), so nothing flows back through the semantic
    target into the projector: no collapse path."""
    if weights is None and position_weights is None:
        flow = F.mse_loss(video_pred.float(), video_target.detach().float())
    else:
        err = (video_pred.float() - video_target.detach().float()).pow(2)
        if position_weights is not None:  # (B, 1, T, H, W): change_weights
            err = err * position_weights.to(err.device, err.dtype)
        per_sample = err.flatten(1).mean(1)  # (B,)
        flow = per_sample.mean() if weights is None else (weights.to(per_sample.device, per_sample.dtype)
                                                          * per_sample).mean()
    if semantic_pred is None or semantic_target is None:
        semantic = flow.new_zeros(())
    else:
        semantic = F.l1_loss(semantic_pred.float(), semantic_target.detach().float())
    return LossParts(total=flow + semantic_weight * semantic, flow=flow, semantic=semantic)
