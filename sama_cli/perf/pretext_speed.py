"""`make bench` rows for the pretexts: pixel-space throughput next to decoding the same clip and a
plain tensor copy; the latent fast path next to pixel perturbation + re-encoding."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sama_cli.data.pretext import cube_inpaint, perturb_latents, speed, tube_shuffle
from sama_cli.perf.timing import median_seconds


def perturb_throughput_rows(quick: bool = False) -> list[dict]:
    from sama_cli.io.video import read_video, write_video
    from sama_cli.model.vae import load_codec

    reps = 3 if quick else 10
    g = torch.Generator().manual_seed(0)
    # a release-size clip (49 frames of 480x832) with video-like content: smooth gradients drifting, a
    # little noise; written as H.264, then the decoded frames are what the pretexts perturb
    t, y, x = torch.meshgrid(torch.arange(49.0), torch.arange(480.0), torch.arange(832.0), indexing="ij")
    base = torch.stack([(x + 4 * t) / 832, (y + 2 * t) / 480, (x + y) / 1312], -1) * 200
    clip = (base + 10 * torch.rand(base.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, clip, 24)
        decode = median_seconds(lambda: read_video(path), reps)
        clip = read_video(path).frames
    n = clip.shape[0]
    rows = []
    copy = median_seconds(lambda: clip.clone(), reps)
    for name, fn in (("cube-inpaint", cube_inpaint), ("speed", speed), ("tube-shuffle", tube_shuffle)):
        t = median_seconds(lambda fn=fn: fn(clip, torch.Generator().manual_seed(1)), reps)
        rows.append({"area": "pretext", "what": f"{name}, 49x480x832 uint8 clip",
                     "value": f"{n / t:.0f} frames/s (copy {n / copy:.0f}, decoding the same clip {n / decode:.0f})",
                     "target": "-", "ok": True})
    for spec in ("pixel", "tiny"):
        codec = load_codec(spec)
        small = clip[:17, :64, :64]
        x = small.permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            z = codec.encode(x)[0]
            latent = median_seconds(lambda z=z: perturb_latents(z, "tube-shuffle", torch.Generator().manual_seed(1),
                                                                splits=(2, 2, 2)), reps)

            def pixel_path(codec=codec, small=small):
                out, _ = tube_shuffle(small, torch.Generator().manual_seed(1), splits=(2, 2, 2))
                codec.encode(out.permute(3, 0, 1, 2)[None].float() / 127.5 - 1)

            pixel = median_seconds(pixel_path, reps)
        rows.append({"area": "pretext", "what": f"tube-shuffle 17x64x64, latent fast path vs pixel + re-encode ({spec})",
                     "value": f"{latent * 1e3:.2f} ms vs {pixel * 1e3:.1f} ms ({pixel / latent:.0f}x)",
                     "target": "-", "ok": True})
    return rows
