"""Video and image IO on the real fixtures and on files the tests make."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import REAL_FIXTURES, write_clip_with_audio

from sama_cli.core.errors import InputError
from sama_cli.io.frames import bucket_list, bucket_size, choose_size, fit_frames, frames_down, frames_up
from sama_cli.io.video import (
    hstack_videos,
    probe,
    read_frames_folder,
    read_video,
    resize_frames,
    write_image,
    write_video,
)

SOURCES = sorted(REAL_FIXTURES.glob("*-source.mp4"))


def av_count(path: Path) -> tuple[int, float, int, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, float(s.average_rate), s.codec_context.width, s.codec_context.height


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_real_fixtures_probe_and_read(path: Path) -> None:
    n, fps, w, h = av_count(path)
    info = probe(path)
    assert (info.frames, info.fps, info.width, info.height) == (n, fps, w, h)
    assert 41 <= n <= 49 and 20 <= fps <= 24 and {h, w} == {480, 832}
    video = read_video(path, max_frames=5)
    assert video.frames.shape == (5, h, w, 3) and video.frames.dtype == torch.uint8 and video.fps == fps


def test_manifest_of_fixtures_lists_real_files() -> None:
    rows = [json.loads(line) for line in (REAL_FIXTURES / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all((REAL_FIXTURES / r["source"]).is_file() for r in rows)


def test_bucketing_portrait_and_landscape() -> None:
    assert bucket_size(480, 832) == (480, 832) and bucket_size(832, 480) == (832, 480)
    assert bucket_size(1080, 1920) == (480, 832)
    h, w = bucket_size(100, 1000)  # aspect clamped to 0.5
    assert (h, w) == (448, 896) and h % 32 == 0 and w % 32 == 0
    # the release's get_all_resolution(480*832) + find_closest_resolution, worked out by hand
    assert bucket_size(1024, 1024) == bucket_size(256, 256) == (640, 640)
    assert bucket_size(600, 800) == (544, 736) and bucket_size(800, 600) == (736, 544)
    assert bucket_size(360, 640) == (480, 832)
    assert bucket_list()[0] == (448, 896) and bucket_list()[-1] == (896, 448) and len(bucket_list()) == 15
    assert all(h * w <= 480 * 832 * 1.1 and 0.5 <= w / h <= 2 for h, w in bucket_list())
    assert bucket_size(720, 720, multiple=16) == (640, 624)  # no square bucket at 16: the nearer of 624x640, 640x624
    # the release resizes every clip to its bucket; --native keeps a clip that already fits
    assert choose_size(256, 256) == (640, 640) and choose_size(256, 256, bucket=False) == (256, 256)
    assert choose_size(1080, 1920, bucket=False) == (480, 832) and choose_size(9, 9, size=(32, 64)) == (32, 64)


def test_frame_selection_and_backends_agree() -> None:
    path = REAL_FIXTURES / "remove-04-source.mp4"
    full = read_video(path, backend="av").frames
    part = read_video(path, start=3, end=20, step=4, backend="av").frames
    assert torch.equal(part, full[3:20:4])
    try:
        import decord  # noqa: F401
    except ImportError:  # without decord, asking for it is a clear error, and auto falls back to PyAV
        with pytest.raises(InputError, match="decord is not installed"):
            read_video(path, backend="decord")
        assert torch.equal(read_video(path, start=3, end=20, step=4).frames, part)
    else:
        dec = read_video(path, start=3, end=20, step=4, backend="decord").frames
        assert dec.shape == part.shape and (dec.float() - part.float()).abs().mean() < 2.0
    with pytest.raises(InputError, match="beyond the end"):
        read_video(path, start=10_000)


def test_lossy_and_lossless_round_trips_and_odd_sizes(tmp_path: Path) -> None:
    clip = read_video(REAL_FIXTURES / "style-02-source.mp4", max_frames=9).frames
    small = resize_frames(clip, (96, 160))
    write_video(tmp_path / "lossy.mp4", small, 20)
    back = read_video(tmp_path / "lossy.mp4")
    mse = float(((back.frames.float() - small.float()) ** 2).mean())
    assert back.frames.shape == small.shape and back.fps == 20 and 10 * np.log10(255**2 / mse) > 30
    g = torch.Generator().manual_seed(0)
    odd = torch.randint(0, 256, (5, 33, 47, 3), generator=g, dtype=torch.uint8)
    write_video(tmp_path / "exact.mp4", odd, Fraction(30000, 1001), lossless=True)
    exact = read_video(tmp_path / "exact.mp4")
    assert exact.frames.shape == (5, 34, 48, 3)  # odd sides padded to even by edge repetition
    assert torch.equal(exact.frames[:, :33, :47], odd) and torch.equal(exact.frames[:, 33, :47], odd[:, 32])
    assert abs(exact.fps - 29.97) < 0.01


def test_audio_is_copied_and_trimmed(tmp_path: Path) -> None:
    src = write_clip_with_audio(tmp_path / "with_audio.mp4", 20, fps=10, seconds_of_audio=2.0)
    assert probe(src).has_audio
    frames = read_video(src).frames[:10]
    write_video(tmp_path / "edited.mp4", frames, 10, audio_from=src)
    info = probe(tmp_path / "edited.mp4")
    assert info.has_audio and info.frames == 10
    with av.open(str(tmp_path / "edited.mp4")) as c:
        audio_seconds = float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
    assert audio_seconds <= 1.2  # trimmed to the 1 s of video (plus codec padding)
    write_video(tmp_path / "silent.mp4", frames, 10)
    assert not probe(tmp_path / "silent.mp4").has_audio


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = 255  # left half white
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264rgb", rate=5)
        s.width, s.height, s.pix_fmt = 32, 16, "rgb24"
        s.options = {"qp": "0"}
        s.set_display_rotation(90)
        for i in range(3):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    info = probe(path)
    assert info.rotation in (90, 270) and (info.width, info.height) == (16, 32)
    frames = read_video(path).frames
    assert frames.shape == (3, 32, 16, 3)
    # the white half is now the top or bottom half, never the left
    assert frames[0, :16].float().mean() != frames[0, 16:].float().mean()


def test_images_gif_and_frame_folders(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (24, 40, 3), generator=g, dtype=torch.uint8)
    for ext in ("png", "webp"):
        write_image(tmp_path / f"a.{ext}", img)
    assert torch.equal(read_video(tmp_path / "a.png").frames[0], img)
    assert read_video(tmp_path / "a.png").fps == 1.0
    write_image(tmp_path / "a.jpg", img)
    assert read_video(tmp_path / "a.jpg").frames.shape == (1, 24, 40, 3)
    from PIL import Image

    pics = [Image.fromarray(np.full((16, 16, 3), c, np.uint8)) for c in (0, 128, 255)]
    pics[0].save(tmp_path / "anim.gif", save_all=True, append_images=pics[1:], duration=100)
    gif = read_video(tmp_path / "anim.gif")
    assert gif.frames.shape[0] == 3 and gif.frames.shape[1:] == (16, 16, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):
        write_image(folder / f"{i}.png", torch.full((8, 8, 3), i, dtype=torch.uint8))
    assert read_frames_folder(folder).frames[:, 0, 0, 0].tolist() == [1, 2, 10]


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated", "text"])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 100)
    elif case == "truncated":
        data = (REAL_FIXTURES / "add-03-source.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    with pytest.raises(InputError) as info:
        read_video(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")  # must survive a failed write untouched
    with pytest.raises(ValueError):
        write_video(target, torch.zeros(3, 8, 8, 3, dtype=torch.float32), 5)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_4k1_resize_and_side_by_side() -> None:
    assert [frames_up(n) for n in (1, 2, 5, 6, 9, 49)] == [1, 5, 5, 9, 9, 49]
    assert [frames_down(n) for n in (0, 1, 4, 5, 8, 81, 200)] == [0, 1, 1, 5, 5, 81, 197]
    assert [frames_up(n, k=1) for n in (1, 2, 7)] == [1, 2, 7]  # the pixel codec keeps every count
    clip = torch.arange(7).view(7, 1, 1, 1).expand(7, 4, 4, 3).to(torch.uint8)
    padded = fit_frames(clip, "pad")
    assert padded.shape[0] == 9 and (padded[:7] == clip).all() and (padded[7:] == 6).all()
    assert torch.equal(fit_frames(clip, "trim"), clip[:5]) and fit_frames(clip[:5], "pad") is not None
    assert torch.equal(fit_frames(clip[:5], "pad"), clip[:5]) and torch.equal(fit_frames(clip[:5], "trim"), clip[:5])
    frames = torch.full((2, 40, 80, 3), 200, dtype=torch.uint8)
    assert resize_frames(frames, (32, 32), "crop").shape == (2, 32, 32, 3)
    box = resize_frames(frames, (32, 32), "letterbox")
    assert box.shape == (2, 32, 32, 3) and (box[:, 0] == 0).all() and (box[:, 16] == 200).all()
    assert resize_frames(frames, (16, 24), "stretch").shape == (2, 16, 24, 3)
    sbs = hstack_videos(frames, torch.zeros(3, 20, 20, 3, dtype=torch.uint8))
    assert sbs.shape == (2, 40, 120, 3)


def write_pyav(path: Path, codec: str, frames: np.ndarray, fps: int, *, fmt: str | None = None,
               options: dict | None = None) -> Path:
    """A clip written by PyAV directly (not by our writer), in the container `path`'s suffix names."""
    try:
        av.codec.Codec(codec, "w")
    except av.error.FFmpegError:  # UnknownCodecError: the bundled FFmpeg was built without it
        pytest.skip(f"the bundled FFmpeg has no {codec} encoder")
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = options or {}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def smooth_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames a lossy codec keeps close: a gradient that shifts by frame."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 4 + i * 8) % 256, (y * 5) % 256, np.full_like(x, i * 20)], -1)
                     for i in range(n)]).astype(np.uint8)


