"""`sama train`: two-stage SAMA training (docs/sama.md §5-§6), the same code on two CPU cores and on a
cluster.

In four parts, as torchtitan's train.py: `build` (processes, model, parallelism, optimizer, EMA, skip
policy, data), `train_step` (batch -> noise -> forward -> loss -> backward -> clip -> skip or step ->
EMA), the loop in `train` (step -> log -> checkpoint), and `export`. The EMA and the skip policy are
objects of their own (sama_cli/train/state.py) saved with every checkpoint. Data order and noise are pure
functions of (seed, step), so a run resumed from a checkpoint ends with exactly the weights of an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sama_cli.core.console import info, warn
from sama_cli.core.distributed import Dist, all_reduce_mean, setup, teardown
from sama_cli.core.runtime import resolve_device
from sama_cli.data.dataset import ArtifactDataset, BucketSampler, collate, pretext_on_the_fly, step_generator
from sama_cli.io.artifacts import atomic_write_text
from sama_cli.model.config import ModelConfig, from_preset
from sama_cli.model.flow import add_noise, change_weights, draw_training_timesteps, sama_loss, velocity_target
from sama_cli.model.transformer import SamaTransformer, build_model
from sama_cli.model.weights import load_model, save_checkpoint, save_release
from sama_cli.train import checkpoint as ckpt
from sama_cli.train.parallel import build_and_choose, fill_sharded_from_rank0, unwrap, wrap
from sama_cli.train.recipe import Recipe, check_files
from sama_cli.train.state import EMA, SKIP_COUNTERS, SkipPolicy


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    final_loss: float
    skipped: int
    export: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)  # mean seconds per step: data, compute, optimizer


def warmup_steps(recipe: Recipe) -> int:
    """`optim.warmup_steps`, where -1 is the release's default: 10% of the run (`--lr_warmup_steps -1`,
    diffsynth/trainers/utils.py wan_parser)."""
    o = recipe.optim
    return round(0.1 * recipe.train.steps) if o.warmup_steps == -1 else o.warmup_steps


def lr_at(step: int, recipe: Recipe) -> float:
    o = recipe.optim
    warmup = warmup_steps(recipe)
    if step < warmup:
        return o.lr * (step + 1) / warmup
    if o.schedule == "constant":
        return o.lr
    progress = (step - warmup) / max(1, recipe.train.steps - warmup)
    floor = o.lr * o.min_lr_ratio
    return floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class MicroBatch:
    """One noised micro-batch: what the forward pass and the loss need."""

    x_t: torch.Tensor  # (B, C, T, H, W) noised target latents
    sigma: torch.Tensor  # (B,) on the CPU
    timestep: torch.Tensor  # (B,) on the CPU: the DiT's timestep (1000 sigma, rounded as train.timestep_dtype says)
    weight: torch.Tensor | None  # (B,) on the CPU: per-sample flow-loss weight (None: train.loss_weighting none)
    position_weight: torch.Tensor | None  # (B, 1, T, H, W): train.change_weight's (None: off, or no source)
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
    drawn = draw_training_timesteps(b, g, T.shift, timestep_dtype=timestep_dtype(recipe, device))
    sigma = drawn.sigma
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
    weight = drawn.weight if T.loss_weighting == "release" else None
    position_weight = None
    if T.change_weight > 0 and batch.source is not None and batch.source.shape == batch.target.shape:
        position_weight = change_weights(batch.target, batch.source, T.change_weight, T.change_threshold)
    return MicroBatch(x_t=x_t, sigma=sigma, timestep=drawn.timestep, weight=weight, position_weight=position_weight,
                      velocity=velocity_target(batch.target, eps), text=text, source=batch.source, sem_in=sem_in,
                      sem_target=sem_target, task=task)


def compute_dtype(recipe: Recipe, device: torch.device) -> torch.dtype:
    """The dtype the model computes in: bf16 when `train.precision` is bf16 (or auto on CUDA), else fp32."""
    p = recipe.train.precision
    return torch.bfloat16 if p == "bf16" or (p == "auto" and device.type == "cuda") else torch.float32


def timestep_dtype(recipe: Recipe, device: torch.device) -> torch.dtype:
    """What the DiT's timestep is rounded to: the compute dtype (`train.timestep_dtype: model`, the
    release) or nothing (`fp32`)."""
    return compute_dtype(recipe, device) if recipe.train.timestep_dtype == "model" else torch.float32


def build_for_training(recipe: Recipe) -> SamaTransformer:
    """The model in fp32 on the CPU: a sama checkpoint / release weights / Wan base, or a fresh preset."""
    m = recipe.model
    if m.init is not None or m.base is not None:
        model, _ = load_model(m.init, m.base, dtype=torch.float32, seed=recipe.train.seed, **m.overrides)
        return model
    return build_model(from_preset(m.preset, **m.overrides), seed=recipe.train.seed)


@dataclass
class Run:
    """Everything `build` makes for one training run: the loop, the checkpoint and the export use it."""

    recipe: Recipe
    d: Dist
    out: Path
    net: torch.nn.Module  # the model as trained: plain, DDP-wrapped, or FSDP2-sharded in place
    config: ModelConfig
    mode: str  # none | ddp | fsdp
    params: list[torch.nn.Parameter]  # the trainable parameters, in the optimizer's order
    optimizer: torch.optim.Optimizer
    ema: EMA
    policy: SkipPolicy
    dataset: ArtifactDataset
    sampler: BucketSampler
    autocast: contextlib.AbstractContextManager
    timing: dict[str, float] = field(default_factory=lambda: {"data": 0.0, "compute": 0.0, "optimizer": 0.0})
    tasks: Counter[str] = field(default_factory=Counter)  # on-the-fly pretext draws of this run

    @property
    def device(self) -> torch.device:
        return self.d.device


@dataclass
class StepOutput:
    """What one optimizer step reports to the log."""

    parts: dict[str, float]  # loss, loss_fm, loss_sem of this rank, averaged over the micro-batches
    loss: float  # the total loss averaged over the ranks: what the skip policy judges
    lr: float
    grad_norm: float
    samples: int  # samples this rank trained on
    skip: str | None  # why the step was skipped, None when it was taken


def build(recipe: Recipe) -> Run:
    """Processes, model, parallelism, optimizer, EMA, skip policy and data, as the recipe says."""
    check_files(recipe)
    T = recipe.train
    d = setup(resolve_device(T.device))
    device = d.device
    bf16 = compute_dtype(recipe, device) == torch.bfloat16
    out = Path(T.out_dir)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)

    model, mode = build_and_choose(lambda: build_for_training(recipe), recipe.train.parallel, d)
    config = model.config
    if recipe.lora is not None:  # before sharding: FSDP2 shards the adapters with their layers
        from sama_cli.model.lora import add_lora

        add_lora(model, recipe.lora.spec(), compute_dtype(recipe, device), seed=recipe.train.seed)
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
    ema = EMA(unwrap(net).named_parameters(), T.ema_decay, T.ema_start)

    dataset = ArtifactDataset(recipe.data.manifests, need_anchors=T.semantic, weights=recipe.data.weights or None,
                              splits=recipe.data.splits or None, kinds=recipe.data.kinds or None,
                              lazy=recipe.data.lazy)
    sampler = BucketSampler(dataset, video_batch=recipe.data.video_batch, image_batch=recipe.data.image_batch,
                            seed=T.seed, rank=d.rank, world=d.world, image_ratio=recipe.data.image_ratio,
                            order=recipe.data.batch_order)
    trainable = sum(p.numel() for p in params)
    lora = f" (LoRA rank {recipe.lora.rank}: {trainable / 1e6:.3f}M trainable)" if recipe.lora is not None else ""
    info(f"{recipe.name}: {model.num_parameters() / 1e6:.2f}M params{lora}, {len(dataset)} rows in "
         f"{len(dataset.buckets)} buckets, parallel={mode}, world={d.world}, device={device}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 and mode != "fsdp" else contextlib.nullcontext()
    return Run(recipe=recipe, d=d, out=out, net=net, config=config, mode=mode, params=params, optimizer=optimizer,
               ema=ema, policy=SkipPolicy(o.skip_grad_norm, o.skip_loss_spike), dataset=dataset, sampler=sampler,
               autocast=autocast)


def resume(run: Run) -> int:
    """Restore weights, optimizer, EMA, skip policy and RNG from the newest checkpoint (when the recipe
    resumes and there is one); the step to continue from."""
    last = ckpt.latest(run.out / "checkpoints") if run.recipe.train.resume else None
    if last is None:
        return 0
    trainer = ckpt.load(last, run.net, run.optimizer, run.ema.state_dict(), run.d,
                        trainable_only=run.recipe.lora is not None)
    run.policy.load_state_dict(trainer)
    start, saved_world = trainer["step"], trainer.get("world", run.d.world)
    info(f"resumed from {last} at step {start}")
    if saved_world != run.d.world and run.d.is_main:  # the sampler's global batch and noise streams follow the world
        warn(f"{last} was saved by {saved_world} processes, resuming on {run.d.world}: data order and noise will "
             "differ from an uninterrupted run (world size changed)")
    return start


def train_step(run: Run, step: int) -> StepOutput:
    """One optimizer step: accumulate the micro-batches' gradients, clip, then skip or step and update
    the EMA."""
    recipe, o, T, device = run.recipe, run.recipe.optim, run.recipe.train, run.device
    lr = lr_at(step, recipe)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    t0 = time.perf_counter()
    parts_sum = {"loss": 0.0, "loss_fm": 0.0, "loss_sem": 0.0}
    n_samples = 0
    for micro in range(o.accumulate):
        # -- batch and noise: pure functions of (seed, step, micro, rank)
        tick = step * o.accumulate + micro
        mb = draw_micro_batch(run.dataset, run.sampler, recipe, tick, run.d, run.config.text_len, device)
        if recipe.data.pretext_on_the_fly:
            run.tasks[mb.task] += 1
        run.timing["data"] += time.perf_counter() - t0
        # -- forward, loss, backward
        t1 = time.perf_counter()
        with run.autocast:
            pred = run.net(mb.x_t, mb.timestep.to(device), mb.text, source_latents=mb.source,
                           semantic_latents=mb.sem_in)
        parts = sama_loss(pred.video, mb.velocity, pred.semantic, mb.sem_target, T.semantic_weight,
                          weights=None if mb.weight is None else mb.weight.to(device),
                          position_weights=mb.position_weight)
        # k micro-batches of b, each loss divided by k: the gradient of one batch of k*b
        (parts.total / o.accumulate).backward()
        for k, v in parts.as_floats().items():
            parts_sum[k] += v / o.accumulate
        n_samples += len(mb)
        run.timing["compute"] += time.perf_counter() - t1
        t0 = time.perf_counter()

    # -- clip, skip or step, EMA
    t2 = time.perf_counter()
    # the norm is measured either way (the skip policy judges it); optim.grad_clip null clips nothing (release)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, float("inf") if o.grad_clip is None else o.grad_clip)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    loss = float(all_reduce_mean(torch.tensor(parts_sum["loss"], device=device)))
    verdict = run.policy.judge(step, loss, grad_norm)
    if verdict.skip is None:
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.ema.update(step)
    else:
        run.optimizer.zero_grad(set_to_none=True)
    if verdict.message is not None and run.d.is_main:
        warn(f"step {step}: {verdict.message}")
    run.timing["optimizer"] += time.perf_counter() - t2
    return StepOutput(parts=parts_sum, loss=loss, lr=lr, grad_norm=grad_norm, samples=n_samples, skip=verdict.skip)


class MetricsLog:
    """The logged steps' rows in metrics.jsonl (and TensorBoard), written by rank 0, with the time per
    step and the throughput since the previous row."""

    def __init__(self, run: Run, start: int, t_start: float, on_log=None):
        T = run.recipe.train
        self.run, self.start, self.t_start, self.on_log = run, start, t_start, on_log
        self.path = run.out / "metrics.jsonl"
        if run.d.is_main:
            trim_metrics(self.path, start)
        self.file = open(self.path, "a") if run.d.is_main else None  # noqa: SIM115 - closed by close()
        self.board = tensorboard_writer(run.out / "tensorboard", start + 1) if run.d.is_main and T.tensorboard else None
        self.since = {"t": time.perf_counter(), "steps": 0, "samples": 0}  # for s/step and samples/s

    def step(self, done: int, out: StepOutput) -> None:
        """After step `done - 1`: count it, and write a row when it is a logged step."""
        run, T = self.run, self.run.recipe.train
        self.since["steps"] += 1
        self.since["samples"] += out.samples * run.d.world
        if self.file is None or not (done % T.log_every == 0 or done == T.steps or done == self.start + 1):
            return
        now = time.perf_counter()
        seconds = max(now - self.since["t"], 1e-9)
        record = {"step": done, **out.parts, "loss": out.loss, "lr": out.lr, "grad_norm": out.grad_norm,
                  "samples": out.samples * run.d.world, **run.policy.counts,
                  "step_time": seconds / self.since["steps"], "samples_per_s": self.since["samples"] / seconds,
                  **({"pretext_tasks": dict(run.tasks)} if run.tasks else {}),
                  "time": now - self.t_start}
        self.since.update(t=now, steps=0, samples=0)
        self.file.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key in ("loss", "loss_fm", "loss_sem", "lr", "grad_norm", "step_time", "samples_per_s", *SKIP_COUNTERS):
                self.board.add_scalar(f"train/{key}", record[key], done)
        self.file.flush()
        if self.on_log is not None:
            self.on_log(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()


def save(run: Run, done: int) -> None:
    """A checkpoint after `done` steps: weights, optimizer, EMA, skip policy, RNG, recipe."""
    T = run.recipe.train
    ckpt.save(run.out / "checkpoints", done, run.net, run.optimizer, run.ema.state_dict(), run.policy.state_dict(),
              run.d, run.recipe.to_yaml(), T.keep_last, trainable_only=run.recipe.lora is not None)


def export(run: Run) -> dict[str, str]:
    """Consolidated inference checkpoints of the raw weights and the EMA (a collective under FSDP2;
    rank 0 writes), the resolved recipe and the loss curve."""
    recipe, T, out = run.recipe, run.recipe.train, run.out
    if recipe.lora is not None:
        return export_lora(run)
    exported: dict[str, str] = {}
    full = ckpt.full_model_state(run.net)
    full_ema = ckpt.full_tensors(run.ema.state_dict())
    if not run.d.is_main:
        return exported
    config = run.config.replace(extra={**run.config.extra, "semantic_anchoring": T.semantic})
    provenance = {"recipe": recipe.name, "stage": recipe.stage, "steps": T.steps, **run.dataset.provenance}
    exported["model"] = str(save_checkpoint(full, out / "export" / "model", config=config, meta=provenance))
    ema_sd = {**full, **full_ema}
    exported["ema"] = str(save_checkpoint(ema_sd, out / "export" / "ema", config=config,
                                          meta={**provenance, "ema_decay": T.ema_decay}))
    if T.export_release:  # runs in the authors' inference code and the ComfyUI node as it is
        exported["ema_release"] = str(save_release(ema_sd, config, out / "export" / "ema_release.safetensors"))
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    plot_losses(out / "metrics.jsonl", out / "loss.png")
    return exported


def export_lora(run: Run) -> dict[str, str]:
    """A LoRA run's export: the adapters (and the SAMA modules) as diffusers-loadable LoRA files, raw and EMA;
    with `lora.merge`, the EMA adapters folded into full weights of the base (our checkpoint format, and the
    release layout with `train.export_release`)."""
    from sama_cli.model.lora import adapter_tensors, load_loras, merge, save_lora

    recipe, T, out = run.recipe, run.recipe.train, run.out
    raw = ckpt.full_tensors({n: p for n, p in unwrap(run.net).named_parameters() if p.requires_grad})
    ema = ckpt.full_tensors(run.ema.state_dict())
    if not run.d.is_main:
        return {}
    base = recipe.model.init or recipe.model.base or recipe.model.preset
    spec = recipe.lora.spec()
    exported = {"lora": str(save_lora(adapter_tensors(raw), out / "export" / "lora.safetensors", spec, base=base,
                                      recipe_yaml=recipe.to_yaml())),
                "lora_ema": str(save_lora(adapter_tensors(ema), out / "export" / "lora_ema.safetensors", spec,
                                          base=base, recipe_yaml=recipe.to_yaml()))}
    if recipe.lora.merge:
        model = build_for_training(recipe)  # the base again, in fp32, whatever the run stored it in
        load_loras(model, [(exported["lora_ema"], 1.0)])
        merge(model)
        config = model.config.replace(extra={**model.config.extra, "semantic_anchoring": T.semantic})
        meta = {"recipe": recipe.name, "stage": recipe.stage, "steps": T.steps, "lora_merged": base,
                **run.dataset.provenance}
        exported["merged"] = str(save_checkpoint(model.state_dict(), out / "export" / "merged", config=config,
                                                 meta=meta))
        if T.export_release:
            exported["merged_release"] = str(save_release(model.state_dict(), config,
                                                          out / "export" / "merged_release.safetensors"))
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    plot_losses(out / "metrics.jsonl", out / "loss.png")
    return exported


def train(recipe: Recipe, *, on_log=None) -> TrainResult:
    """Build, resume, run `train_step` up to `train.steps` (logging and checkpointing as the recipe says),
    export. `on_log(row)` is called on rank 0 with every metrics row."""
    t_start = time.perf_counter()
    run = build(recipe)
    T = recipe.train
    start = resume(run)
    log = MetricsLog(run, start, t_start, on_log)
    loss = float("nan")
    try:
        for step in range(start, T.steps):
            out = train_step(run, step)
            loss = out.loss
            done = step + 1
            log.step(done, out)
            if done % T.save_every == 0 or done == T.steps:
                save(run, done)
    finally:
        log.close()
    exported = export(run)
    teardown()
    ran = max(1, T.steps - start)
    return TrainResult(out_dir=run.out, steps=T.steps, final_loss=loss, skipped=run.policy.counts["skipped"],
                       export=exported, seconds=time.perf_counter() - t_start,
                       timing={k: v / ran for k, v in run.timing.items()})


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
