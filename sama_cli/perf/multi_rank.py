"""`make bench` row for multi-rank editing (issue 17): the sampler on 2 processes against 1, in one torchrun job.

Both arms run in the same job with one thread per process, timed alternately: one process alone (rank 0
samples while rank 1 waits), then both ranks sharing the edit in a layout. On the CPU the ranks talk over
gloo; the figure is a lower bound for GPUs, where NCCL's all-to-all is far cheaper than a step.

    torchrun --nproc_per_node=2 -m sama_cli.perf.multi_rank OUT.json    (what `multi_rank_rows` runs)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sama_cli.perf.timing import skipped_row

SHAPE = (1, 16, 5, 16, 16)  # 320 target tokens (+ 320 source, + 5 semantic): as fast_edit_speed's rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(out: str, steps: int, repeats: int) -> None:
    import torch.distributed as dist

    from sama_cli.edit.multigpu import ParallelEdit, choose_layout
    from sama_cli.edit.sampler import SamplingConfig, sample
    from sama_cli.model.config import from_preset
    from sama_cli.model.transformer import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model(from_preset("tiny", dim=512, num_heads=8, num_layers=4, ffn_dim=1536), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    ctx, neg = torch.randn(1, 16, 32, generator=g), torch.randn(1, 16, 32, generator=g)
    src = torch.randn(*SHAPE, generator=g)
    cfg = SamplingConfig(steps=steps, guidance=5.0)

    def alone() -> None:
        if rank == 0:
            with torch.no_grad():
                sample(model, SHAPE, ctx, neg, src, cfg, batch_guidance=False)
        dist.barrier()

    rows = []
    for requested in ("guidance", "sequence"):
        par = ParallelEdit(choose_layout(world, 2, model.config.num_heads, requested), rank)

        def shared(par=par) -> None:
            par.attach(model)
            with torch.no_grad():
                sample(model, SHAPE, ctx, neg, src, cfg, batch_guidance=False, parallel=par)
            par.detach(model)
            dist.barrier()

        alone(), shared()  # warm up
        ta, tb = [], []
        for _ in range(repeats):
            ta.append(_timed(alone))
            tb.append(_timed(shared))
        rows.append({"layout": par.layout.describe(), "alone": statistics.median(ta), "shared": statistics.median(tb)})
    if rank == 0:
        Path(out).write_text(json.dumps({"rows": rows, "steps": steps}))
    dist.destroy_process_group()


def multi_rank_rows(quick: bool = False) -> list[dict]:
    """Launch the job on 2 processes and turn its timings into bench rows."""
    steps, repeats = (3, 2) if quick else (8, 4)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "sama_cli.perf.multi_rank", str(out), str(steps), str(repeats)],
                             capture_output=True, text=True, env=env, timeout=1200)
        if res.returncode != 0 or not out.exists():
            return [skipped_row("edit speed", "multi-rank editing (2 processes vs 1)", res.stderr[-200:])]
        data = json.loads(out.read_text())
    return [{"area": "edit speed",
             "what": f"torchrun 2 processes, {r['layout']}, classifier-free, dim-512 DiT, 645 tokens, 1 CPU thread each, gloo",
             "value": f"{r['alone'] / r['shared']:.2f}x one process ({r['shared'] / steps * 1e3:.0f} vs "
                      f"{r['alone'] / steps * 1e3:.0f} ms/step)",
             "target": "exact (tests/test_parallel_edit.py); toward 2x on GPUs", "ok": True} for r in data["rows"]]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
