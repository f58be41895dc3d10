"""Frozen encoders, each saved in its real on-disk format and loaded through the user's path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_encoders import diffusers_vae_to_original, save_wan_t5, tiny_wan_umt5, wan_t5_forward

from sama_cli.core.errors import InputError, WeightsError
from sama_cli.model.siglip import load_semantic_encoder, pool_tokens, save_tiny_siglip
from sama_cli.model.text_encoder import load_text_encoder, save_tiny_text_encoder, tiny_tokenizer
from sama_cli.model.vae import PixelCodec, load_codec, tiny_vae


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_vae_diffusers_folder_root_and_original_pth(tmp_path: Path, video) -> None:
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "vae_only")
    vae.save_pretrained(tmp_path / "Wan-Diffusers" / "vae")
    torch.save(diffusers_vae_to_original(vae.state_dict()), tmp_path / "Wan2.1_VAE.pth")
    ref = load_codec("tiny").encode(video)
    assert ref.shape == (1, 16, 3, 4, 6)  # 4x time (1+4k), 8x space, 16 channels
    for spec in ("vae_only", "Wan-Diffusers", "Wan2.1_VAE.pth"):
        codec = load_codec(str(tmp_path / spec))
        torch.testing.assert_close(codec.encode(video), ref, rtol=0, atol=0)
    # latents are normalized with the config's per-channel mean/std, and decode undoes it
    z = vae.encode(video).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(ref, (z - mean) / std)
    torch.testing.assert_close(load_codec("tiny").decode(ref), vae.decode(z, return_dict=False)[0])


def test_vae_frame_rule_and_errors(tmp_path: Path) -> None:
    codec = load_codec("tiny")
    assert [codec.valid_frames(n) for n in (1, 2, 5, 10, 13)] == [1, 5, 5, 13, 13]
    with pytest.raises(InputError, match="1\\+4k"):
        codec.encode(torch.zeros(1, 3, 10, 16, 16))
    with pytest.raises(InputError, match="VAE not found"):
        load_codec(str(tmp_path / "nowhere"))
    torch.save({"encoder.conv1.weight": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        load_codec(str(tmp_path / "bad.pth"))


def test_pixel_codec_is_exact() -> None:
    frames = torch.randint(0, 256, (1, 3, 7, 32, 48), generator=torch.Generator().manual_seed(2))
    x = frames.float() / 127.5 - 1
    for spec, s in (("pixel", 2), ("pixel:s4", 4)):
        codec = load_codec(spec)
        z = codec.encode(x)
        assert z.shape == (1, 3 * s * s, 7, 32 // s, 48 // s) and codec.valid_frames(7) == 7
        back = ((codec.decode(z) + 1) * 127.5).round().to(torch.int64)
        assert torch.equal(back, frames)
    assert PixelCodec(2).describe()["spec"] == "pixel:s2"


def test_text_encoder_folder_trims_and_pads(tmp_path: Path) -> None:
    save_tiny_text_encoder(tmp_path / "Wan-Diffusers")
    te = load_text_encoder(str(tmp_path / "Wan-Diffusers"))
    prompts = ["[Video edit] make the red circle blue", "a square"]
    embeds = te(prompts)
    counts = [len(te.tokenizer(p).input_ids) for p in prompts]
    assert [e.shape[0] for e in embeds] == counts and counts[0] > counts[1]
    assert all(torch.equal(a, b) for a, b in zip(embeds, load_text_encoder("tiny")(prompts), strict=True))
    padded = te.pad(embeds, 16)
    assert padded.shape == (2, 16, 32) and (padded[1, counts[1]:] == 0).all()
    assert torch.equal(padded[0, : counts[0]], embeds[0])
    with pytest.raises(InputError, match="text encoder not found"):
        load_text_encoder(str(tmp_path / "missing"))


def test_siglip_pooling_by_hand_and_folder(tmp_path: Path) -> None:
    patches = torch.arange(16.0).view(1, 16, 1).expand(2, 16, 3).clone()  # a 4x4 grid of values 0..15
    pooled = pool_tokens(patches, grid=2)
    assert pooled.shape == (2, 5, 3)
    assert pooled[0, :, 0].tolist() == [2.5, 4.5, 10.5, 12.5, 7.5]  # 2x2 blocks row-major, then the mean
    save_tiny_siglip(tmp_path / "siglip")
    enc = load_semantic_encoder(str(tmp_path / "siglip"), local_grid=2)
    frames = torch.randint(0, 256, (3, 40, 56, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = enc(frames)
    assert out.shape == (3, 5, 24)
    torch.testing.assert_close(out, load_semantic_encoder("tiny", local_grid=2)(frames))
    # the global token is the mean of the patch tokens, so it equals the mean of equal-size local pools
    torch.testing.assert_close(out[:, 4], out[:, :4].mean(dim=1), rtol=1e-5, atol=1e-5)
    assert load_semantic_encoder("tiny")(frames).shape == (3, 65, 24)  # 8x8 + 1 from the 8x8 patch grid
    assert json.dumps(enc.describe())


# ---- the original Wan release files -----------------------------------------------------------------
def test_wan_t5_pth_equals_the_umt5_it_came_from(tmp_path: Path) -> None:
    hf = tiny_wan_umt5(seed=3)
    pth = save_wan_t5(tmp_path / "Wan2.1-T2V-14B", hf)
    prompts = ["[Video edit] make the red circle blue", "a square over the background of a scene in winter"]
    tok = tiny_tokenizer()
    batch = tok(prompts, padding="max_length", max_length=40, return_tensors="pt")
    short = tok(prompts, padding="longest", return_tensors="pt")
    with torch.no_grad():
        ref = hf(batch.input_ids, batch.attention_mask).last_hidden_state  # the release: padded to max_length
        ref_short = hf(short.input_ids, short.attention_mask).last_hidden_state  # ours: to the longest prompt
    # the .pth (tokenizer found in google/umt5-xxl beside it) and the release folder holding it
    for spec in (pth, pth.parent):
        te = load_text_encoder(str(spec), max_length=40)
        assert te.model.config.relative_attention_max_distance == 128 and te.model.config.num_heads == 4
        embeds = te(prompts)
        counts = batch.attention_mask.sum(dim=1).tolist()
        assert [e.shape[0] for e in embeds] == counts
        for e, r, rs, n in zip(embeds, ref, ref_short, counts, strict=True):
            assert torch.equal(e, rs[:n])  # float32: the same model, exactly
            # padding is masked out: the release's 40-token padding changes only the rounding
            torch.testing.assert_close(e, r[:n], rtol=1e-5, atol=1e-5)
    # and the converted model computes what Wan's own T5 computes on the file's tensors
    wan = torch.load(pth, weights_only=True)
    mine = wan_t5_forward(wan, batch.input_ids, batch.attention_mask)
    for m, e, n in zip(mine, embeds, counts, strict=True):
        torch.testing.assert_close(e, m[:n], rtol=1e-5, atol=1e-5)


def test_wan_t5_bf16_file_and_errors(tmp_path: Path) -> None:
    hf = tiny_wan_umt5(seed=4)
    pth = save_wan_t5(tmp_path / "root", hf, dtype=torch.bfloat16)  # as Wan ships it
    te = load_text_encoder(str(pth), dtype=torch.float32, max_length=16)
    assert te.model.dtype == torch.float32
    assert te.model.encoder.embed_tokens.weight is te.model.shared.weight  # tied, as in UMT5
    rounded = {k: v.to(torch.bfloat16).float() for k, v in hf.state_dict().items()}
    assert all(torch.equal(te.model.state_dict()[k], rounded[k]) for k in rounded)
    # a tokenizer given explicitly, from anywhere
    shutil.move(tmp_path / "root" / "google", tmp_path / "elsewhere")
    with pytest.raises(InputError, match="no UMT5 tokenizer beside models_t5_umt5-xxl-enc-bf16.pth"):
        load_text_encoder(str(pth))
    te = load_text_encoder(str(pth), tokenizer=tmp_path / "elsewhere" / "umt5-xxl", max_length=16)
    assert te(["a square"])[0].shape == (3, 32)
    # a file in Wan's names with a block missing, or not a T5 at all
    sd = torch.load(pth, weights_only=True)
    torch.save({k: v for k, v in sd.items() if k != "blocks.1.ffn.fc2.weight"}, tmp_path / "root" / "cut.pth")
    tiny_tokenizer().save_pretrained(tmp_path / "root" / "tokenizer")
    with pytest.raises(WeightsError, match=r"cut\.pth: .*1 tensors missing.*\(missing blocks\.1\.ffn\.fc2\.weight\)"):
        load_text_encoder(str(tmp_path / "root" / "cut.pth"))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "root" / "other.pth")
    with pytest.raises(WeightsError, match=r"other\.pth: not Wan's UMT5 encoder: no token_embedding\.weight"):
        load_text_encoder(str(tmp_path / "root" / "other.pth"))


def test_wan_t5_pth_is_read_weights_only_and_mapped(tmp_path: Path, monkeypatch) -> None:
    """The 11 GB T5 file is never unpickled as code, and is paged in rather than read up front."""
    pth = save_wan_t5(tmp_path / "root", tiny_wan_umt5(), dtype=torch.bfloat16)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_text_encoder(str(pth), max_length=16)
    assert calls and all(c.get("weights_only") is True and c.get("mmap") is True for c in calls)


def test_vae_from_an_original_wan_folder(tmp_path: Path, video) -> None:
    """A Wan release folder's config.json is the DiT's: the VAE comes from its Wan2.1_VAE.pth."""
    root = tmp_path / "Wan2.1-T2V-14B"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": 48}))
    torch.save(diffusers_vae_to_original(tiny_vae().state_dict()), root / "Wan2.1_VAE.pth")
    torch.testing.assert_close(load_codec(str(root)).encode(video), load_codec("tiny").encode(video), rtol=0, atol=0)
    (root / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(InputError, match="config.json describes WanModel, not AutoencoderKLWan"):
        load_codec(str(root))
