"""Test fixtures: where the reference data lives, and torch's thread count.

Everything the tests read ships inside the repository: the release conformance vectors in
tests/data/reference/ and the real clips (sources + SAMA-14B outputs) in sama_cli/assets/fixtures/real/
(package data, since `sama bench run fixtures` reads them too). `SAMA_REFERENCE_DIR` and
`SAMA_SHARED_DIR` (a folder holding fixtures/real/) point elsewhere, e.g. at a folder with more vectors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sama_cli.eval.vie import fixtures_dir

REPO = Path(__file__).resolve().parent.parent
REAL_FIXTURES = fixtures_dir()
REFERENCE_DIR = Path(os.environ.get("SAMA_REFERENCE_DIR", REPO / "tests" / "data" / "reference"))

# Two cores: keep intra-op threads bounded so that xdist workers do not oversubscribe.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def real_fixtures() -> Path:
    """The seven real clips (sources + SAMA-14B outputs) with manifest.jsonl."""
    assert (REAL_FIXTURES / "manifest.jsonl").is_file(), f"missing real fixtures at {REAL_FIXTURES}"
    return REAL_FIXTURES


@pytest.fixture(scope="session")
def tiny_edit_checkpoint(tmp_path_factory) -> Path:
    """A random `tiny` SAMA checkpoint that `sama edit` runs end to end: a tiny VAE as its codec and the tiny
    text encoder beside it (512 text tokens, as Wan's)."""
    from sama_cli.model.config import from_preset
    from sama_cli.model.text_encoder import save_tiny_text_encoder
    from sama_cli.model.transformer import build_model
    from sama_cli.model.vae import tiny_vae
    from sama_cli.model.weights import save_checkpoint

    root = tmp_path_factory.mktemp("tiny_edit")
    model = build_model(from_preset("tiny", text_len=512, semantic_local_grid=8), seed=0)
    path = save_checkpoint(model, root / "ckpt", meta={"codec": "vae", "text_encoder": "."})
    tiny_vae().save_pretrained(path / "vae")
    save_tiny_text_encoder(path)
    return path


def write_clip_with_audio(path: Path, frames: int, fps: int = 10, width: int = 32, height: int = 32,
                          seconds_of_audio: float | None = None) -> Path:
    """An H.264 MP4 whose frame i is flat grey (i * 10) % 250, with a mono 440 Hz AAC track of
    `seconds_of_audio` (default: as long as the video)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 10) % 250, np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        t = np.arange(int(16000 * (frames / fps if seconds_of_audio is None else seconds_of_audio))) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for i in range(0, samples.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp", layout="mono")
            af.sample_rate = 16000
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path
