"""Run under torchrun by tests/test_parallel_edit.py: the sampler on tiny SAMA models, alone and shared by
the ranks in every layout that fits, written as relative errors to the one-process result (rank 0)."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from sama_cli.edit.multigpu import ParallelEdit, choose_layout
from sama_cli.edit.sampler import SamplingConfig, sample
from sama_cli.model.config import from_preset
from sama_cli.model.transformer import build_model

GUIDANCE = {"none": SamplingConfig(steps=3, guidance=1.0, seed=3),
            "cfg": SamplingConfig(steps=3, guidance=4.0, seed=3),
            "dual": SamplingConfig(steps=3, seed=3, source_guidance=1.5, text_guidance=3.0)}
# 3 heads: no Ulysses split; per-token timesteps: the modulation is split with the tokens
MODELS = {"tiny": {}, "3 heads": {"dim": 36, "num_heads": 3, "ffn_dim": 72}, "per-token t": {"timestep_mode": "per_token"}}


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    results = []
    for model_name, overrides in MODELS.items():
        for source_mode in ("token", "channel"):
            model = build_model(from_preset("tiny", source_mode=source_mode, **overrides), seed=0).eval()
            torch.manual_seed(1)  # the same weights on every rank
            torch.nn.init.normal_(model.type_embedding.weight, std=0.5)
            g = torch.Generator().manual_seed(4)
            ctx, neg = torch.randn(1, 16, 32, generator=g), torch.randn(1, 16, 32, generator=g)
            src = torch.randn(1, 16, 2, 4, 4, generator=g)  # 8 target + 8 source + 5 semantic tokens
            for guidance, cfg in GUIDANCE.items():
                branches = 3 if cfg.dual else (1 if cfg.guidance == 1.0 else 2)
                for requested in ("auto", "sequence", "guidance"):
                    if requested == "guidance" and world > branches:
                        continue
                    layout = choose_layout(world, branches, model.config.num_heads, requested)
                    with torch.no_grad():
                        alone = sample(model, (1, 16, 2, 4, 4), ctx, neg, src, cfg, batch_guidance=False)
                        par = ParallelEdit(layout, rank)
                        par.attach(model)
                        shared = sample(model, (1, 16, 2, 4, 4), ctx, neg, src, cfg, batch_guidance=False,
                                        parallel=par)
                        par.detach(model)
                    rel = float((shared.latents - alone.latents).norm() / alone.latents.norm())
                    rel_sem = float((shared.semantic - alone.semantic).norm() / alone.semantic.norm())
                    # every rank holds the same result
                    first = shared.latents.clone()
                    dist.broadcast(first, src=0)
                    results.append({"model": model_name, "source_mode": source_mode, "guidance": guidance,
                                    "requested": requested, **layout.as_dict(), "guidance_mode": guidance, "rel": rel, "rel_semantic": rel_sem,
                                    "same_on_ranks": bool(torch.equal(first, shared.latents))})
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        rows = [dict(r, rank=k) for k, rs in enumerate(gathered) for r in rs]
        with open(out, "w") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
