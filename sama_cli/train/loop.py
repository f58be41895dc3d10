"""`sama train`: two-stage SAMA training (docs/sama.md §5-§6), the same code on two CPU cores and on a
cluster.

The loop reads top to bottom: batch -> noise -> forward -> loss -> backward -> clip -> (skip?) ->
step -> EMA -> log -> checkpoint. Data order and noise are pure functions of (seed, step), so a run
resumed from a checkpoint ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.console import info, warn
from sama_cli.core.distributed import Dist, all_reduce_mean, broadcast_object, setup, teardown
from sama_cli.core.runtime import resolve_device
from sama_cli.data.dataset import ArtifactDataset, BucketSampler, collate, pretext_on_the_fly, step_generator
from sama_cli.io.artifacts import atomic_write_text
from sama_cli.model.config import ModelConfig, from_preset
from sama_cli.model.flow import add_noise, sama_loss, sample_training_sigmas, timestep_of, velocity_target
from sama_cli.model.transformer import SamaTransformer, build_model
from sama_cli.model.weights import load_model, save_checkpoint, save_release
from sama_cli.train import checkpoint as ckpt
from sama_cli.train.parallel import choose_parallel, unwrap, wrap
from sama_cli.train.recipe import Recipe, check_files

LOSS_MEAN_DECAY = 0.99  # running mean used by loss-spike skipping
SPIKE_WARMUP = 20  # steps before spike skipping starts
# The running mean follows taken steps only, so a loss that settles above skip_loss_spike x the mean would
# be skipped forever. A loss still that high after this many spike skips since the last taken step is a
# new level, not a spike: the step is taken and the mean restarts from its loss.
MAX_SPIKE_SKIPS = 10
SKIP_COUNTERS = ("skipped", "skipped_nonfinite", "skipped_gradnorm", "skipped_spike")


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    final_loss: float
    skipped: int
    export: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)  # mean seconds per step: data, compute, optimizer


def lr_at(step: int, recipe: Recipe) -> float:
    o = recipe.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    progress = (step - o.warmup_steps) / max(1, recipe.train.steps - o.warmup_steps)
    floor = o.lr * o.min_lr_ratio
    return floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class MicroBatch:
    """One noised micro-batch: what the forward pass and the loss need."""

    x_t: torch.Tensor  # (B, C, T, H, W) noised target latents
    sigma: torch.Tensor  # (B,) on the CPU
    velocity: torch.Tensor  # (B, C, T, H, W) flow-matching target
    text: torch.Tensor  # (B, text_len, D), zeroed where the prompt is dropped
    source: torch.Tensor | None  # (B, C, T', H, W)
    sem_in: torch.Tensor | None  # (B, N_sem, S) noised anchors
    sem_target: torch.Tensor | None  # (B, N_sem, S)
    task: str = "none"  # on-the-fly pretext task of the batch

    def __len__(self) -> int:
        return self.x_t.shape[0]


def draw_micro_batch(dataset: ArtifactDataset, sampler: BucketSampler, recipe: Recipe, tick: int, d: Dist,
                     text_len: int, device: torch.device) -> MicroBatch:
    """The batch and noise of micro-step `tick` (= step * accumulate + micro) on this rank: a pure function
    of (seed, tick, rank, world), the basis of exact resume."""
    T = recipe.train
    samples = [dataset.samples[i] for i in sampler.indices(tick)]
    task = "none"
    if recipe.data.pretext_on_the_fly:
        samples, task = pretext_on_the_fly(samples, recipe.data.task_ratio,
                                           step_generator(T.seed, tick, stream=3 + d.world + d.rank))
    batch = collate(samples, text_len)
    batch = batch.to(device, torch.float32)
    g = step_generator(T.seed, tick, stream=2 + d.rank)
    b = len(batch)
    sigma = sample_training_sigmas(b, g, T.shift)
    eps = torch.randn(batch.target.shape, generator=g).to(device)
    x_t = add_noise(batch.target, eps, sigma.to(device))
    sem_in = sem_target = None
    if T.semantic and batch.anchors is not None:
        eps_s = torch.randn(batch.anchors.shape, generator=g).to(device)
        sem_in = add_noise(batch.anchors, eps_s, sigma.to(device))
        sem_target = velocity_target(batch.anchors, eps_s)
    text = batch.text
    if recipe.data.drop_text > 0:
        keep = (torch.rand(b, generator=g) >= recipe.data.drop_text).to(device, text.dtype)
        text = text * keep[:, None, None]
    return MicroBatch(x_t=x_t, sigma=sigma, velocity=velocity_target(batch.target, eps), text=text,
                      source=batch.source, sem_in=sem_in, sem_target=sem_target, task=task)


def build_for_training(recipe: Recipe) -> SamaTransformer:
    """The model in fp32 on the CPU: a sama checkpoint / release weights / Wan base, or a fresh preset."""
    m = recipe.model
    if m.init is not None or m.base is not None:
        model, _ = load_model(m.init, m.base, dtype=torch.float32, seed=recipe.train.seed, **m.overrides)
        return model
    return build_model(from_preset(m.preset, **m.overrides), seed=recipe.train.seed)


def build_and_choose(recipe: Recipe, d) -> tuple[SamaTransformer, str]:
    """The model and the parallel mode. Under FSDP only rank 0 reads the weights into CPU memory; the
    other ranks build the same model on the meta device (no memory) and receive their shards from rank 0
    after sharding (`fill_sharded_from_rank0`): host RAM holds one copy of the model, not one per rank."""
    if not d.enabled:
        model = build_for_training(recipe)
        return model, choose_parallel(recipe.train.parallel, d, model.num_parameters())
    model = build_for_training(recipe) if d.is_main else None
    config_dict, n_params = broadcast_object((model.config.to_dict(), model.num_parameters()) if d.is_main else None)
    mode = choose_parallel(recipe.train.parallel, d, n_params)
    if model is None:
        if mode == "fsdp":
            with torch.device("meta"):
                model = SamaTransformer(ModelConfig.from_dict(config_dict))
        else:
            model = build_for_training(recipe)  # DDP keeps a full replica on every rank
    return model, mode


def fill_sharded_from_rank0(net: torch.nn.Module, full_sd: dict[str, torch.Tensor], d) -> None:
    """After fully_shard: give every rank its shards of rank 0's weights. Ranks built on meta first get
    real (uninitialised) storage and their RoPE tables, which are computed, not stored."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(p.is_meta for p in net.parameters()) or any(b.is_meta for b in net.buffers()):
        net.to_empty(device=d.device)
        cfg = net.config
        fresh = WanRotaryPosEmbed(cfg.head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        with torch.no_grad():
            for (_, buf), (_, value) in zip(net.backbone.rope.named_buffers(), fresh.named_buffers(), strict=True):
                buf.copy_(value)
    set_model_state_dict(net, full_sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def train(recipe: Recipe, *, on_log=None) -> TrainResult:
    t_start = time.perf_counter()
    check_files(recipe)
    T = recipe.train
    d = setup(resolve_device(T.device))
    device = d.device
    bf16 = T.precision == "bf16" or (T.precision == "auto" and device.type == "cuda")
    out = Path(T.out_dir)
    ckpt_root = out / "checkpoints"
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)

    # ---- model, parallelism, optimizer, EMA ------------------------------------------------------
    model, mode = build_and_choose(recipe, d)
    config = model.config
    model.enable_gradient_checkpointing(recipe.model.gradient_checkpointing)
    if mode != "fsdp":
        model.to(device)
    # FSDP2: fully_shard moves each block to the device as it shards it, so a GPU holds one full block at
    # most (14B in fp32 is 57 GB: moving it whole first would not fit beside anything else on one GPU)
    full_sd = model.state_dict() if mode == "fsdp" and d.is_main else {}  # rank 0's weights, kept for the broadcast
    net = wrap(model, mode, d, mixed_bf16=bf16)
    if mode == "fsdp":
        fill_sharded_from_rank0(net, full_sd, d)
        del full_sd
    params = [p for p in net.parameters() if p.requires_grad]
    o = recipe.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                  fused=device.type == "cuda")
    ema = {n: p.detach().clone() for n, p in unwrap(net).named_parameters() if p.requires_grad}
    ema_params = [p for n, p in unwrap(net).named_parameters() if p.requires_grad]

    # ---- data --------------------------------------------------------------------------------------
    dataset = ArtifactDataset(recipe.data.manifests, need_anchors=T.semantic, weights=recipe.data.weights or None,
                              splits=recipe.data.splits or None, kinds=recipe.data.kinds or None,
                              lazy=recipe.data.lazy)
    sampler = BucketSampler(dataset, video_batch=recipe.data.video_batch, image_batch=recipe.data.image_batch,
                            seed=T.seed, rank=d.rank, world=d.world, image_ratio=recipe.data.image_ratio)
    info(f"{recipe.name}: {model.num_parameters() / 1e6:.2f}M params, {len(dataset)} rows in "
         f"{len(dataset.buckets)} buckets, parallel={mode}, world={d.world}, device={device}")

    # ---- resume ------------------------------------------------------------------------------------
    state: dict[str, Any] = {"loss_mean": None, "spike_streak": 0, **dict.fromkeys(SKIP_COUNTERS, 0)}
    start = 0
    last = ckpt.latest(ckpt_root) if T.resume else None
    if last is not None:
        state.update(ckpt.load(last, net, optimizer, ema, d))
        start = state.pop("step")
        saved_world = state.pop("world", d.world)
        info(f"resumed from {last} at step {start}")
        if saved_world != d.world and d.is_main:  # the sampler's global batch and noise streams follow the world
            warn(f"{last} was saved by {saved_world} processes, resuming on {d.world}: data order and noise will "
                 "differ from an uninterrupted run (world size changed)")

    metrics_path = out / "metrics.jsonl"
    if d.is_main:
        trim_metrics(metrics_path, start)
    metrics = open(metrics_path, "a") if d.is_main else None  # noqa: SIM115 - closed at the end
    board = tensorboard_writer(out / "tensorboard", start + 1) if d.is_main and T.tensorboard else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 and mode != "fsdp" else contextlib.nullcontext()
    timing = {"data": 0.0, "compute": 0.0, "optimizer": 0.0}
    tasks: Counter[str] = Counter()  # on-the-fly pretext draws of this run
    loss_value = float("nan")
    step = start
    since_log = {"t": time.perf_counter(), "steps": 0, "samples": 0}  # for s/step and samples/s in the log
    try:
        for step in range(start, T.steps):
            lr = lr_at(step, recipe)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            parts_sum = {"loss": 0.0, "loss_fm": 0.0, "loss_sem": 0.0}
            n_samples = 0
            for micro in range(o.accumulate):
                # -- batch and noise: pure functions of (seed, step, micro, rank)
                tick = step * o.accumulate + micro
                mb = draw_micro_batch(dataset, sampler, recipe, tick, d, config.text_len, device)
                if recipe.data.pretext_on_the_fly:
                    tasks[mb.task] += 1
                timing["data"] += time.perf_counter() - t0
                # -- forward, loss, backward
                t1 = time.perf_counter()
                with autocast:
                    pred = net(mb.x_t, timestep_of(mb.sigma).to(device), mb.text, source_latents=mb.source,
                               semantic_latents=mb.sem_in)
                parts = sama_loss(pred.video, mb.velocity, pred.semantic, mb.sem_target, T.semantic_weight)
                # k micro-batches of b, each loss divided by k: the gradient of one batch of k*b
                (parts.total / o.accumulate).backward()
                for k, v in parts.as_floats().items():
                    parts_sum[k] += v / o.accumulate
                n_samples += len(mb)
                timing["compute"] += time.perf_counter() - t1
                t0 = time.perf_counter()

            # -- clip, skip or step, EMA
            t2 = time.perf_counter()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            loss_value = float(all_reduce_mean(torch.tensor(parts_sum["loss"], device=device)))
            mean = state["loss_mean"]
            spike = (mean is not None and step >= SPIKE_WARMUP
                     and loss_value > o.skip_loss_spike * mean)
            skip = None
            if not math.isfinite(grad_norm) or not math.isfinite(loss_value):
                skip = "nonfinite"
            elif grad_norm > o.skip_grad_norm:
                skip = "gradnorm"
            elif spike and state["spike_streak"] < MAX_SPIKE_SKIPS:
                skip = "spike"
            if skip is not None:
                optimizer.zero_grad(set_to_none=True)
                state["skipped"] += 1
                state[f"skipped_{skip}"] += 1
                if skip == "spike":
                    state["spike_streak"] += 1
                if d.is_main:
                    why = {"nonfinite": "non-finite loss or grad norm", "gradnorm": "grad norm too large",
                           "spike": "loss spike"}[skip]
                    warn(f"step {step}: skipped ({why}: loss {loss_value:.4g}, running mean {mean or 0:.4g}, "
                         f"grad norm {grad_norm:.4g})")
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    decay = 0.0 if step < T.ema_start else T.ema_decay
                    torch._foreach_lerp_(list(ema.values()), ema_params, 1.0 - decay)
                if spike:  # still high after MAX_SPIKE_SKIPS skips: the new level
                    if d.is_main:
                        warn(f"step {step}: loss {loss_value:.4g} stayed above {o.skip_loss_spike:g}x its running "
                             f"mean for {MAX_SPIKE_SKIPS} skips; step taken, the mean restarts from it")
                    state["loss_mean"] = loss_value
                else:
                    state["loss_mean"] = (loss_value if mean is None
                                          else LOSS_MEAN_DECAY * mean + (1 - LOSS_MEAN_DECAY) * loss_value)
                state["spike_streak"] = 0
            timing["optimizer"] += time.perf_counter() - t2

            # -- log
            done = step + 1
            since_log["steps"] += 1
            since_log["samples"] += n_samples * d.world
            if d.is_main and (done % T.log_every == 0 or done == T.steps or done == start + 1):
                now = time.perf_counter()
                seconds = max(now - since_log["t"], 1e-9)
                record = {"step": done, **parts_sum, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                          "samples": n_samples * d.world, **{k: state[k] for k in SKIP_COUNTERS},
                          "step_time": seconds / since_log["steps"], "samples_per_s": since_log["samples"] / seconds,
                          **({"pretext_tasks": dict(tasks)} if tasks else {}),
                          "time": now - t_start}
                since_log.update(t=now, steps=0, samples=0)
                metrics.write(json.dumps(record) + "\n")
                if board is not None:
                    for key in ("loss", "loss_fm", "loss_sem", "lr", "grad_norm", "step_time", "samples_per_s",
                                *SKIP_COUNTERS):
                        board.add_scalar(f"train/{key}", record[key], done)
                metrics.flush()
                if on_log is not None:
                    on_log(record)
            # -- checkpoint
            if done % T.save_every == 0 or done == T.steps:
                ckpt.save(ckpt_root, done, net, optimizer, ema, state, d, recipe.to_yaml(), T.keep_last)
    finally:
        if metrics is not None:
            metrics.close()
        if board is not None:
            board.close()

    # ---- export a consolidated inference checkpoint: raw weights and EMA ------------------------------
    export: dict[str, str] = {}
    full = ckpt.full_model_state(net)
    full_ema = ckpt.full_tensors(ema)
    if d.is_main:
        config = config.replace(extra={**config.extra, "semantic_anchoring": T.semantic})
        provenance = {"recipe": recipe.name, "stage": recipe.stage, "steps": T.steps, **dataset.provenance}
        export["model"] = str(save_checkpoint(full, out / "export" / "model", config=config, meta=provenance))
        ema_sd = {**full, **full_ema}
        export["ema"] = str(save_checkpoint(ema_sd, out / "export" / "ema", config=config,
                                            meta={**provenance, "ema_decay": T.ema_decay}))
        if T.export_release:  # runs in the authors' inference code and the ComfyUI node as it is
            export["ema_release"] = str(save_release(ema_sd, config, out / "export" / "ema_release.safetensors"))
        atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
        plot_losses(metrics_path, out / "loss.png")
    teardown()
    ran = max(1, T.steps - start)
    return TrainResult(out_dir=out, steps=T.steps, final_loss=loss_value, skipped=state["skipped"], export=export,
                       seconds=time.perf_counter() - t_start, timing={k: v / ran for k, v in timing.items()})


def trim_metrics(path: Path, step: int) -> None:
    """Keep only the metrics rows of steps <= `step`, atomically: a run resumed at `step` logs the later
    steps again (a killed run has logged past its last checkpoint, maybe half a line), and a fresh run
    (step 0) starts an empty file."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line + "\n")
    atomic_write_text(path, "".join(keep))


def tensorboard_writer(folder: Path, purge_step: int):
    """A TensorBoard SummaryWriter when the tensorboard package is installed, else None (logs stay in
    metrics.jsonl either way). Events from `purge_step` on, logged before a resume, are hidden."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


def plot_losses(metrics_path: Path, png: Path) -> Path | None:
    """A loss-curve PNG from metrics.jsonl (matplotlib is optional: without it, no picture)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in rows]
    for key, label in (("loss", "total"), ("loss_fm", "flow (L_FM)"), ("loss_sem", "semantic (L_sem)")):
        ax.plot(steps, [r[key] for r in rows], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
