"""The SAMA sampling loop (docs/sama.md §4): flow-matching steps over the video latents and, jointly, the
semantic tokens, with classifier-free or dual guidance. Plain code over the model and a scheduler.

Schedulers:
- `euler`: the release's FlowMatchScheduler (shifted `linspace(1, 0, steps + 1)[:-1]`, then 0:
  `flow.inference_sigmas`);
- `unipc`: diffusers' UniPCMultistepScheduler in flow-prediction mode (what diffusers' WanPipeline uses).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sama_cli.core.errors import ConfigError
from sama_cli.edit.choices import SCHEDULERS
from sama_cli.edit.windows import WindowPlan
from sama_cli.model.flow import (
    cfg_combine,
    dual_cfg_combine,
    euler_step,
    inference_sigmas,
    round_timestep,
    timestep_of,
)
from sama_cli.model.transformer import SamaTransformer

TIMESTEP_DTYPES = ("model", "fp32")


@dataclass
class SamplingConfig:
    steps: int = 50
    shift: float = 5.0
    guidance: float = 5.0  # classifier-free guidance over the prompt (release cfg_scale)
    source_guidance: float | None = None  # dual guidance s_I (docs/sama.md §4); set with text_guidance
    text_guidance: float | None = None  # dual guidance s_T
    scheduler: str = "euler"
    seed: int = 1
    semantic_tokens: int | None = None  # None: the model's 65 x anchor frames; 0: no semantic tokens
    # model: the DiT sees each timestep rounded to the model's dtype (bf16: 995.9 -> 996), as the release's
    # `__call__` casts it (wan_video_semantic.py); fp32: unrounded. The scheduler steps on the exact grid.
    timestep_dtype: str = "model"

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, not {self.steps}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if self.shift <= 0:
            raise ConfigError(f"shift must be positive, not {self.shift}")
        if self.timestep_dtype not in TIMESTEP_DTYPES:
            raise ConfigError(f"timestep_dtype must be one of {TIMESTEP_DTYPES}, not {self.timestep_dtype!r}")

    @property
    def dual(self) -> bool:
        return self.source_guidance is not None or self.text_guidance is not None


class EulerFlow:
    """Release scheduler: x <- x + v (sigma_next - sigma)."""

    order = 1

    def __init__(self, steps: int, shift: float):
        self.sigmas = inference_sigmas(steps, shift)  # (steps + 1,), ends at 0

    @property
    def timesteps(self) -> torch.Tensor:
        return timestep_of(self.sigmas[:-1]).float()

    def step(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        return euler_step(x, velocity.to(x.dtype), float(self.sigmas[i]), float(self.sigmas[i + 1]))


class DiffusersFlow:
    """Wraps a diffusers flow scheduler (UniPC by default) behind the same two calls."""

    def __init__(self, steps: int, shift: float, scheduler=None):
        if scheduler is None:
            from diffusers import UniPCMultistepScheduler

            scheduler = UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000
            )
        else:
            scheduler = type(scheduler).from_config(scheduler.config)  # own state per stream
        self.scheduler = scheduler
        self.scheduler.set_timesteps(steps)
        self.scheduler.set_begin_index(0)

    @property
    def timesteps(self) -> torch.Tensor:
        return self.scheduler.timesteps

    def step(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.scheduler.step(velocity, self.scheduler.timesteps[i], x, return_dict=False)[0]


def make_scheduler(cfg: SamplingConfig, template=None):
    if cfg.scheduler == "euler" and template is None:
        return EulerFlow(cfg.steps, cfg.shift)
    return DiffusersFlow(cfg.steps, cfg.shift, template)


@dataclass
class SampleResult:
    latents: torch.Tensor  # (B, C, T, H, W) normalized latents, fp32
    semantic: torch.Tensor | None  # (B, N, S) denoised semantic features, fp32
    forwards: int = 0  # model calls (a batched call of several guidance branches or windows counts once)


class Guided:
    """The model's guided velocity (video, semantic) for a batch: plain, classifier-free or dual guidance,
    as `cfg` says. With `batch` (the default) the guidance branches whose sequences line up go through the
    model as one batch (classifier-free: both; dual: all three, or two when source tokens make the
    prompt-only branch shorter): the same output as one forward each, within float rounding."""

    def __init__(self, model: SamaTransformer, cfg: SamplingConfig, use_cfg: bool, batch: bool = True,
                 parallel=None):
        self.model, self.cfg, self.use_cfg, self.batch, self.dtype = model, cfg, use_cfg, batch, model.dtype
        self.parallel = parallel  # edit/multigpu.py GuidanceParallel: the branches over rank groups
        self.forwards = 0  # model calls so far (a batched call counts once)
        # step caches (edit/speed.py) keep one state per call site: guidance branch(es) and window group
        self.cached = bool(getattr(getattr(model, "backbone", None), "is_cache_enabled", False))
        self.step, self.where = 0, ""

    def run(self, ctx, src, x, t, s, name: str = "cond"):
        self.forwards += 1
        site = (self.model.backbone.cache_context(self.where + name, step_index=self.step,
                                                  num_inference_steps=self.cfg.steps)
                if self.cached else contextlib.nullcontext())
        with site:
            out = self.model(x.to(self.dtype), t, ctx, source_latents=src,
                             semantic_latents=None if s is None else s.to(self.dtype))
        return out.video.float(), None if out.semantic is None else out.semantic.float()

    def branches(self, branches: list[tuple[torch.Tensor, torch.Tensor | None]], names: list[str], x, t, s):
        """[(context, source)] -> [(video velocity, semantic velocity)], one forward per group of branches
        with the same sequence shapes when batching, else one per branch. Guidance-parallel: this rank's
        branches only, then every branch's output from the rank that ran it."""
        gp = self.parallel
        if gp is None:
            return self._forwards(branches, names, x, t, s)
        mine = gp.mine(len(branches))
        local = self._forwards([branches[i] for i in mine], [names[i] for i in mine], x, t, s)
        outputs: list[Any] = [None] * len(branches)
        for i, o in zip(mine, local, strict=True):
            outputs[i] = o
        return gp.share(outputs, (x, s))

    def _forwards(self, branches, names: list[str], x, t, s):
        if not self.batch:
            return [self.run(c, src, x, t, s, name) for (c, src), name in zip(branches, names, strict=True)]
        if getattr(self.model.config, "source_mode", "token") == "channel":  # no source is a zero source on the channels: batchable
            branches = [(c, torch.zeros_like(x) if src is None else src) for c, src in branches]
        groups: dict[tuple, list[int]] = {}
        for i, (c, src) in enumerate(branches):
            groups.setdefault((tuple(c.shape), None if src is None else tuple(src.shape)), []).append(i)
        out: list[Any] = [None] * len(branches)
        for idx in groups.values():
            n, src = len(idx), branches[idx[0]][1]
            v, sem = self.run(torch.cat([branches[i][0] for i in idx]),
                              None if src is None else torch.cat([branches[i][1] for i in idx]),
                              _repeat(x, n), _repeat(t, n), _repeat(s, n), "+".join(names[i] for i in idx))
            vs, ss = v.chunk(n), (sem.chunk(n) if sem is not None else [None] * n)
            for j, i in enumerate(idx):
                out[i] = (vs[j], ss[j])
        return out

    def __call__(self, pos, neg, src, x, t, s):
        cfg = self.cfg
        if not self.use_cfg:
            return self.run(pos, src, x, t, s)
        if cfg.dual:
            # v(I,T): source + prompt; v(0,T): prompt only; v(I,0): source + negative prompt
            (v_it, s_it), (v_0t, s_0t), (v_i0, s_i0) = self.branches([(pos, src), (pos, None), (neg, src)],
                                                                       ["it", "0t", "i0"], x, t, s)
            s_i, s_t = cfg.source_guidance or 0.0, cfg.text_guidance or 0.0
            return (dual_cfg_combine(v_it, v_0t, v_i0, s_i, s_t),
                    None if s_it is None else dual_cfg_combine(s_it, s_0t, s_i0, s_i, s_t))
        (v_pos, s_pos), (v_neg, s_neg) = self.branches([(pos, src), (neg, src)], ["cond", "uncond"], x, t, s)
        return (cfg_combine(v_pos, v_neg, cfg.guidance),
                None if s_pos is None else cfg_combine(s_pos, s_neg, cfg.guidance))


