"""The frozen text encoder: UMT5 (Wan's `text_encoder/` + `tokenizer/`), as Wan's pipeline uses it.

Prompts are cleaned (whitespace), tokenized to 512 tokens with padding and truncation, encoded, and
each embedding trimmed to its real token count (SPEC §2); `pad` zero-pads them back to a fixed length
for the DiT, exactly as diffusers' WanPipeline does.

Specs: a diffusers-format Wan root (`text_encoder/` + `tokenizer/`), a transformers folder holding
both, or `tiny` (a small random UMT5 with an offline word-level tokenizer; `save_tiny_text_encoder`
writes it as a real folder that loads through the same path).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch

from sama_cli.errors import InputError, WeightsError

# Words of the toy world and of common edit instructions: the tiny tokenizer's vocabulary.
TINY_WORDS = (
    "a an the and of to in on with it its is are over at by from into as make turn change replace remove "
    "delete add put paint recolour recolor color colour colours colors background foreground style video "
    "edit complete missing regions shuffled restore speed normal play slower faster order frames scene "
    "moving bouncing object objects shape shapes circle square triangle red green blue yellow magenta cyan "
    "white black orange purple gray grey grayscale invert inverted negative winter summer night day "
    "gradient flat left right top bottom small large big one two three [ ] . , :"
).split()
TINY_TEXT_DIM = 32


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning without ftfy: HTML unescape and collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class TextEncoder:
    def __init__(self, tokenizer, model, max_length: int = 512):
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    def to(self, *args, **kwargs) -> TextEncoder:
        self.model.to(*args, **kwargs)
        return self

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> list[torch.Tensor]:
        """Each prompt's embedding, (L_i, D) with L_i its real token count (special tokens included)."""
        tok = self.tokenizer([clean_prompt(p) for p in prompts], padding="max_length", max_length=self.max_length,
                             truncation=True, add_special_tokens=True, return_attention_mask=True,
                             return_tensors="pt")
        p = next(self.model.parameters())
        ids, mask = tok.input_ids.to(p.device), tok.attention_mask.to(p.device)
        hidden = self.model(ids, mask).last_hidden_state
        lengths = mask.gt(0).sum(dim=1).tolist()
        return [h[:n].float().cpu() for h, n in zip(hidden, lengths, strict=True)]

    def pad(self, embeds: list[torch.Tensor], max_len: int | None = None) -> torch.Tensor:
        """(B, max_len, D): each embedding followed by zeros (Wan's layout)."""
        max_len = max_len or self.max_length
        out = embeds[0].new_zeros(len(embeds), max_len, embeds[0].shape[-1])
        for i, e in enumerate(embeds):
            n = min(max_len, e.shape[0])
            out[i, :n] = e[:n]
        return out


def tiny_tokenizer():
    """A deterministic word-level tokenizer built offline (no download), with T5's pad/eos/unk ids."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in TINY_WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_umt5(vocab_size: int, seed: int = 0, d_model: int = TINY_TEXT_DIM):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UMT5EncoderModel(cfg)


def save_tiny_text_encoder(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny text encoder in the diffusers Wan layout: `text_encoder/` + `tokenizer/`."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    tiny_umt5(len(tok), seed).save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    return folder


def load_text_encoder(spec: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      max_length: int = 512) -> TextEncoder:
    from transformers import AutoTokenizer, UMT5EncoderModel

    if spec == "tiny":
        tok = tiny_tokenizer()
        return TextEncoder(tok, tiny_umt5(len(tok)).to(device=device, dtype=dtype), max_length)
    root = Path(spec)
    if not root.is_dir():
        raise InputError("text encoder folder not found (a Wan diffusers root, a UMT5 folder, or tiny)", path=root)
    model_dir = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else root
    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        model = UMT5EncoderModel.from_pretrained(str(model_dir), torch_dtype=dtype)
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot load a UMT5 tokenizer + encoder ({str(e).splitlines()[0]})", path=root) from None
    return TextEncoder(tok, model.to(device), max_length)
