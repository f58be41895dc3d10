"""`sama edit` end to end with tiny models saved in the real on-disk formats."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REAL_FIXTURES

from sama_cli.core.errors import ConfigError, StorageError
from sama_cli.edit.editor import EditRequest, EditSettings, ModelDefaults, edit_batch, manifest_rows
from sama_cli.edit.loading import load_editor
from sama_cli.edit.sampler import SamplingConfig
from sama_cli.io.video import probe, read_video, resize_frames, write_video
from sama_cli.model.config import from_preset
from sama_cli.model.text_encoder import save_tiny_text_encoder
from sama_cli.model.transformer import SamaTransformer, build_model
from sama_cli.model.vae import tiny_vae
from sama_cli.model.weights import export_release, save_checkpoint

REPO = Path(__file__).resolve().parent.parent
CLIP = REAL_FIXTURES / "remove-04-source.mp4"
FAST = ["--steps", "2", "--size", "64x32", "--max-frames", "9", "--device", "cpu"]


def sama(*args, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=None if env is None else {**os.environ, **env})


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict[str, Path]:
    """A sama checkpoint that records its VAE and text encoder, a diffusers-format Wan root, and the
    same SAMA weights in the release layout."""
    root = tmp_path_factory.mktemp("kit")
    # Wan's text length and 65 semantic tokens, which a model loaded from a Wan base also gets
    model = build_model(from_preset("tiny", text_len=512, semantic_local_grid=8), seed=0)
    with torch.no_grad():
        model.type_embedding.weight.normal_(0, 0.1)
    ckpt = save_checkpoint(model, root / "ckpt", meta={"codec": "vae", "text_encoder": "."})
    tiny_vae().save_pretrained(ckpt / "vae")
    save_tiny_text_encoder(ckpt)
    wan = root / "Wan-Diffusers"
    model.backbone.save_pretrained(wan / "transformer")
    shutil.copytree(ckpt / "vae", wan / "vae")
    shutil.copytree(ckpt / "text_encoder", wan / "text_encoder")
    shutil.copytree(ckpt / "tokenizer", wan / "tokenizer")
    release = export_release(model, root / "sama_release.safetensors")
    bigger = build_model(from_preset("tiny", dim=64, num_heads=4, text_len=512, semantic_local_grid=8), seed=0)
    wrong = export_release(bigger, root / "wrong_size.safetensors")
    return {"ckpt": ckpt, "wan": wan, "release": release, "wrong": wrong, "root": root}


def test_edit_with_our_checkpoint_keeps_length_and_fps(kit, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    res = sama("edit", CLIP, "remove the cup", "-o", out, "--model", kit["ckpt"], "--side-by-side", "--json", *FAST)
    assert res.returncode == 0, res.stderr
    info = probe(out)
    src = probe(CLIP)
    assert info.frames == 9 and info.fps == src.fps and (info.height, info.width) == (64, 32)
    summary = json.loads(res.stdout)
    assert summary["frames"] == 9 and summary["steps"] == 2 and summary["padded_frames"] == 0
    assert set(summary["seconds"]) >= {"text", "encode", "denoise", "decode", "io", "total"}
    assert probe(out.with_suffix(".sbs.mp4")).width == 64  # source | edit


def test_release_weights_on_a_diffusers_base_give_the_same_edit(kit) -> None:
    """Same weights through two loading paths (our checkpoint; release layout on a Wan diffusers root
    that also supplies the VAE and text encoder): the same edit, exactly."""
    frames = resize_frames(read_video(CLIP, max_frames=9).frames, (64, 32))
    ours = load_editor(model=str(kit["ckpt"]), device="cpu")
    release = load_editor(model=str(kit["release"]), base=str(kit["wan"]), device="cpu")
    a, _ = ours.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    b, _ = release.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    assert a.shape == frames.shape and torch.equal(a, b)


def test_frame_count_not_4k1_is_padded_and_trimmed(kit, tmp_path: Path) -> None:
    out = tmp_path / "seven.mp4"
    res = sama("edit", CLIP, "remove the cup", "-o", out, "--model", kit["ckpt"], "--json",
               *FAST[:-4], "--max-frames", "7", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["padded_frames"] == 2 and probe(out).frames == 7


@pytest.mark.parametrize("case", ["corrupt", "empty-instruction", "wrong-size", "no-model", "bad-size", "zero-steps"])
def test_bad_inputs_fail_cleanly_without_output(kit, tmp_path: Path, case: str) -> None:
    out = tmp_path / "out.mp4"
    clip, text, extra = CLIP, "remove the cup", ["--model", kit["ckpt"]]
    if case == "corrupt":
        clip = tmp_path / "broken.mp4"
        clip.write_bytes(CLIP.read_bytes()[:3000])
    elif case == "empty-instruction":
        text = "   "
    elif case == "wrong-size":
        extra = ["--model", kit["wrong"], "--base", kit["wan"]]
    elif case == "no-model":
        extra = []
    flags = {"bad-size": ["--size", "50x30"], "zero-steps": ["--steps", "0", *FAST[2:]]}.get(case, FAST)
    res = sama("edit", clip, text, "-o", out, *extra, *flags,
               env={"SAMA_DEFAULT_MODEL": "none"} if case == "no-model" else None)  # no embedded model either
    assert res.returncode == 2, res.stderr
    message = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1, res.stderr
    expected = {"corrupt": "broken.mp4", "empty-instruction": "instruction is empty",
                "wrong-size": "shape mismatch", "no-model": "no model given", "bad-size": "multiples of 32",
                "zero-steps": "steps must be at least 1"}[case]
    assert expected in message[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_batch_manifest_resumes_and_survives_a_bad_row(kit, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 5000)
    manifest = tmp_path / "rows.jsonl"
    rows = [{"id": "good", "kind": "video_edit", "source": str(CLIP), "instruction": "remove the cup"},
            {"id": "bad", "kind": "video_edit", "source": "broken.mp4", "instruction": "remove the cup"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "edits"
    res = sama("edit", "--manifest", manifest, "-o", out, "--model", kit["ckpt"], "--json", *FAST)
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout)
    assert [d["id"] for d in summary["done"]] == ["good"] and [f["id"] for f in summary["failed"]] == ["bad"]
    assert (out / "good.mp4").is_file() and not (out / "bad.mp4").exists()
    assert "frames at" not in res.stderr  # a batch: one bar and one summary, not a line a clip
    written = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == ["good"] and written[0]["output"] == "good.mp4"
    broken.unlink()
    write_video(broken, read_video(CLIP, max_frames=9).frames, 24)  # fix the bad row, run again
    res = sama("edit", "--manifest", manifest, "-o", out, "--model", kit["ckpt"], "--json", *FAST)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["skipped"] == 1 and [d["id"] for d in summary["done"]] == ["bad"]


def test_batch_rows_filter_by_split_and_kind(tmp_path: Path) -> None:
    """--split and --kind pick rows; t2v rows are never edits; a row without a split is `train`."""
    rows = [{"id": "v1", "kind": "video_edit", "split": "test"}, {"id": "i1", "kind": "image_edit", "split": "test"},
            {"id": "v2", "kind": "video_edit"}, {"id": "t1", "kind": "t2v", "split": "test"},
            {"id": "v3", "kind": "video_edit", "split": "heldout"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**r, "source": str(CLIP), "instruction": "x"}) + "\n" for r in rows))
    ids = lambda **kw: [r["id"] for r in manifest_rows(manifest, **kw)[0]]  # noqa: E731
    assert ids() == ["v1", "i1", "v2", "v3"]
    assert ids(split="test") == ["v1", "i1"] and ids(split="train") == ["v2"]
    assert ids(kind="video_edit") == ["v1", "v2", "v3"] and ids(kind="image_edit,video_edit") == ids()
    assert ids(split="test,heldout", kind="video_edit") == ["v1", "v3"]
    assert ids(kind="video_edit", limit=2) == ["v1", "v2"]
    with pytest.raises(ConfigError, match="--kind t2v: an edit row is video_edit or image_edit"):
        ids(kind="t2v")


def test_offload_moves_each_part_for_its_stage_and_gives_the_same_edit(kit, monkeypatch) -> None:
    """--offload: each part is moved to the compute device for its stage and back to the CPU after it
    (recorded here; on this CPU-only machine both are the CPU), and the edit does not change."""
    frames = resize_frames(read_video(CLIP, max_frames=5).frames, (64, 32))
    plain = load_editor(model=str(kit["ckpt"]), device="cpu")
    off = load_editor(model=str(kit["ckpt"]), device="cpu", offload=True)
    moves: list[tuple[str, str]] = []
    for name, part in (("text", off.text_encoder), ("dit", off.model), ("codec", off.codec)):
        original = part.to

        def spy(*args, _name=name, _original=original, **kwargs):
            moves.append((_name, str(args[0] if args else kwargs.get("device"))))
            return _original(*args, **kwargs)

        monkeypatch.setattr(part, "to", spy)
    a, _ = plain.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    b, _ = off.edit_frames(frames, "remove the cup", SamplingConfig(steps=2), EditSettings())
    assert torch.equal(a, b)
    # text encoder, then codec (encode), DiT, codec (decode): each there and back
    assert [m[0] for m in moves] == ["text", "text", "codec", "codec", "dit", "dit", "codec", "codec"]
    assert all(m[1] == "cpu" for m in moves)


def test_batch_survives_any_exception_in_a_row(kit, tmp_path: Path, monkeypatch) -> None:
    """Not only our own errors: an exception from torch or a codec in one row is reported, the rest go on."""
    from typer.testing import CliRunner

    import sama_cli.edit.editor
    from sama_cli.cli import app

    real = sama_cli.edit.editor.Editor.edit_clips

    def flaky(editor, clips, *args, **kwargs):
        if any("boom" in instruction for _, instruction in clips):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(editor, clips, *args, **kwargs)

    monkeypatch.setattr(sama_cli.edit.editor.Editor, "edit_clips", flaky)
    manifest = tmp_path / "rows.jsonl"
    rows = [{"id": "a", "kind": "video_edit", "source": str(CLIP), "instruction": "boom"},
            {"id": "b", "kind": "video_edit", "source": str(CLIP), "instruction": "remove the cup"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["edit", "--manifest", str(manifest), "-o", str(tmp_path / "e"), "--model",
                                   str(kit["ckpt"]), "--json", *FAST])
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert [d["id"] for d in summary["done"]] == ["b"]
    assert summary["failed"] == [{"id": "a", "error": "RuntimeError: CUDA out of memory (simulated)"}]
    assert not (tmp_path / "e" / "a.mp4").exists()


def test_anchor_count_does_not_change_the_callers_sampling_config(kit) -> None:
    editor = load_editor(str(kit["ckpt"]), device="cpu")
    frames = resize_frames(read_video(CLIP, max_frames=5).frames, (32, 64))
    sampling = SamplingConfig(steps=1, guidance=1.0)
    before = sampling.semantic_tokens
    editor.edit_frames(frames, "remove the cup", sampling, EditSettings(anchor_frames=2))
    assert sampling.semantic_tokens == before


def test_default_working_size_is_the_release_bucket() -> None:
    """The release resizes every clip to the bucket of its aspect ratio; --native keeps one that fits."""
    from sama_cli.edit.editor import working_size

    assert working_size(480, 832, EditSettings()) == (480, 832)
    assert working_size(1080, 1920, EditSettings()) == (480, 832)
    assert working_size(32, 64, EditSettings()) == (448, 896)
    assert working_size(32, 64, EditSettings(bucket=False)) == (32, 64)
    assert working_size(32, 64, EditSettings(size=(64, 128))) == (64, 128)


def forwards_seen(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(timestep, text context) of every DiT forward from now on."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = SamaTransformer.forward

    def spy(self, latents, timestep, context, *args, **kwargs):
        seen.append((timestep.detach().float().clone(), context.detach().clone()))
        return forward(self, latents, timestep, context, *args, **kwargs)

    monkeypatch.setattr(SamaTransformer, "forward", spy)
    return seen


def cli(*args) -> dict:
    """`sama edit ... --json` in this process; its JSON summary."""
    from typer.testing import CliRunner

    from sama_cli.cli import app

    res = CliRunner().invoke(app, ["edit", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_null_negative_guides_against_an_all_zero_context(kit, tmp_path: Path, monkeypatch) -> None:
    """--null-negative: with guidance the unconditional half of each batched DiT call sees an all-zero
    text context (what data.drop_text trains on), not the encoded negative prompt; the prompt half is
    unchanged."""
    forwards = forwards_seen(monkeypatch)
    flags = ["--model", kit["ckpt"], *FAST, "--guidance", "3", "--batch-cfg"]
    cli(CLIP, "remove the cup", "-o", tmp_path / "null.mp4", *flags, "--null-negative")
    null, forwards[:] = [c for _, c in forwards], []
    cli(CLIP, "remove the cup", "-o", tmp_path / "prompt.mp4", *flags)
    seen = [c for _, c in forwards]
    assert len(null) == len(seen) == 2  # two steps, both branches in one batch
    for with_null, with_prompt in zip(null, seen, strict=True):
        assert with_null.shape[0] == 2 and with_null[0].abs().sum() > 0
        assert torch.equal(with_null[1], torch.zeros_like(with_null[1]))
        assert torch.equal(with_null[0], with_prompt[0])
        assert with_prompt[1].abs().sum() > 0  # without the flag: the encoded "[Video edit]"


def test_what_the_checkpoint_records_is_used_unless_an_option_is_given(kit, tmp_path: Path, monkeypatch) -> None:
    """A checkpoint that records a working size and a sampler (as the embedded toy model does) edits with
    them when no option is given; each option given wins. Guidance 1 is one DiT call a step, batch 1."""
    meta = {"codec": str(kit["ckpt"] / "vae"), "text_encoder": str(kit["ckpt"]), "working_size": [32, 64],
            "sampling": {"steps": 3, "guidance": 1.0}}
    model = build_model(from_preset("tiny", text_len=512, semantic_local_grid=8), seed=0)
    recorded = save_checkpoint(model, tmp_path / "recorded", meta=meta)
    forwards = forwards_seen(monkeypatch)
    quick = ["--model", recorded, "--max-frames", "5", "--device", "cpu"]
    summary = cli(CLIP, "remove the cup", "-o", tmp_path / "a.mp4", *quick)
    assert summary["steps"] == 3 and summary["size"] == [32, 64]
    assert [c.shape[0] for _, c in forwards] == [1, 1, 1]
    forwards[:] = []
    summary = cli(CLIP, "remove the cup", "-o", tmp_path / "b.mp4", *quick, "--steps", "2", "--size", "64x32",
                  "--guidance", "4")
    assert summary["steps"] == 2 and summary["size"] == [64, 32]
    assert [c.shape[0] for _, c in forwards] == [1, 1, 1, 1]  # 2 steps x 2 branches: unbatched on the CPU


def test_resolve_takes_the_option_else_the_record_else_the_release() -> None:
    toy = ModelDefaults.from_meta({"working_size": [32, 32], "sampling": {"steps": 20, "guidance": 1, "shift": 3}})
    assert toy == ModelDefaults(working_size=(32, 32), steps=20, guidance=1.0, shift=3.0)
    sampling, settings = EditRequest().resolve(toy)
    assert (sampling.steps, sampling.guidance, sampling.shift, settings.size, settings.bucket) == (20, 1.0, 3.0, (32, 32), True)
    sampling, settings = EditRequest(steps=4, guidance=2.5, size=(64, 96)).resolve(toy)
    assert (sampling.steps, sampling.guidance, sampling.shift, settings.size) == (4, 2.5, 3.0, (64, 96))
    # --bucket / --native: the clip decides the size, not the record
    assert EditRequest(bucket=True).resolve(toy)[1].size is None
    _, native = EditRequest(bucket=False).resolve(toy)
    assert native.size is None and native.bucket is False
    # a checkpoint that records nothing (release weights): the release's 50 steps, guidance 5, shift 5, bucket
    sampling, settings = EditRequest().resolve(ModelDefaults.from_meta({}))
    assert (sampling.steps, sampling.guidance, sampling.shift, settings.size, settings.bucket) == (50, 5.0, 5.0, None, True)
    assert (sampling.scheduler, sampling.seed, settings.negative_prompt) == ("euler", 1, "[Video edit]")
    # every frame is edited (issue 16), in windows of the release's 81 unless the checkpoint records its own
    assert (settings.max_frames, settings.window) == (None, 81)
    assert EditRequest().resolve(ModelDefaults.from_meta({"window_frames": 5}))[1].window == 5
    assert EditRequest(window=9).resolve(ModelDefaults.from_meta({"window_frames": 5}))[1].window == 9


def test_a_refused_write_stops_the_batch(tmp_path: Path, monkeypatch) -> None:
    """A full disk fails every row after it the same way: the batch stops with the StorageError (exit 74
    from the CLI) instead of reporting each row as failed."""
    import sama_cli.edit.editor

    tried = []

    class Unedited:  # an editor that returns each clip as it came
        def edit_clips(self, clips, *args, **kwargs):
            return [(frames, sama_cli.edit.editor.EditReport(frames=len(frames), fps=0.0, size=frames.shape[1:3],
                                                             padded_frames=0, steps=1)) for frames, _ in clips]

    def full_disk(clip, edited, report, out, *args, **kwargs):
        tried.append(Path(out).name)
        raise StorageError("cannot write: No space left on device", path=out)

    monkeypatch.setattr(sama_cli.edit.editor, "write_edit", full_disk)
    rows = [{"id": i, "kind": "video_edit", "source": str(CLIP), "instruction": "remove the cup"} for i in "ab"]
    with pytest.raises(StorageError, match="No space left"):
        edit_batch(Unedited(), rows, tmp_path / "e", SamplingConfig(steps=1), EditSettings(max_frames=3))
    assert tried == ["a.mp4"]


def test_lossless_output_decodes_to_the_edited_frames_exactly(kit, tmp_path: Path, monkeypatch) -> None:
    """`--lossless` is what the toy benchmark scores: the file must hold the sampler's frames bit for bit
    (lossy H.264 moves pixels by several levels and is not reproducible across processes)."""
    from sama_cli.edit.editor import Editor

    made: list[torch.Tensor] = []
    edit_frames = Editor.edit_frames

    def spy(self, *args, **kwargs):
        frames, report = edit_frames(self, *args, **kwargs)
        made.append(frames.clone())
        return frames, report

    monkeypatch.setattr(Editor, "edit_frames", spy)
    out = tmp_path / "exact.mp4"
    cli(CLIP, "remove the cup", "-o", out, "--model", kit["ckpt"], "--lossless", *FAST)
    assert len(made) == 1
    assert torch.equal(read_video(out).frames, made[0])


@pytest.mark.parametrize(("flag", "second"), [([], 832.0), (["--timestep-dtype", "fp32"], 2500 / 3)])
def test_timestep_dtype_reaches_the_sampler(kit, tmp_path: Path, monkeypatch, flag, second) -> None:
    """Two steps at shift 5: sigmas 1 and 5*0.5/(1+4*0.5) = 5/6, timesteps 1000 and 833.33. A bf16 model sees
    the bf16 rounding of 833.33 (spacing 4 in [512, 1024): 832) unless told fp32, as the release casts."""
    seen = forwards_seen(monkeypatch)
    cli(CLIP, "remove the cup", "-o", tmp_path / "t.mp4", "--model", kit["ckpt"], "--dtype", "bf16", *FAST, *flag,
        "--batch-cfg")  # one forward a step
    assert [float(t[0]) for t, _ in seen] == pytest.approx([1000.0, second], abs=1e-3)


def test_unknown_timestep_dtype_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    res = sama("edit", CLIP, "x", "-o", tmp_path / "o.mp4", "--model", tmp_path / "missing", "--timestep-dtype", "fp16")
    assert res.returncode == 2 and "timestep_dtype must be one of" in res.stderr, res.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_a_long_batch_prints_one_line_of_totals() -> None:
    """More than SUMMARY_ROWS edits: one row of totals (clips, frames, mean s/step, total s, highest peak),
    by hand: 13 clips of 5 frames, s/step 0.020..0.032 (mean 0.026), 0.5 s each, peak 400..412 MB."""
    from sama_cli.commands.edit import SUMMARY_ROWS, _print_summary
    from sama_cli.core.console import err

    done = [{"output": f"out/c{i}.mp4", "frames": 5, "fps": 8.0, "size": [32, 32], "seconds_per_step": 0.020 + 0.001 * i,
             "seconds": {"total": 0.5}, "peak_memory_mb": 400.0 + i} for i in range(13)]
    assert SUMMARY_ROWS == 12
    with err.capture() as cap:
        _print_summary(done, [], 0)
    cells = [line.replace("│", " ").split() for line in cap.get().splitlines() if line.strip()[:1].isdigit()]
    assert cells == [["13", "65", "0.026", "6.5", "412"]] and "c3.mp4" not in cap.get()
    with err.capture() as cap:
        _print_summary(done[:12], [{"id": "x", "error": "unreadable"}], 2)
    text = cap.get()
    assert all(f"c{i}.mp4" in text for i in range(12)) and "skipped 2" in text and "x: unreadable" in text


def test_clips_denoised_together_give_each_clip_its_own_edit(tmp_path: Path, monkeypatch) -> None:
    """--clip-batch 2 with the embedded model on toy clips: consecutive clips of one shape share a denoising
    batch, each with its own source, prompt and the noise its seed gives it alone, so every output is the
    clip's edit made alone (within float rounding: at most 1 of 255); a clip of another length starts the
    next batch."""
    from sama_cli.edit.editor import Editor
    from sama_cli.toy.world import generate, render

    short = [s for s in generate(8, 0, 0, seed=5, size=32, frames=5)][:4]
    long = next(iter(generate(1, 0, 0, seed=6, size=32, frames=9)))  # two windows of the model's five frames
    rows = []
    for i, sample in zip("abcde", [short[0], short[1], long, short[2], short[3]], strict=True):
        write_video(tmp_path / f"{i}.mp4", render(sample.source), 8.0, lossless=True)
        rows.append({"id": i, "kind": "video_edit", "source": str(tmp_path / f"{i}.mp4"),
                     "instruction": sample.edit.instruction})
    editor = load_editor(None, device="cpu")
    real, groups = Editor.edit_clips, []

    def spy(self, clips, *args, **kwargs):
        groups.append(len(clips))
        return real(self, clips, *args, **kwargs)

    monkeypatch.setattr(Editor, "edit_clips", spy)
    sampling, alone = EditRequest(steps=4).resolve(editor.defaults)
    edit_batch(editor, rows, tmp_path / "alone", sampling, alone, lossless=True)
    assert groups == [1] * 5
    groups.clear()
    _, together = EditRequest(steps=4, clip_batch=2).resolve(editor.defaults)
    batch = edit_batch(editor, rows, tmp_path / "together", sampling, together, lossless=True)
    assert groups == [2, 1, 2]  # a b | c (9 frames) | d e
    assert [d["batch"] for d in batch.done] == [2, 2, 1, 2, 2]
    for i in "abcde":
        a = read_video(tmp_path / "alone" / f"{i}.mp4").frames.int()
        b = read_video(tmp_path / "together" / f"{i}.mp4").frames.int()
        assert a.shape == b.shape and (a - b).abs().max() <= 1, i
    # the two clips of a batch give different edits: the comparison above could tell them apart
    a, b = (read_video(tmp_path / "together" / f"{i}.mp4").frames.int() for i in "ab")
    assert (a - b).abs().max() > 8


@pytest.mark.parametrize("args, message", [
    (["--clip-batch", "2"], "--clip-batch goes with --manifest"),
    (["--clip-batch", "0"], "--clip-batch must be at least 1"),
    (["--clip-batch", "2", "--cache", "fbc", "--manifest", "m.jsonl"], "--clip-batch with --cache"),
])
def test_clip_batch_refuses_what_it_cannot_do(tmp_path: Path, args: list[str], message: str) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "kind": "video_edit", "source": str(CLIP), "instruction": "x"}) + "\n")
    target = ["-o", tmp_path / "o.mp4"] if "--manifest" not in args else ["-o", tmp_path / "out"]
    res = sama("edit", *([] if "--manifest" in args else [CLIP, "x"]), *target, *args, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "out").exists()
