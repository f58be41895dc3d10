"""`make bench` row for the judge harness: judged samples per second against a scripted localhost
endpoint (in a process of its own), with K concurrent workers. The server answers instantly (and, in a
second row, after a fixed latency), so the number measures the harness itself: decoding, weight-free
metrics, frame sampling, JPEG encoding, the HTTP client, parsing, report writing (cache off; one short
warm-up run first, so that imports are not counted)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TARGET_PER_SECOND = 20.0  # issue target: >= 20 samples/s at 8 workers


def _bench_folder(root: Path, n: int) -> tuple[Path, Path]:
    from sama_cli.io.video import write_video

    data, edits = root / "data", root / "edits"
    (data / "videos").mkdir(parents=True)
    edits.mkdir()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, 256, (17, 64, 64, 3), generator=g, dtype=torch.uint8)
    write_video(data / "videos" / "clip.mp4", src, 16.0)
    rows = []
    for i in range(n):
        write_video(edits / f"s{i:03d}.mp4", src.roll(i, 2), 16.0)
        rows.append({"id": f"s{i:03d}", "category": "add", "instruction": f"add a hat #good{1 + i % 9}",
                     "source": "videos/clip.mp4"})
    (data / "vie_bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, edits


def judge_throughput_rows(quick: bool = False, workers: int = 8) -> list[dict]:
    from sama_cli.eval.judges import OpenAIJudge
    from sama_cli.eval.runner import run
    from sama_cli.eval.vie import VieBench

    n = 32 if quick else 96
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data, edits = _bench_folder(Path(tmp), n)
        for latency in (0.0, 0.1):
            # the endpoint runs in a process of its own, as a real one would: it must not share our GIL
            server = subprocess.Popen([sys.executable, "-m", "sama_cli.perf.judge_server", "--latency", str(latency)],
                                      stdout=subprocess.PIPE, text=True)
            try:
                base_url = server.stdout.readline().strip()  # "" when the server died at start-up
                if not base_url.startswith("http"):
                    raise RuntimeError(f"the scripted server did not start (exit code {server.poll()})")
                judge = OpenAIJudge("scripted", base_url=base_url, timeout=30.0, retries=0)
                run(VieBench(), data, edits, judge, Path(tmp) / "warm", workers=workers, use_cache=False, limit=8)
                t0 = time.perf_counter()
                summary = run(VieBench(), data, edits, judge, Path(tmp) / f"r{latency}", workers=workers,
                              use_cache=False)
                seconds = time.perf_counter() - t0
            finally:
                server.kill()
                server.wait()
            per_s = n / seconds
            ok = summary["failed"] == 0 and (latency > 0 or per_s >= TARGET_PER_SECOND)
            rows.append({"area": "bench", "what": f"judged samples/s, {workers} workers, 2x8 frames of 64x64, "
                                                  f"scripted endpoint with {latency * 1e3:.0f} ms latency",
                         "value": f"{per_s:.1f} samples/s ({n} samples, {summary['failed']} failed)",
                         "target": f">= {TARGET_PER_SECOND:g}/s" if latency == 0 else "-", "ok": ok})
    return rows


if __name__ == "__main__":
    for r in judge_throughput_rows(quick=True):
        print(r)
