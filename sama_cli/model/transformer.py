"""The SAMA diffusion transformer: diffusers' Wan2.1 backbone plus the SAMA sequence (docs/sama.md §3).

One sequence per sample, `[source | semantic | target]`:
- source tokens: clean VAE latents through the shared patch embedding, RoPE grid from frame 0 (the
  same positions as the target; frame counts may differ);
- semantic tokens: noisy SigLIP features through the projector (no patch embedding, no grid);
- target tokens: the noisy latents being denoised.
A learned type embedding (0 source, 1 semantic, 2 target) is added to every token. The video head runs
on the target tokens; the semantic head on the semantic positions of the last block's output.

The backbone is `diffusers.WanTransformer3DModel`; we call its patch embedding, RoPE, condition
embedder, blocks, output norm and projection, and re-implement none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers import WanTransformer3DModel
from torch.utils.checkpoint import checkpoint

from sama_cli.model.config import ModelConfig

TYPE_SOURCE, TYPE_SEMANTIC, TYPE_TARGET = 0, 1, 2


class SemanticProjector(nn.Module):
    """Noisy SigLIP features (B, N, S) -> DiT tokens (B, N, dim). Release name: `siglip_feat_mlp`."""

    def __init__(self, semantic_dim: int, hidden: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(semantic_dim, eps=eps)
        self.fc1 = nn.Linear(semantic_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class SemanticHead(nn.Module):
    """Last hidden states at the semantic positions (B, N, dim) -> velocity in SigLIP space (B, N, S)."""

    def __init__(self, dim: int, semantic_dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Linear(dim, semantic_dim)
        # release initialisation (SemanticDiffusionHead)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.normal_(self.proj.bias, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


@dataclass
class SamaOutput:
    video: torch.Tensor  # (B, C, T, H, W) velocity for the target latents
    semantic: torch.Tensor | None  # (B, N, S) velocity for the semantic features, or None


class SamaTransformer(nn.Module):
    """SAMA DiT. Parameters: `backbone.*` (diffusers names), `type_embedding`, `semantic_projector`,
    `semantic_head`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = WanTransformer3DModel(**config.diffusers_kwargs())
        self.type_embedding = nn.Embedding(3, config.dim)
        # Zero-init: from a plain Wan checkpoint, step 0 is exactly the base model (docs/sama.md §3).
        nn.init.zeros_(self.type_embedding.weight)
        self.semantic_projector = SemanticProjector(
            config.semantic_dim, config.semantic_mlp_hidden, config.dim, config.eps
        )
        self.semantic_head = SemanticHead(config.dim, config.semantic_dim, config.eps)
        self.gradient_checkpointing = False
        # multi-rank editing (edit/multigpu.py): this rank runs the blocks on its part of the sequence
        self.sequence_parallel = None

    # ---- helpers ------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.backbone.patch_embedding.weight.device

    def _patchify(self, latents_bcthw: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Latents (B, C, T, H, W) -> tokens (B, t*h*w, dim) and the token grid (t, h, w)."""
        x = self.backbone.patch_embedding(latents_bcthw.to(self.dtype))  # (B, dim, t, h, w)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # type: ignore[return-value]

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Tokens (B, t*h*w, C*pt*ph*pw) -> (B, C, t*pt, h*ph, w*pw)."""
        b = tokens.shape[0]
        pt, ph, pw = self.config.patch_size
        t, h, w = grid
        x = tokens.reshape(b, t, h, w, pt, ph, pw, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, t, pt, h, ph, w, pw)
        return x.reshape(b, -1, t * pt, h * ph, w * pw)

    def _rope(self, latents_bcthw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (1, t*h*w, 1, head_dim), for a latent grid starting at frame 0."""
        return self.backbone.rope(latents_bcthw)

    def _semantic_rope(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, n, 1, like.shape[-1])
        sin = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if self.config.semantic_rope == "zero":
            # release: the semantic tokens' rotation is a complex zero, so their q and k vanish
            # (docs/sama.md §3)
            return torch.zeros_like(sin), sin
        return torch.ones_like(sin), sin

    # ---- forward ------------------------------------------------------------------------------
    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        source_latents: torch.Tensor | None = None,
        semantic_latents: torch.Tensor | None = None,
    ) -> SamaOutput:
        """
        latents:          (B, C, T, H, W) noisy target latents (normalized latent space)
        timestep:         (B,) or scalar, in [0, 1000]
        context:          (B, L, text_dim) text-encoder output (zero-padded)
        source_latents:   (B, C, Ts, H, W) clean source latents, or None (text-to-video, pretext none)
        semantic_latents: (B, N, S) noisy SigLIP features before the projector, or None
        """
        cfg = self.config
        bb = self.backbone
        b = latents.shape[0]
        timestep = torch.as_tensor(timestep, device=latents.device).reshape(-1).expand(b)

        if cfg.source_mode == "channel":
            # option: the source rides on the target's channels (same frame count); no source tokens
            src = torch.zeros_like(latents) if source_latents is None else source_latents.to(latents.dtype)
            t, ts = latents.shape[2], src.shape[2]
            if ts > t:  # a source of another length (speed pretexts): trim, or hold its last frame
                src = src[:, :, :t]
            elif ts < t:
                src = torch.cat([src, src[:, :, -1:].expand(-1, -1, t - ts, -1, -1)], dim=2)
            latents_in, source_latents = torch.cat([latents, src], dim=1), None
        else:
            latents_in = latents

        target_tokens, grid = self._patchify(latents_in)
        rope = self._rope(latents_in)
        tokens, ropes, type_ids = [], [], []
        n_src = n_sem = 0
        if source_latents is not None:
            source_tokens, _ = self._patchify(source_latents)
            n_src = source_tokens.shape[1]
            tokens.append(source_tokens)
            ropes.append(self._rope(source_latents))
            type_ids.append(torch.full((n_src,), TYPE_SOURCE))
        if semantic_latents is not None:
            semantic_tokens = self.semantic_projector(semantic_latents.to(self.dtype))
            n_sem = semantic_tokens.shape[1]
            tokens.append(semantic_tokens)
            ropes.append(self._semantic_rope(n_sem, rope[0]))
            type_ids.append(torch.full((n_sem,), TYPE_SEMANTIC))
        n_tgt = target_tokens.shape[1]
        tokens.append(target_tokens)
        ropes.append(rope)
        type_ids.append(torch.full((n_tgt,), TYPE_TARGET))

        ids = torch.cat(type_ids).to(latents.device)
        # Type embedding on every token, target included even without a source (release, docs/sama.md §3).
        x = torch.cat(tokens, dim=1) + self.type_embedding(ids).unsqueeze(0).to(self.dtype)  # (B, L, dim)
        rotary = (torch.cat([r[0] for r in ropes], dim=1), torch.cat([r[1] for r in ropes], dim=1))

        if cfg.timestep_mode == "per_token" and n_src:
            # option: clean source tokens at t=0, every other token at the sample's t. Embed the two
            # values once per sample, then index per token (the diffusers block takes (B, L, 6, dim)).
            t_pair = torch.stack([torch.zeros_like(timestep), timestep], dim=1)  # (B, 2)
            temb, tproj, ctx, _ = bb.condition_embedder(
                t_pair.flatten(), context.to(self.dtype), None, timestep_seq_len=2
            )
            which = (ids != TYPE_SOURCE).long()  # (L,) 0 -> t=0, 1 -> t
            tproj = tproj.unflatten(2, (6, -1))[:, which]  # (B, L, 6, dim)
            temb_target = temb[:, 1:2]  # (B, 1, dim): target tokens are at t
        else:
            temb, tproj, ctx, _ = bb.condition_embedder(timestep, context.to(self.dtype), None)
            tproj = tproj.unflatten(1, (6, -1))  # (B, 6, dim)
            temb_target = temb[:, None]  # (B, 1, dim)

        sp = self.sequence_parallel
        if sp is not None:  # every layer but self-attention is per token: run the blocks on this rank's part
            x, rotary, tproj = sp.scatter(x, rotary, tproj)
        for block in bb.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, ctx, tproj, rotary, use_reentrant=False)
            else:
                x = block(x, ctx, tproj, rotary)
        if sp is not None:
            x = sp.gather(x)

        semantic = self.semantic_head(x[:, n_src : n_src + n_sem]) if n_sem else None

        # Video head on the target tokens only: per-token norm + modulation + projection, so skipping
        # the other positions changes nothing (the release computes all and keeps the last n_tgt).
        h = x[:, -n_tgt:]
        shift, scale = (bb.scale_shift_table[:, None] + temb_target[:, :, None]).unbind(2)  # (B, *, dim) each
        h = (bb.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
        video = self._unpatchify(bb.proj_out(h), grid)
        return SamaOutput(video=video, semantic=semantic)

    # ---- conveniences -------------------------------------------------------------------------
    def enable_gradient_checkpointing(self, on: bool = True) -> None:
        self.gradient_checkpointing = on

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def sequence_length(self, target_shape: tuple[int, ...], source_shape: tuple[int, ...] | None) -> int:
        """Tokens in the joint sequence for latent shapes (C, T, H, W)."""
        pt, ph, pw = self.config.patch_size

        def n(shape: tuple[int, ...]) -> int:
            return (shape[-3] // pt) * (shape[-2] // ph) * (shape[-1] // pw)

        src = n(source_shape) if source_shape is not None and self.config.source_mode == "token" else 0
        return src + self.config.semantic_tokens + n(target_shape)


def build_model(config: ModelConfig, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int | None = None) -> SamaTransformer:
    """A freshly initialised SAMA model (deterministic when `seed` is given)."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SamaTransformer(config)
    else:
        model = SamaTransformer(config)
    return place(model, device=device, dtype=dtype)


def place(model: SamaTransformer, *, device: str | torch.device, dtype: torch.dtype) -> SamaTransformer:
    """Move to device/dtype, keeping the RoPE tables in at least fp32 (bf16 angles lose positions)."""
    model.to(device=device, dtype=dtype)
    if dtype in (torch.float16, torch.bfloat16):
        model.backbone.rope.float()
    return model

