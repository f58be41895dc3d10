"""Training checkpoints with torch.distributed.checkpoint (DCP): save, keep the last K, resume, export.

Layout under `OUT/checkpoints/`:
    step_00000100/          a complete checkpoint (DCP shards + .metadata, trainer.json, rng_rank*.pt, recipe.yaml)
    step_00000200.tmp/      a checkpoint being written; renamed only once every rank has finished
A process killed mid-write leaves a `.tmp` folder that resume ignores (and the next save removes), so
the previous checkpoint stays usable. The same code saves sharded FSDP2 state, DDP or a plain module.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from sama_cli.core.distributed import Dist, barrier
from sama_cli.core.errors import writing
from sama_cli.io.artifacts import atomic_write_text

_STEP_DIR = re.compile(r"^step_(\d{8})$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def complete_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / ".metadata").is_file() and (p / "trainer.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest(root: str | Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[-1][1] if done else None


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """Without a process group DCP warns at every save and load that it assumes one process; that is
    what we mean (the same code runs with and without torchrun), so exactly that warning is dropped."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed is .*uninitialized, assuming the intent is "
                                r"to (save|load) in a single process", category=UserWarning)
        yield


def _options(trainable_only: bool) -> StateDictOptions:
    """LoRA runs keep only what trains (adapters, SAMA modules): the frozen base is the run's input."""
    return StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: dict[str, torch.Tensor] | None,
           trainable_only: bool = False):
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options(trainable_only))
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    if ema is not None:
        state["ema"] = ema
    return state


def save(root: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         ema: dict[str, torch.Tensor] | None, trainer: dict[str, Any], d: Dist, recipe_yaml: str,
         keep_last: int, trainable_only: bool = False) -> Path:
    """Write a checkpoint for `step` (all ranks call this), then drop all but the newest `keep_last`."""
    root = Path(root)
    final, tmp = step_dir(root, step), root / f"step_{step:08d}.tmp"
    if d.is_main:
        for stale in root.glob("step_*.tmp"):  # leftovers of a killed write
            shutil.rmtree(stale, ignore_errors=True)
    try:
        with writing(tmp):  # a full disk or a read-only folder: one line naming the checkpoint
            if d.is_main:
                tmp.mkdir(parents=True, exist_ok=True)
            barrier()
            with _single_process_quiet():
                dcp.save(_state(model, optimizer, ema, trainable_only), checkpoint_id=str(tmp))
            rng = {"cpu": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
            torch.save(rng, tmp / f"rng_rank{d.rank}.pt")
            barrier()
            if d.is_main:
                atomic_write_text(tmp / "recipe.yaml", recipe_yaml)
                atomic_write_text(tmp / "trainer.json", json.dumps({**trainer, "step": step, "world": d.world},
                                                                   indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # at once, not at the next run: the space is needed back now
        raise
    if d.is_main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in complete_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         ema: dict[str, torch.Tensor] | None, d: Dist, trainable_only: bool = False) -> dict[str, Any]:
    """Restore model, optimizer, EMA (in place) and this rank's RNG; return trainer.json. `trainable_only`:
    the checkpoint holds the trainable tensors only (LoRA)."""
    path = Path(path)
    state = _state(model, optimizer, ema, trainable_only)
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=_options(trainable_only))
    if ema is not None:
        for k, v in state["ema"].items():
            if ema[k] is not v:
                ema[k].copy_(v)
    rng_file = path / f"rng_rank{d.rank}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "trainer.json").read_text())


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded model state dict on CPU (a collective under FSDP2: every rank calls it)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather sharded (DTensor) tensors to full CPU tensors (a collective when sharded)."""
    out = {}
    for k, v in tensors.items():
        full = v.full_tensor() if hasattr(v, "full_tensor") else v
        out[k] = full.detach().to("cpu").clone()
    return out
