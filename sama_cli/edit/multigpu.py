"""Multi-GPU editing: `torchrun --nproc_per_node=N -m sama_cli edit ...` (issue 17).

Two ways to spread one edit over N ranks, combined as guidance G x sequence S = N:

- guidance-parallel: the guidance branches (classifier-free: cond / uncond; dual: three) run on different
  ranks, each its own forward, and the velocities are exchanged (one broadcast per branch a step). No
  communication inside the model: the simplest speed-up for N = 2.
- sequence-parallel (Ulysses): the joint `[source | semantic | target]` sequence is cut into S equal parts
  (zero-padded to a multiple of S). Every layer but self-attention works token by token, so each rank runs
  the blocks on its part; around self-attention an all-to-all trades the sequence split for a head split
  (each rank attends over the whole sequence for H/S heads), and a second one trades it back. Padding keys
  are masked. When S does not divide the heads, each rank gathers every key and value instead (`kv-gather`:
  more memory, the same result). The last block's output is gathered once for the heads.

diffusers' own context parallelism splits the inputs at module boundaries and computes RoPE for one latent
grid; our forward joins parts with their own RoPE (source, semantic, target), so the split happens inside
`SamaTransformer.forward` (`sequence_parallel`) and the attention is ours: every rank's result equals the
one-process edit within float rounding (tests/test_parallel_edit.py, gloo on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sama_cli.core.errors import ConfigError

LAYOUTS = ("auto", "sequence", "guidance")


@dataclass(frozen=True)
class Layout:
    """How N ranks share an edit: `guidance` groups x `sequence` ranks each; `attention` says how the
    sequence ranks attend (ulysses | kv-gather; None without sequence parallelism)."""

    ranks: int
    guidance: int
    sequence: int
    attention: str | None

    def describe(self) -> str:
        if self.ranks == 1:
            return "one rank"
        parts = ([f"guidance {self.guidance}"] if self.guidance > 1 else []) + (
            [f"sequence {self.sequence} ({self.attention})"] if self.sequence > 1 else [])
        return " x ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"ranks": self.ranks, "guidance": self.guidance, "sequence": self.sequence,
                "attention": self.attention, "layout": self.describe()}


def choose_layout(ranks: int, branches: int, heads: int, requested: str = "auto") -> Layout:
    """The layout for `ranks` processes, an edit with `branches` guidance branches (1: none, 2: classifier-free,
    3: dual) and a DiT with `heads` attention heads. `auto`: the branches on two rank groups when there are two
    or more and the ranks are even, the sequence split over the rest."""
    if requested not in LAYOUTS:
        raise ConfigError(f"--parallel must be one of {', '.join(LAYOUTS)}, not {requested!r}")
    if requested == "guidance":
        if ranks > branches:
            raise ConfigError(f"--parallel guidance: {ranks} ranks for {branches} guidance branch(es); use at most "
                              f"{branches} ranks, or --parallel auto / sequence")
        g = ranks
    elif requested == "sequence" or branches < 2 or ranks % 2:
        g = 1
    else:
        g = 2
    s = ranks // g
    return Layout(ranks, g, s, None if s == 1 else ("ulysses" if heads % s == 0 else "kv-gather"))


class SequenceParallel:
    """One sequence group's split of the joint sequence: `scatter` before the blocks, the attention in between,
    `gather` after them. Set on a model as `model.sequence_parallel` by `ParallelEdit.attach`."""

    def __init__(self, group, size: int, rank: int, attention: str):
        self.group, self.size, self.rank, self.attention = group, size, rank, attention
        self.length = self.padded = 0
        self.key_mask: torch.Tensor | None = None  # (1, 1, 1, padded) True where a key is a real token

    def scatter(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], temb: torch.Tensor):
        """This rank's part of the tokens x (B, L, dim), of the RoPE tables (1, L, 1, d) and of a per-token
        modulation (B, L, 6, dim) (a per-sample one, (B, 6, dim), is everyone's)."""
        n = x.shape[1]
        per = -(-n // self.size)
        self.length, self.padded = n, per * self.size
        pad = self.padded - n
        self.key_mask = None
        if pad:
            self.key_mask = (torch.arange(self.padded, device=x.device) < n).view(1, 1, 1, -1)
            x = F.pad(x, (0, 0, 0, pad))
            cos, sin = rotary
            rotary = (F.pad(cos, (0, 0, 0, 0, 0, pad), value=1.0), F.pad(sin, (0, 0, 0, 0, 0, pad)))
            if temb.dim() == 4:
                temb = F.pad(temb, (0, 0, 0, 0, 0, pad))
        part = slice(self.rank * per, (self.rank + 1) * per)
        rotary = (rotary[0][:, part], rotary[1][:, part])
        return x[:, part], rotary, (temb[:, part] if temb.dim() == 4 else temb)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's part back in order: (B, L, dim)."""
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)[:, : self.length]

    # ---- attention over the whole sequence from the parts ---------------------------------------------
    def _all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        """Chunk j of dim 0 to rank j; chunk j of the result from rank j."""
        x = x.contiguous()  # first: empty_like keeps a permuted tensor's strides, the collective writes densely
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=self.group)
        return out

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v: (B, L/S, H, d) for this rank's tokens -> attention output (B, L/S, H, d) over every token."""
        b, part, h, d = q.shape
        s = self.size
        if self.attention == "kv-gather":
            k, v = self._gather_seq(k), self._gather_seq(v)
            return _sdpa(q, k, v, self.key_mask)

        def to_heads(z: torch.Tensor) -> torch.Tensor:  # (B, L/S, H, d) -> (B, L, H/S, d)
            z = self._all_to_all(z.reshape(b, part, s, h // s, d).permute(2, 0, 1, 3, 4))  # [rank] = its tokens
            return z.permute(1, 0, 2, 3, 4).reshape(b, s * part, h // s, d)

        o = _sdpa(to_heads(q), to_heads(k), to_heads(v), self.key_mask)  # (B, L, H/S, d)
        o = self._all_to_all(o.reshape(b, s, part, h // s, d).permute(1, 0, 2, 3, 4))  # [rank] = its heads
        return o.permute(1, 2, 0, 3, 4).reshape(b, part, h, d)

    def _gather_seq(self, z: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(z) for _ in range(self.size)]
        dist.all_gather(parts, z.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, Lq, H, d) attention as diffusers' native backend computes it, with masked padding keys."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=key_mask)
    return o.transpose(1, 2)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved pairs (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)."""
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2).type_as(x)


class SequenceParallelAttention:
    """A diffusers attention processor for the blocks' self-attention (`attn1`) on a sequence part: the
    projections, q/k norms and RoPE of Wan's processor, with the attention itself over every rank's tokens."""

    def __init__(self, sp: SequenceParallel):
        self.sp = sp

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ConfigError("sequence-parallel attention is for the blocks' self-attention only")
        if getattr(attn, "fused_projections", False):
            raise ConfigError("sequence-parallel attention needs unfused q/k/v projections")
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q, k = _rotate(q, *rotary_emb), _rotate(k, *rotary_emb)
        out = self.sp.attend(q, k, v).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


class GuidanceParallel:
    """The guidance branches over `size` rank groups: branch i runs on group i % size; each branch's output
    is then broadcast from the first rank that ran it to the ranks of the other groups (`group`: this rank
    and its peers at the same sequence position in the other groups)."""

    def __init__(self, group, size: int, index: int, peers: list[int]):
        self.group, self.size, self.index, self.peers = group, size, index, peers  # peers[g]: global rank in group g

    def mine(self, n: int) -> list[int]:
        return [i for i in range(n) if i % self.size == self.index]

    def share(self, outputs: list[Any], likes: tuple[torch.Tensor, torch.Tensor | None]) -> list[Any]:
        """outputs[i]: (video, semantic) for this rank's branches, None for the others -> every branch's.
        `likes`: tensors of the shapes a branch returns (the video velocity; the semantic one or None)."""
        out = list(outputs)
        for i in range(len(out)):
            owner = self.peers[i % self.size]
            if out[i] is None:
                out[i] = tuple(None if z is None else torch.empty_like(z, dtype=torch.float32) for z in likes)
            for z in out[i]:
                if z is not None:
                    dist.broadcast(z, src=owner, group=self.group)
        return out


class ParallelEdit:
    """This rank's part of a multi-rank edit: its layout, its sequence group and guidance group."""

    def __init__(self, layout: Layout, rank: int):
        g, s = layout.guidance, layout.sequence
        self.layout, self.rank = layout, rank
        self.sequence: SequenceParallel | None = None
        self.guidance: GuidanceParallel | None = None
        self._processors: list = []  # the blocks' own self-attention processors while attached
        # every rank creates every group, in the same order (new_group is collective)
        seq_groups = [dist.new_group(list(range(i * s, (i + 1) * s))) if s > 1 else None for i in range(g)]
        gui_groups = [dist.new_group([i * s + j for i in range(g)]) if g > 1 else None for j in range(s)]
        gi, si = rank // s, rank % s
        if s > 1:
            self.sequence = SequenceParallel(seq_groups[gi], s, si, layout.attention or "ulysses")
        if g > 1:
            self.guidance = GuidanceParallel(gui_groups[si], g, gi, [i * s + si for i in range(g)])

    @property
    def writes(self) -> bool:
        """Rank 0 decodes and writes; the others only help denoise."""
        return self.rank == 0

    def attach(self, model) -> None:
        """Put the sequence split on `model`: its forward and its blocks' self-attention."""
        model.sequence_parallel = self.sequence
        if self.sequence is not None:
            self._processors = [block.attn1.processor for block in model.backbone.blocks]
            for block in model.backbone.blocks:
                block.attn1.set_processor(SequenceParallelAttention(self.sequence))

    def detach(self, model) -> None:
        """Take it off again: the model computes alone, as before `attach`."""
        model.sequence_parallel = None
        for block, processor in zip(model.backbone.blocks, getattr(self, "_processors", []), strict=False):
            block.attn1.set_processor(processor)
        self._processors = []


def guidance_branches(sampling) -> int:
    """Forwards a step needs without batching: 3 with dual guidance, 2 with classifier-free, else 1."""
    return 3 if sampling.dual else (1 if sampling.guidance == 1.0 else 2)