@pytest.mark.parametrize(("name", "codec"), [("h264.mkv", "libx264"), ("ffv1.mkv", "ffv1"),
                                             ("vp9.webm", "libvpx-vp9"), ("vp8.webm", "libvpx")])
def test_mkv_and_webm_read_back_and_cut_files_are_errors(tmp_path: Path, name: str, codec: str) -> None:
    frames = smooth_frames(12)
    path = write_pyav(tmp_path / name, codec, frames, 12)
    info = probe(path)  # these containers store no frame count: probe counts packets
    assert (info.frames, info.fps, info.width, info.height) == (12, 12.0, 64, 48)
    for backend in ("auto", "av"):
        video = read_video(path, backend=backend)
        assert video.frames.shape == (12, 48, 64, 3) and video.fps == 12.0
        assert (video.frames.float() - torch.from_numpy(frames).float()).abs().mean() < 12
    data = path.read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # Matroska demuxes a cut file cleanly: the header's
    garbled = bytearray(data)  # duration tells that frames are missing
    garbled[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    (tmp_path / f"garbled-{name}").write_bytes(bytes(garbled))
    for bad in (cut, tmp_path / f"garbled-{name}"):
        with pytest.raises(InputError, match="truncated or corrupt") as e:
            read_video(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_a_lost_last_frame_is_an_error_and_an_edit_list_is_not(tmp_path: Path) -> None:
    path = write_pyav(tmp_path / "clip.mp4", "libx264", smooth_frames(9), 12,
                      options={"tune": "zerolatency", "bframes": "0"})
    with av.open(str(path)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
        pos, size = last.pos, last.size
    data = bytearray(path.read_bytes())
    data[pos : pos + size] = bytes(size)  # 9 frames announced; the decoder drops the last, quietly
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    for backend in ("av", "auto"):
        with pytest.raises(InputError, match="corrupt") as e:
            read_video(broken, backend=backend)
        assert str(broken) in str(e.value) and "\n" not in str(e.value)
    # a clip cut without re-encoding: an edit list hides its first 2 packets (flagged discard)
    cut = tmp_path / "cut.mp4"
    with av.open(str(path)) as src, av.open(str(cut), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        shift = 2 * int(1 / (12 * src.streams.video[0].time_base))
        for p in src.demux(video=0):
            if p.dts is not None:
                p.pts, p.dts, p.stream = p.pts - shift, p.dts - shift, out
                dst.mux(p)
    assert probe(cut).frames == 9
    video = read_video(cut, backend="av")
    assert video.num_frames == video.info.frames == 7
