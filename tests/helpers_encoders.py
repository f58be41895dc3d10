"""Writing a tiny Wan VAE in the *original* Wan2.1_VAE.pth key layout (the inverse of diffusers'
convert_wan_vae_to_diffusers for the real 4-level, 2-residual-block layout)."""

from __future__ import annotations

import re

import torch

_RES = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
        "conv2": "residual.6", "conv_shortcut": "shortcut"}


def _res(name: str) -> str:
    for d, o in _RES.items():
        if name.startswith(d):
            return o + name[len(d):]
    return name


def diffusers_vae_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, v in sd.items():
        k = key
        fixed = {"encoder.conv_in.": "encoder.conv1.", "decoder.conv_in.": "decoder.conv1.",
                 "quant_conv.": "conv1.", "post_quant_conv.": "conv2.",
                 "encoder.norm_out.gamma": "encoder.head.0.gamma", "encoder.conv_out.": "encoder.head.2.",
                 "decoder.norm_out.gamma": "decoder.head.0.gamma", "decoder.conv_out.": "decoder.head.2."}
        for d, o in fixed.items():
            if k.startswith(d):
                k = o + k[len(d):]
                break
        if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", k):
            k = f"{m[1]}.middle.{2 * int(m[2])}.{_res(m[3])}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k):
            k = f"{m[1]}.middle.1.{m[2]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.(.*)", k):
            k = f"encoder.downsamples.{m[1]}.{_res(m[2])}"
        elif m := re.match(r"decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.*)", k):
            k = f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{_res(m[3])}"
        elif m := re.match(r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.(.*)", k):
            k = f"decoder.upsamples.{4 * int(m[1]) + 3}.{m[2]}"
        out[k] = v
    return out