def _repeat(z: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if z is None else z.repeat(n, *([1] * (z.dim() - 1)))


def _slices(z: torch.Tensor | None, spans: list[tuple[int, int]]) -> torch.Tensor | None:
    """The windows' frame slices of `z` (B, C, T, H, W), stacked along the batch."""
    return None if z is None else torch.cat([z[:, :, a:e] for a, e in spans])


def blended_velocity(guided: Guided, plan: WindowPlan, latents: torch.Tensor, states: list[torch.Tensor],
                     context, negative, source, t) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The clip's velocity from its windows, each on its own slice (and so its own RoPE grid from frame 0)
    blended by the plan's weights, and each semantic state's velocity: with one (shared) state, the mean of
    the windows' semantic velocities; with one per window, each window's own."""
    b, n = latents.shape[0], len(plan.spans)
    v = torch.zeros_like(latents)
    vs: list[torch.Tensor | None] = [None] * len(states)
    for g, group in enumerate(plan.groups()):
        guided.where = f"w{g}/"  # a step cache's state per window group
        spans = [plan.spans[k] for k in group]
        sem = torch.cat([states[k if len(states) > 1 else 0] for k in group]) if states else None
        m = len(group)
        vg, vsg = guided(_repeat(context, m), _repeat(negative, m), _slices(source, spans), _slices(latents, spans),
                         _repeat(t, m), sem)
        for j, (k, (a, e)) in enumerate(zip(group, spans, strict=True)):
            w = plan.weights[k, a:e].to(device=latents.device, dtype=torch.float32).view(1, 1, -1, 1, 1)
            v[:, :, a:e] += w * vg[j * b:(j + 1) * b]
            if vsg is None:
                continue
            part = vsg[j * b:(j + 1) * b]
            if len(states) > 1:
                vs[k] = part
            else:
                vs[0] = part / n if vs[0] is None else vs[0] + part / n
    return v, vs


def _noise(shape: tuple[int, ...], semantic: tuple[int, int], n_states: int,
           generator: torch.Generator | Sequence[torch.Generator]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The starting noise on the CPU: video latents of `shape` (B, ...) and `n_states` semantic states
    (B, *semantic). One generator: the whole video batch, then each state. One generator per batch element:
    the same per element (its video, then its states), stacked."""
    b = shape[0]
    if isinstance(generator, torch.Generator):
        draws = [(generator, b)]
    else:
        if len(generator) != b:
            raise ConfigError(f"{len(generator)} noise generators for a batch of {b}")
        draws = [(g, 1) for g in generator]
    videos, states = [], [[] for _ in range(n_states)]
    for g, n in draws:
        videos.append(torch.randn((n, *shape[1:]), generator=g, dtype=torch.float32))
        for k in range(n_states):
            states[k].append(torch.randn((n, *semantic), generator=g, dtype=torch.float32))
    return torch.cat(videos), [torch.cat(z) for z in states]


def sample(
    model: SamaTransformer,
    latent_shape: tuple[int, ...],
    context: torch.Tensor,
    negative_context: torch.Tensor | None,
    source_latents: torch.Tensor | None,
    cfg: SamplingConfig,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    scheduler_template=None,
    on_step: Callable[[int, int], None] | None = None,
    windows: WindowPlan | None = None,
    batch_guidance: bool = True,
    parallel=None,
) -> SampleResult:
    """Denoise target latents of `latent_shape` (B, C, T, H, W), conditioned on the clean
    `source_latents` and the prompt `context` (B, L, D); `negative_context` drives guidance.

    Noise is drawn on the CPU from `generator` (video first, then semantic tokens), so a seed gives the
    same start on every device. A sequence of generators, one per batch element, draws each element's noise
    from its own (video, then its semantic tokens): a batch of clips then starts where each clip would
    start alone (`Editor.edit_clips`). Both streams take the same scheduler steps and the same guidance.
    `windows` (edit/windows.py): a clip longer than the model's window is denoised as one trajectory whose
    velocity blends the windows'; with one window (or None) this is the plain loop, bit for bit.
    `batch_guidance`: the guidance branches in one forward where their shapes allow (Guided).
    `parallel` (edit/multigpu.py ParallelEdit): this rank's share of a multi-rank edit; the sequence split is
    on the model already (`ParallelEdit.attach`), the guidance split happens here.
    """
    cfg.validate()
    device, dtype = model.device, model.dtype
    if generator is None:
        generator = torch.Generator().manual_seed(cfg.seed)
    b = latent_shape[0]
    windowed = windows is not None and not windows.single
    # a model trained without Semantic Anchoring (recorded by `train` in config.extra) denoises no semantic tokens
    trained_with_sa = (getattr(model.config, "extra", None) or {}).get("semantic_anchoring", True)
    n_sem = (model.config.semantic_tokens if trained_with_sa else 0) if cfg.semantic_tokens is None else cfg.semantic_tokens
    # one semantic state, or (windows.semantic == "per-window") one per window, each from its own noise
    n_states = len(windows.spans) if windowed and windows.semantic == "per-window" else 1
    latents, states = _noise(latent_shape, (n_sem, model.config.semantic_dim), n_states if n_sem else 0, generator)
    latents, states = latents.to(device), [z.to(device) for z in states]
    video_sched = make_scheduler(cfg, scheduler_template)
    sem_scheds = [make_scheduler(cfg, scheduler_template) for _ in states]
    context = context.to(device, dtype)
    if negative_context is not None:
        negative_context = negative_context.to(device, dtype)
    if source_latents is not None:
        source_latents = source_latents.to(device, dtype)
    guided = Guided(model, cfg, negative_context is not None and (cfg.dual or cfg.guidance != 1.0), batch_guidance,
                    parallel=None if parallel is None else parallel.guidance)
    if guided.cached:  # a step cache starts every edit empty
        model.backbone._reset_stateful_cache()
    timesteps = video_sched.timesteps
    t_dtype = dtype if cfg.timestep_dtype == "model" else torch.float32
    for i in range(len(timesteps)):
        t = round_timestep(timesteps[i], t_dtype).to(device).expand(b)
        guided.step = i
        if windowed:
            v, vs = blended_velocity(guided, windows, latents, states, context, negative_context, source_latents, t)
        else:
            v, vs1 = guided(context, negative_context, source_latents, latents, t, states[0] if states else None)
            vs = [vs1]
        latents = video_sched.step(v, i, latents)
        for k, state in enumerate(states):
            if vs[k] is not None:
                states[k] = sem_scheds[k].step(vs[k], i, state)
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    semantic = None
    if states:
        semantic = states[0] if len(states) == 1 else torch.stack(states).mean(0)
    return SampleResult(latents=latents, semantic=semantic, forwards=guided.forwards)
