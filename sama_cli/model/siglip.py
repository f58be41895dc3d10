"""The semantic encoder: a SigLIP vision tower whose patch tokens are pooled into the SAMA semantic
tokens of an anchor frame: 64 local (8x8 adaptive average pooling of the patch grid, row-major) +
1 global (mean of all patches, last) per frame (docs/sama.md §3; the release does not publish its pooling,
so the grid is configurable).

Features are the tower's `last_hidden_state` (after its post-layernorm), the representation SigLIP
exposes to downstream heads. so400m-patch14-384 gives 27x27 = 729 patches of width 1152.

Specs: a transformers SigLIP folder (`SiglipVisionModel` or a full `SiglipModel`, with its image
processor config), or `tiny` (a small random tower; `save_tiny_siglip` writes it as a real folder).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from sama_cli.core.errors import InputError, WeightsError

TINY_SIGLIP = dict(image_size=32, patch_size=4, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4)


def pool_tokens(patch_tokens: torch.Tensor, grid: int = 8) -> torch.Tensor:
    """(N, P, S) patch tokens of a square g x g patch grid -> (N, grid*grid + 1, S): adaptive-average
    pooled local tokens in row-major order, then the global mean."""
    n, p, s = patch_tokens.shape
    side = math.isqrt(p)
    if side * side != p:
        raise ValueError(f"{p} patch tokens do not form a square grid")
    x = patch_tokens.transpose(1, 2).reshape(n, s, side, side)
    local = F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)  # (N, grid^2, S)
    return torch.cat([local, patch_tokens.mean(dim=1, keepdim=True)], dim=1)


class SemanticEncoder:
    def __init__(self, model, processor, local_grid: int = 8, spec: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.local_grid = local_grid
        self.spec = spec

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def to(self, *args, **kwargs) -> SemanticEncoder:
        self.model.to(*args, **kwargs)
        return self

    def describe(self) -> dict:
        return {"spec": self.spec, "dim": self.dim, "local_grid": self.local_grid, "pooling": "adaptive-avg+mean",
                "features": "last_hidden_state"}

    @torch.no_grad()
    def __call__(self, frames_nhwc: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (N, grid^2 + 1, S) float32 semantic tokens."""
        images = [f.numpy() for f in frames_nhwc.cpu()]
        pixels = self.processor(images=images, return_tensors="pt").pixel_values
        p = next(self.model.parameters())
        hidden = self.model(pixel_values=pixels.to(p.device, p.dtype)).last_hidden_state
        return pool_tokens(hidden.float(), self.local_grid).cpu()


def _processor_class():
    """transformers 5 splits SigLIP's processor by backend; the PIL one needs no torchvision."""
    import transformers

    return getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor


def tiny_siglip(seed: int = 0):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    SiglipImageProcessor = _processor_class()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiglipVisionModel(SiglipVisionConfig(**TINY_SIGLIP))
    size = TINY_SIGLIP["image_size"]
    return model, SiglipImageProcessor(size={"height": size, "width": size})


def save_tiny_siglip(folder: str | Path, seed: int = 0) -> Path:
    model, processor = tiny_siglip(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def load_semantic_encoder(spec: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                          local_grid: int = 8) -> SemanticEncoder:
    if spec == "tiny":
        model, processor = tiny_siglip()
        return SemanticEncoder(model.to(device=device, dtype=dtype), processor, local_grid, spec)
    from transformers import SiglipVisionModel

    SiglipImageProcessor = _processor_class()
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise InputError("not a SigLIP folder (no config.json)", path=folder)
    try:
        model = SiglipVisionModel.from_pretrained(str(folder), torch_dtype=dtype)
        processor = SiglipImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot load SigLIP ({str(e).splitlines()[0]})", path=folder) from None
    return SemanticEncoder(model.to(device), processor, local_grid, spec)
