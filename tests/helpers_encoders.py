"""Writing tiny encoders in the *original* Wan release layout: the VAE as Wan2.1_VAE.pth (the inverse
of diffusers' convert_wan_vae_to_diffusers for the real 4-level, 2-residual-block layout) and the T5
as models_t5_umt5-xxl-enc-bf16.pth + google/umt5-xxl/, with Wan's T5 forward as a reference."""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

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


# ---- Wan's original T5 file (models_t5_umt5-xxl-enc-bf16.pth) ---------------------------------------
# Written from Wan's module (wan/modules/t5.py: T5Encoder with shared_pos=False), independently of the
# loader's table, so that a naming slip in either shows up.
def umt5_to_wan_t5(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `UMT5EncoderModel` state dict in Wan's own T5 names (the embedding stored once)."""
    out = {"token_embedding.weight": sd["shared.weight"], "norm.weight": sd["encoder.final_layer_norm.weight"]}
    for key, v in sd.items():
        m = re.fullmatch(r"encoder\.block\.(\d+)\.layer\.(\d)\.(.+)", key)
        if not m:
            continue
        i, sub = m[1], (m[2], m[3])
        name = {
            ("0", "layer_norm.weight"): "norm1.weight",
            ("0", "SelfAttention.relative_attention_bias.weight"): "pos_embedding.embedding.weight",
            ("1", "layer_norm.weight"): "norm2.weight",
            ("1", "DenseReluDense.wi_0.weight"): "ffn.gate.0.weight",
            ("1", "DenseReluDense.wi_1.weight"): "ffn.fc1.weight",
            ("1", "DenseReluDense.wo.weight"): "ffn.fc2.weight",
        }.get(sub) or "attn." + sub[1].removeprefix("SelfAttention.")
        out[f"blocks.{i}.{name}"] = v
    return out


def tiny_wan_umt5(seed: int = 0):
    """A tiny random UMT5 encoder with Wan's fixed T5 settings (max distance 128, eps 1e-6, gated GELU)
    and the tiny tokenizer's vocabulary."""
    from transformers import UMT5Config, UMT5EncoderModel

    from sama_cli.model.text_encoder import tiny_tokenizer

    cfg = UMT5Config(vocab_size=len(tiny_tokenizer()), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=128, dropout_rate=0.0,
                     layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UMT5EncoderModel(cfg).eval()


def save_wan_t5(folder, model, dtype: torch.dtype = torch.float32):
    """Write `model` as Wan ships its text encoder: the .pth in Wan's names + `google/umt5-xxl/`."""
    from pathlib import Path

    from sama_cli.model.text_encoder import tiny_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wan = {k: v.detach().to(dtype).clone() for k, v in umt5_to_wan_t5(model.state_dict()).items()}
    torch.save(wan, folder / "models_t5_umt5-xxl-enc-bf16.pth")
    tiny_tokenizer().save_pretrained(folder / "google" / "umt5-xxl")
    return folder / "models_t5_umt5-xxl-enc-bf16.pth"


def wan_t5_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor,
                   max_dist: int = 128, eps: float = 1e-6) -> torch.Tensor:
    """Wan's T5 encoder forward on its own state dict, (B, L) ids -> (B, L, D): relative position
    buckets, unscaled attention with a per-block bias, GELU-tanh gated feed-forward, RMS norms."""
    b, n = ids.shape
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # key position - query position
    half = buckets // 2  # bidirectional: one half of the buckets per direction
    exact = half // 2
    far = exact + (torch.log(rel.abs().float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    bucket = (rel > 0).long() * half + torch.where(rel.abs() < exact, rel.abs(), far.clamp(max=half - 1))

    def norm(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps))

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))

    x = sd["token_embedding.weight"][ids]
    for i in range(layers):
        p = f"blocks.{i}."
        bias = sd[p + "pos_embedding.embedding.weight"][bucket].permute(2, 0, 1).unsqueeze(0)  # (1, N, L, L)
        bias = bias.expand(b, -1, -1, -1).masked_fill(mask.view(b, 1, 1, n) == 0, torch.finfo(x.dtype).min)
        h = norm(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(h, sd[p + f"attn.{w}.weight"]).view(b, n, heads, -1) for w in "qkv")
        attn = (torch.einsum("binc,bjnc->bnij", q, k) + bias).softmax(dim=-1)
        x = x + F.linear(torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, n, -1), sd[p + "attn.o.weight"])
        h = norm(x, sd[p + "norm2.weight"])
        gated = F.linear(h, sd[p + "ffn.fc1.weight"]) * gelu_tanh(F.linear(h, sd[p + "ffn.gate.0.weight"]))
        x = x + F.linear(gated, sd[p + "ffn.fc2.weight"])
    return norm(x, sd["norm.weight"])
