"""The SigLIP anchor is taken from the target as the trainer sees it: the frame `sama encode` resized to the
row's working size with its resize mode, inside the frame window the latents hold (release: the dataset's
ImageCropAndResize frames go to SigLIPFirstFrameEncoder, diffsynth/models/siglip_semantic.py). A spy stands
in for SigLIP and returns the mean pixel of each frame it is given; expected values are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sama_cli.data.anchors import anchor_inputs
from sama_cli.data.latents import EncodeOptions, encode
from sama_cli.io.artifacts import content_hash, load_artifact, save_artifact
from sama_cli.io.video import write_video
from sama_cli.model.vae import PixelCodec

RED = (255, 0, 0)


def colour(t: int) -> tuple[int, int, int]:
    """The interior colour of frame t."""
    return 10 + 15 * t, 200 - 10 * t, 60 + 5 * t


class SpyEncoder:
    """Records the frames it is given; each frame's tokens are its mean pixel, (N, 1, 3)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def describe(self) -> dict:
        return {"spec": "spy"}

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.seen.append(frames.clone())
        return frames.float().mean(dim=(1, 2)).unsqueeze(1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """14 frames of 48x80: rows 0-1 and 46-47 red, the rest colour(t). Cropped to 32x64 the clip is scaled
    by max(32/48, 64/80) = 0.8 to 38x64 and rows 3..34 are kept; their antialiased taps (radius 1/0.8 = 1.25
    source rows) reach source rows 3..43 only, so the cropped frame is colour(t) everywhere."""
    frames = torch.zeros(14, 48, 80, 3, dtype=torch.uint8)
    for t in range(14):
        frames[t] = torch.tensor(colour(t), dtype=torch.uint8)
        frames[t, :2] = frames[t, 46:] = torch.tensor(RED, dtype=torch.uint8)
    path = tmp_path_factory.mktemp("clip") / "target.mp4"
    write_video(path, frames, 8.0, lossless=True)
    return path


def manifest(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def t2v(row_id: str, target: Path, **extra) -> dict:
    return {"id": row_id, "kind": "t2v", "target": str(target), "caption": "a square", **extra}


def encoded(tmp_path: Path, clip: Path, resize: str, size=(32, 64)) -> Path:
    """`sama encode` of a one-row manifest (pixel codec), returning the manifest it wrote."""
    src = manifest(tmp_path / "in", [t2v("a", clip)])
    opts = EncodeOptions(size=size, resize=resize)
    _, rows = encode([str(src)], tmp_path / "lat", codec=PixelCodec(), device=torch.device("cpu"), opts=opts)
    assert rows and "target_latents" in rows[0]["artifacts"]
    return tmp_path / "lat" / "manifest.jsonl"


def test_anchor_is_the_cropped_frame_not_the_raw_one(tmp_path: Path, clip: Path) -> None:
    spy = SpyEncoder()
    summary, rows = anchor_inputs([str(encoded(tmp_path, clip, "crop"))], tmp_path / "anc", spy)
    assert summary.failed == []
    (frame,) = spy.seen
    assert frame.shape == (1, 32, 64, 3)  # the bucket frame, not the 48x80 file
    assert torch.equal(frame[0], torch.tensor(colour(0), dtype=torch.uint8).expand(32, 64, 3))  # no red left
    art = load_artifact(rows[0]["artifacts"]["anchors"], "anchors")
    assert art["tokens"].tolist() == [[10.0, 200.0, 60.0]]  # the raw frame's red mean would be 30.42
    assert art.meta["frames"] == [0] and art.meta["view"]["size"] == [32, 64] and art.meta["view"]["resize"] == "crop"
    assert summary.raw == 0


def test_anchor_follows_the_recorded_resize_mode(tmp_path: Path, clip: Path) -> None:
    """Letterbox 48x80 into 32x64: scale min(32/48, 64/80) = 2/3 -> 32 x round(53.33) = 32x53, placed at
    column (64 - 53) // 2 = 5; columns 0-4 and 58-63 are black. Crop would leave no black column."""
    spy = SpyEncoder()
    summary, _ = anchor_inputs([str(encoded(tmp_path, clip, "letterbox"))], tmp_path / "anc", spy)
    assert summary.failed == []
    frame = spy.seen[0][0]
    assert frame.shape == (32, 64, 3)
    assert (frame[:, :5] == 0).all() and (frame[:, 58:] == 0).all()
    assert frame[:, 5:58].amax(dim=-1).gt(0).all()
    assert frame[16, 32].tolist() == list(colour(0))  # the middle maps to interior rows and columns only


def test_anchor_equals_the_frame_the_latents_hold(tmp_path: Path) -> None:
    """With the exact pixel codec and encode's own size choice (no --size: the ~480x832 bucket), the frame
    given to SigLIP is bit for bit the first frame the target latents decode to."""
    img = torch.zeros(1, 48, 80, 3, dtype=torch.uint8)
    img[0, :, :40] = torch.tensor((30, 90, 150), dtype=torch.uint8)
    img[0, :, 40:] = torch.tensor((220, 20, 100), dtype=torch.uint8)
    clip = tmp_path / "still.mp4"
    write_video(clip, img, 1.0, lossless=True)
    lat_manifest = encoded(tmp_path, clip, "crop", size=None)
    spy = SpyEncoder()
    _, rows = anchor_inputs([str(lat_manifest)], tmp_path / "anc", spy)
    z = load_artifact(rows[0]["artifacts"]["target_latents"], "latents")
    x = PixelCodec().decode(z["latents"][None])[0]  # (3, T, H, W) in [-1, 1]
    trained = ((x[:, 0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    assert list(trained.shape[:2]) == z.meta["size"] != [48, 80]
    assert torch.equal(spy.seen[0][0], trained)


def fake_latents(tmp_path: Path, clip: Path, **meta) -> Path:
    path = tmp_path / "fake.target.safetensors"
    save_artifact(path, {"latents": torch.zeros(1)}, "latents",
                  {"content_hash": content_hash(clip), "size": [32, 64], "resize": "crop", **meta})
    return path


@pytest.mark.parametrize("where", ["meta", "row"])
def test_anchor_frames_come_from_the_encoded_window(tmp_path: Path, clip: Path, where: str) -> None:
    """Window {start 3, count 5, stride 2} holds frames 3, 5, 7, 9, 11: `first` is frame 3; `uniform` with
    3 frames takes window positions 0, 2, 4 = frames 3, 7, 11."""
    window = {"start": 3, "count": 5, "stride": 2}
    lat = fake_latents(tmp_path, clip, frames=5, **({"window": window} if where == "meta" else {}))
    row = t2v("w", clip, artifacts={"target_latents": str(lat)}, **({"window": window} if where == "row" else {}))
    src = manifest(tmp_path / "m", [row])
    spy = SpyEncoder()
    _, rows = anchor_inputs([str(src)], tmp_path / "a1", spy)
    assert spy.seen[0].float().mean(dim=(1, 2)).tolist() == [list(map(float, colour(3)))]
    assert load_artifact(rows[0]["artifacts"]["anchors"]).meta["frames"] == [3]
    spy = SpyEncoder()
    _, rows = anchor_inputs([str(src)], tmp_path / "a3", spy, count=3, how="uniform")
    art = load_artifact(rows[0]["artifacts"]["anchors"])
    assert art.meta["frames"] == [3, 7, 11]
    assert art["tokens"].tolist() == [list(map(float, colour(t))) for t in (3, 7, 11)]


def test_without_encoded_latents_the_raw_frame_is_used_with_one_note(tmp_path: Path, clip: Path, capsys) -> None:
    src = manifest(tmp_path / "m", [t2v("a", clip), t2v("b", clip)])
    spy = SpyEncoder()
    summary, _ = anchor_inputs([str(src)], tmp_path / "anc", spy)
    assert summary.raw == 2 and [f.shape for f in spy.seen] == [(1, 48, 80, 3)] * 2
    assert spy.seen[0][0, 0, 0].tolist() == list(RED)  # the border the crop would remove
    note = capsys.readouterr().err
    assert note.count("no encoded latents") == 1 and "2 target(s)" in note


def test_mismatched_or_malformed_latents_fail_the_row(tmp_path: Path, clip: Path) -> None:
    other = fake_latents(tmp_path, clip)
    save_artifact(other, {"latents": torch.zeros(1)}, "latents",
                  {"content_hash": "0" * 64, "size": [32, 64], "resize": "crop"})
    bad = tmp_path / "bad.safetensors"
    save_artifact(bad, {"latents": torch.zeros(1)}, "latents", {"content_hash": content_hash(clip),
                                                                "size": [32, 64], "resize": "crop",
                                                                "window": {"start": -1, "stride": 2}})
    src = manifest(tmp_path / "m", [t2v("x", clip, artifacts={"target_latents": str(other)}),
                                    t2v("y", clip, artifacts={"target_latents": str(bad)})])
    summary, rows = anchor_inputs([str(src)], tmp_path / "anc", SpyEncoder())
    assert rows == [] and [f["id"] for f in summary.failed] == ["x", "y"]
    assert "target.mp4: is not the file its target latents were encoded from" in summary.failed[0]["error"]
    assert "bad.safetensors: frame window" in summary.failed[1]["error"]


def test_latents_read_whole_are_anchored_from_frame_0(tmp_path: Path, clip: Path) -> None:
    """A file encoded whole (`read: whole`: it holds its window's frames already) starts at its frame 0."""
    lat = fake_latents(tmp_path, clip, frames=14, read="whole", window={"start": 3, "count": 14, "stride": 2})
    spy = SpyEncoder()
    _, rows = anchor_inputs([str(manifest(tmp_path / "m", [t2v("w", clip, artifacts={"target_latents": str(lat)})]))],
                            tmp_path / "anc", spy)
    assert load_artifact(rows[0]["artifacts"]["anchors"]).meta["frames"] == [0]
    assert spy.seen[0].float().mean(dim=(1, 2)).tolist() == [list(map(float, colour(0)))]


def test_manifest_paths_resolve_against_base_path(tmp_path: Path, clip: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.mp4").write_bytes(clip.read_bytes())
    src = manifest(tmp_path / "meta", [t2v("r", Path("t.mp4"))])
    spy = SpyEncoder()
    summary, rows = anchor_inputs([str(src)], tmp_path / "anc", spy, base_path=tmp_path / "data")
    assert summary.failed == [] and rows[0]["target"] == str(tmp_path / "data" / "t.mp4")
