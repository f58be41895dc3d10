"""Video codecs behind one interface: the Wan VAE (diffusers' AutoencoderKLWan) and a lossless
`pixel` codec for the toy world.

Every codec maps video in [-1, 1] `(B, 3, T, H, W)` to *normalized* latents `(B, C, t, h, w)` and
back. For the Wan VAE the latents given to the DiT are `(z - latents_mean) / latents_std` per channel
(docs/sama.md §2), z being the posterior mode (deterministic); frame counts must be 1+4k (`valid_frames`
rounds up; callers pad by repeating the last frame and record it).

Specs for `load_codec`:
    /path/Wan2.1-T2V-14B-Diffusers   diffusers root (uses its vae/ subfolder)
    /path/Wan2.1-T2V-14B             an original Wan release folder (uses its Wan2.1_VAE.pth)
    /path/vae                        a diffusers AutoencoderKLWan folder (config.json + weights)
    /path/Wan2.1_VAE.pth             the original Wan VAE file (torch.load weights_only=True, keys
                                     converted with diffusers' convert_wan_vae_to_diffusers)
    tiny                             a small random AutoencoderKLWan (16 channels, 4x/8x) for tests
    pixel, pixel:s4                  lossless space-to-depth by s (default 2), every frame kept
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sama_cli.core.errors import InputError, WeightsError
from sama_cli.io.frames import frames_up

# The pixel codec's fixed normalization: uint8 video in [-1, 1] has std ~0.58 for uniform content;
# dividing by 0.5 brings latents near unit scale without depending on the data.
PIXEL_SCALE = 0.5
# The real VAE's layout (4 levels, 2 residual blocks each; diffusers' original-key converter assumes
# it) at a width of 8 instead of 96.
TINY_VAE_CONFIG = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                       temperal_downsample=[False, True, True])
# The VAE's file name in an original Wan2.1 release folder (Wan-AI/Wan2.1-T2V-14B).
WAN_VAE_FILE = "Wan2.1_VAE.pth"


class PixelCodec:
    """Space-to-depth by `s`: (B, 3, T, H, W) -> (B, 3 s^2, T, H/s, W/s), scaled by 1/PIXEL_SCALE.
    Exact: decode(encode(x)) == x bit for bit, so the toy world's ground truth survives encoding."""

    name = "pixel"
    temporal_factor = 1

    def __init__(self, s: int = 2):
        if s < 1:
            raise InputError(f"pixel codec factor must be positive, not {s}")
        self.spatial_factor = s
        self.latent_channels = 3 * s * s

    def valid_frames(self, n: int) -> int:
        return n

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        s = self.spatial_factor
        if h % s or w % s:
            raise InputError(f"pixel codec needs sides divisible by {s}, got {h}x{w}")
        x = video.reshape(b, c, t, h // s, s, w // s, s).permute(0, 1, 4, 6, 2, 3, 5)  # (B, C, s, s, T, h, w)
        return x.reshape(b, c * s * s, t, h // s, w // s) / PIXEL_SCALE

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, cs, t, h, w = latents.shape
        s = self.spatial_factor
        x = (latents * PIXEL_SCALE).reshape(b, cs // (s * s), s, s, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
        return x.reshape(b, cs // (s * s), t, h * s, w * s)

    def describe(self) -> dict[str, Any]:
        return {"name": "pixel", "spec": f"pixel:s{self.spatial_factor}", "latent_channels": self.latent_channels,
                "temporal_factor": 1, "spatial_factor": self.spatial_factor, "scale": PIXEL_SCALE}

    def to(self, *args, **kwargs) -> PixelCodec:
        return self


class WanCodec:
    """diffusers' AutoencoderKLWan with Wan's latent normalization."""

    name = "wan"

    def __init__(self, vae, spec: str):
        self.vae = vae.eval().requires_grad_(False)
        self.spec = spec
        cfg = vae.config
        self.latent_channels = cfg.z_dim
        self.temporal_factor = cfg.scale_factor_temporal or 4
        self.spatial_factor = cfg.scale_factor_spatial or 8
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def valid_frames(self, n: int) -> int:
        return frames_up(n, self.temporal_factor)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        t = video.shape[2]
        if (t - 1) % self.temporal_factor:
            raise InputError(f"the Wan VAE needs 1+{self.temporal_factor}k frames, got {t} (pad first)")
        p = next(self.vae.parameters())
        z = self.vae.encode(video.to(p.device, p.dtype)).latent_dist.mode()
        mean, std = self._stats(z)
        return ((z - mean) / std).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        z = latents.to(p.device, p.dtype)
        mean, std = self._stats(z)
        return self.vae.decode(z * std + mean, return_dict=False)[0].float()

    def describe(self) -> dict[str, Any]:
        return {"name": "wan", "spec": self.spec, "latent_channels": self.latent_channels,
                "temporal_factor": self.temporal_factor, "spatial_factor": self.spatial_factor}

    def to(self, *args, **kwargs) -> WanCodec:
        self.vae.to(*args, **kwargs)
        return self


def tiny_vae(seed: int = 0):
    """A small random AutoencoderKLWan with the real one's layout rules (16 channels, 4x time, 8x space)."""
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKLWan(**TINY_VAE_CONFIG)


def _load_original_vae(path: Path):
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from sama_cli.model.weights import load_pth

    converted = convert_wan_vae_to_diffusers(load_pth(path))
    try:  # Wan2.1's VAE is diffusers' default config; only the widths are read off the weights
        widths = dict(base_dim=converted["encoder.conv_in.weight"].shape[0],
                      z_dim=converted["post_quant_conv.weight"].shape[0])
    except KeyError as e:
        raise WeightsError(f"not a Wan VAE state dict (no {e})", path=path) from None
    with torch.device("meta"):
        vae = AutoencoderKLWan(**widths)
    missing, unexpected = vae.load_state_dict(converted, strict=False, assign=True)
    if missing or unexpected:
        raise WeightsError(f"not a Wan2.1 VAE: {len(missing)} missing, {len(unexpected)} unexpected keys "
                           f"(e.g. {(missing or unexpected)[0]})", path=path)
    return vae


def _config_class(path: Path) -> str | None:
    import json

    try:
        return json.loads(path.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def load_codec(spec: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               tiling: bool = False):
    """A codec from a spec (see the module docstring)."""
    spec = str(spec)
    if spec == "pixel" or spec.startswith("pixel:s"):
        return PixelCodec(int(spec.split(":s", 1)[1]) if ":s" in spec else 2)
    if spec == "tiny":
        vae = tiny_vae()
    else:
        from diffusers import AutoencoderKLWan

        p = Path(spec)
        if not p.exists():
            raise InputError("VAE not found (give a diffusers folder, Wan2.1_VAE.pth, tiny or pixel)", path=p)
        if p.is_dir() and not (p / "vae" / "config.json").is_file() and (p / WAN_VAE_FILE).is_file():
            p = p / WAN_VAE_FILE  # an original Wan release folder; its config.json is the DiT's
        if p.is_file() and p.suffix in (".pth", ".pt", ".bin", ".ckpt"):
            vae = _load_original_vae(p)
        elif p.is_file():
            raise InputError(f"not a VAE file: give {WAN_VAE_FILE} or a diffusers VAE folder", path=p)
        else:
            if (p / "vae" / "config.json").is_file():
                p = p / "vae"
            if not (p / "config.json").is_file():
                raise InputError(f"not a VAE: no config.json, vae/ or {WAN_VAE_FILE} here (pass --vae)", path=p)
            kind = _config_class(p / "config.json")
            if kind not in (None, "AutoencoderKLWan"):
                raise InputError(f"config.json describes {kind}, not AutoencoderKLWan: not a "
                                 f"VAE folder (pass --vae: a diffusers VAE folder or {WAN_VAE_FILE})", path=p)
            try:
                vae = AutoencoderKLWan.from_pretrained(str(p))
            except (OSError, ValueError) as e:
                raise WeightsError(f"cannot load the VAE ({e})", path=p) from None
    vae = vae.to(device=device)
    if next(vae.parameters()).dtype != dtype:  # diffusers warns on every dtype cast, even a no-op one
        vae = vae.to(dtype=dtype)
    if tiling:
        vae.enable_tiling()
    return WanCodec(vae, spec)
