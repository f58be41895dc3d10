"""The frozen text encoder: UMT5 (Wan's `text_encoder/` + `tokenizer/`), as Wan's pipeline uses it.

Prompts are cleaned as Wan's tokenizer cleans them (`clean_prompt`: ftfy, HTML unescape, whitespace), tokenized to 512 tokens with padding and truncation, encoded, and
each embedding trimmed to its real token count (docs/sama.md §2); `pad` zero-pads them back to a fixed length
for the DiT, exactly as diffusers' WanPipeline does.

Specs: a diffusers-format Wan root (`text_encoder/` + `tokenizer/`), a transformers folder holding
both, an original Wan release folder or its `models_t5_umt5-xxl-enc-bf16.pth` (Wan's own T5 module
names, converted to `UMT5EncoderModel`; tokenizer from `google/umt5-xxl/` beside it), or `tiny` (a
small random UMT5 with an offline word-level tokenizer; `save_tiny_text_encoder` writes it as a real
folder that loads through the same path).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch

from sama_cli.core.errors import InputError, WeightsError

# Words of the toy world and of common edit instructions: the tiny tokenizer's vocabulary.
TINY_WORDS = (
    "a an the and of to in on with it its is are over at by from into as make turn change replace remove "
    "delete add put paint recolour recolor color colour colours colors background foreground style video "
    "edit complete missing regions shuffled restore speed normal play slower faster order frames scene "
    "moving bouncing object objects shape shapes circle square triangle red green blue yellow magenta cyan "
    "white black orange purple gray grey grayscale invert inverted negative winter summer night day "
    "gradient flat left right top bottom small large big one two three [ ] . , : "
    "across all around drifting middle navy out place take"
).split()
TINY_TEXT_DIM = 32
TINY_LOCAL_BIAS = 10.0  # attention logit bias of the tiny encoder's word-order heads (tiny_umt5)

# An original Wan2.1 release folder (Wan-AI/Wan2.1-T2V-14B): the encoder half of UMT5-XXL in Wan's own
# module names (wan/modules/t5.py), and the tokenizer in a folder named after its hub id.
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
# Wan's T5 hard-codes these (T5RelativeEmbedding max_dist, T5LayerNorm eps); the shapes do not show them.
WAN_T5_MAX_DISTANCE = 128
WAN_T5_EPS = 1e-6
# Wan block i -> UMT5 `encoder.block.i.`: layer 0 is attention, layer 1 the gated feed-forward, whose
# GELU-tanh branch is Wan's `gate.0` (UMT5 wi_0) and linear branch `fc1` (wi_1). shared_pos=False:
# every block has its own relative bias, as in UMT5.
_WAN_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


def clean_prompt(text: str) -> str:
    """A prompt as Wan's tokenizer sees it (release: diffsynth/prompters/wan_prompter.py, WanPrompter's
    `clean='whitespace'`, i.e. `whitespace_clean(basic_clean(text))`): ftfy.fix_text (mojibake, curly
    quotes, ligatures, full-width letters, ...), HTML unescape twice, strip, then every run of whitespace
    becomes one space, stripped. Every encoder (UMT5 and `tiny`) cleans: the toy world's captions are
    plain single-spaced ASCII, which the cleaning leaves as they are. ftfy is imported here, not at module
    import, so that `sama --help` stays light."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


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
        """Each prompt's embedding, (L_i, D) with L_i its real token count (special tokens included).

        Padded to the longest prompt of the batch, not to `max_length` as the release does: the attention mask
        keeps pad tokens out of every real token's output, so the real tokens come out the same, and a 12-word
        prompt costs 13 positions instead of 512 (the relative-position bias alone is quadratic in them)."""
        tok = self.tokenizer([clean_prompt(p) for p in prompts], padding="longest", max_length=self.max_length,
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
        model = UMT5EncoderModel(cfg)
    # Word order. A random UMT5's relative-position bias is near zero, so each output token is nearly its word
    # alone: "make the red circle magenta" and "make the magenta circle red" gave the same bag of vectors
    # (cosine 0.995 between the two "red"s) and the DiT could not tell the old colour from the new one. Each
    # layer's bias is set so that head 0 attends to the previous word, head 1 to the next and heads 2-3 to the
    # word itself: the two "red"s now differ (cosine 0.16), while "circle" and "square" stay apart.
    att = model.encoder.block[0].layer[0].SelfAttention
    buckets = att._relative_position_bucket(torch.tensor([-1, 1, 0, 0])).tolist()
    with torch.no_grad():
        for block in model.encoder.block:
            bias = block.layer[0].SelfAttention.relative_attention_bias.weight  # (buckets, heads)
            bias.zero_()
            for head, bucket in enumerate(buckets):
                bias[bucket, head] = TINY_LOCAL_BIAS
    return model


def save_tiny_text_encoder(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny text encoder in the diffusers Wan layout: `text_encoder/` + `tokenizer/`."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    tiny_umt5(len(tok), seed).save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    return folder


# ---- Wan's original T5 file -----------------------------------------------------------------------
def wan_t5_to_umt5(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's T5 encoder names -> `UMT5EncoderModel` names. Keys it does not know pass through
    unchanged, so that loading reports them as unexpected."""
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
        if key == "token_embedding.weight":
            out["shared.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif m and m[2] in _WAN_T5_BLOCK:
            out[f"encoder.block.{m[1]}.{_WAN_T5_BLOCK[m[2]]}"] = value
        else:
            out[key] = value
    return out


def _wan_t5_name(umt5_key: str) -> str:
    m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", umt5_key)
    inverse = {v: k for k, v in _WAN_T5_BLOCK.items()}
    if m and m[2] in inverse:
        return f"blocks.{m[1]}.{inverse[m[2]]}"
    return {"shared.weight": "token_embedding.weight", "encoder.final_layer_norm.weight": "norm.weight"}.get(
        umt5_key, umt5_key)


def umt5_config_from_weights(sd_umt5: dict[str, torch.Tensor]):
    """The `UMT5Config` of converted Wan T5 weights, read off the tensor shapes: the head count is the
    relative bias table's second dim (buckets, heads); d_kv = q rows / heads (64 for XXL)."""
    from transformers import UMT5Config

    prefix = "encoder.block.0.layer."
    vocab, d_model = sd_umt5["shared.weight"].shape
    buckets, heads = sd_umt5[prefix + "0.SelfAttention.relative_attention_bias.weight"].shape
    inner = sd_umt5[prefix + "0.SelfAttention.q.weight"].shape[0]
    if inner % heads:
        raise ValueError(f"attention width {inner} is not a multiple of {heads} heads")
    layers = 1 + max(int(m[1]) for k in sd_umt5 if (m := re.match(r"encoder\.block\.(\d+)\.", k)))
    return UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads, num_heads=heads,
                      d_ff=sd_umt5[prefix + "1.DenseReluDense.wi_1.weight"].shape[0], num_layers=layers,
                      relative_attention_num_buckets=buckets, relative_attention_max_distance=WAN_T5_MAX_DISTANCE,
                      layer_norm_epsilon=WAN_T5_EPS, feed_forward_proj="gated-gelu", dropout_rate=0.0)


def load_wan_t5(path: str | Path):
    """`UMT5EncoderModel` from Wan's `models_t5_umt5-xxl-enc-bf16.pth`, in the file's dtype. The
    model is built on the meta device and takes the (memory-mapped) tensors as they are."""
    from transformers import UMT5EncoderModel

    from sama_cli.model.weights import load_pth, name_some

    path = Path(path)
    sd = wan_t5_to_umt5(load_pth(path))
    try:
        config = umt5_config_from_weights(sd)
    except KeyError as e:
        raise WeightsError(f"not Wan's UMT5 encoder: no {_wan_t5_name(e.args[0])}", path=path) from None
    except ValueError as e:
        raise WeightsError(f"not Wan's UMT5 encoder: {e}", path=path) from None
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    sd.pop("encoder.embed_tokens.weight", None)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    missing = [_wan_t5_name(k) for k in expected if k not in sd]  # named as the file would name them
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = f"missing {name_some(missing)}" if missing else f"unexpected {name_some(unexpected)}"
        raise WeightsError(f"not Wan's UMT5 encoder: {len(missing)} tensors missing, {len(unexpected)} "
                           f"unexpected ({what})", path=path)
    bad = [k for k in expected if tuple(sd[k].shape) != tuple(expected[k])]
    if bad:
        raise WeightsError(f"not Wan's UMT5 encoder: shape mismatch for {bad[0]}: file {tuple(sd[bad[0]].shape)} vs "
                           f"model {tuple(expected[bad[0]])}", path=path)
    model.load_state_dict(sd, strict=False, assign=True)
    model.encoder.embed_tokens = model.shared  # tied in UMT5; Wan stores the table once
    return model


def _wan_tokenizer_dir(t5_file: Path) -> Path:
    """Where the tokenizer of a Wan T5 file is: `google/umt5-xxl/` beside it (Wan's layout), a
    `tokenizer/` folder, or the file's own folder."""
    folder = t5_file.parent
    for candidate in (folder / WAN_TOKENIZER_DIR, folder / "tokenizer", folder):
        if any((candidate / f).is_file() for f in _TOKENIZER_FILES):
            return candidate
    raise InputError(f"no UMT5 tokenizer beside {t5_file.name}: put the {WAN_TOKENIZER_DIR} tokenizer folder "
                     f"there (as Wan ships it) or a tokenizer/ folder", path=folder)


def _find_wan_t5(folder: Path) -> Path | None:
    if (folder / WAN_T5_FILE).is_file():
        return folder / WAN_T5_FILE
    found = sorted(folder.glob("models_t5_*.pth"))
    return found[0] if found else None


def load_text_encoder(spec: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      max_length: int = 512, tokenizer: str | Path | None = None) -> TextEncoder:
    """A text encoder from a spec (see the module docstring); `tokenizer` overrides where its
    tokenizer is read from."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    if spec == "tiny":
        tok = tiny_tokenizer()
        return TextEncoder(tok, tiny_umt5(len(tok)).to(device=device, dtype=dtype), max_length)
    root = Path(spec)
    if root.is_file():
        t5_file = root
    elif root.is_dir() and not (root / "text_encoder").is_dir():
        t5_file = _find_wan_t5(root)  # an original Wan release folder
    else:
        t5_file = None
    if t5_file is None and not root.is_dir():
        raise InputError(f"text encoder not found (a Wan diffusers root, a UMT5 folder, a Wan release folder or "
                         f"its {WAN_T5_FILE}, or tiny)", path=root)
    if t5_file is not None:
        if t5_file.suffix not in (".pth", ".pt", ".bin"):
            raise InputError(f"not a text encoder file: give {WAN_T5_FILE} or a UMT5 folder", path=t5_file)
        tok_dir = Path(tokenizer) if tokenizer else _wan_tokenizer_dir(t5_file)
        model = load_wan_t5(t5_file)
    else:
        tok_dir = Path(tokenizer) if tokenizer else root / "tokenizer" if (root / "tokenizer").is_dir() else root
        model = None
    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot load a UMT5 tokenizer ({str(e).splitlines()[0]})", path=tok_dir) from None
    if model is None:
        model_dir = root / "text_encoder" if (root / "text_encoder").is_dir() else root
        try:
            model = UMT5EncoderModel.from_pretrained(str(model_dir), torch_dtype=dtype)
        except (OSError, ValueError) as e:
            raise WeightsError(f"cannot load a UMT5 encoder ({str(e).splitlines()[0]})", path=model_dir) from None
    if model.config.vocab_size < len(tok):
        raise WeightsError(f"the tokenizer has {len(tok)} tokens but the encoder only {model.config.vocab_size}: "
                           "they do not belong together", path=tok_dir)
    return TextEncoder(tok, model.to(device=device, dtype=dtype), max_length)
