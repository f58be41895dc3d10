"""Multi-rank editing (edit/multigpu.py) under torchrun with gloo: every layout gives the one-process edit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_FIXTURES

from sama_cli.core.errors import ConfigError
from sama_cli.edit.multigpu import Layout, choose_layout
from sama_cli.io.video import read_video

REPO = Path(__file__).resolve().parent.parent
CLIP = REAL_FIXTURES / "remove-04-source.mp4"
FAST = ["--steps", "2", "--size", "64x32", "--max-frames", "9", "--device", "cpu", "--lossless"]


def torchrun(n: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=cwd)


def test_layouts_for_ranks_and_guidance() -> None:
    # two ranks and guidance: the branches apart, no communication in the model
    assert choose_layout(2, 2, 40) == Layout(2, 2, 1, None)
    # four ranks: guidance over 2 groups of a 2-way sequence split; 40 heads split 2 ways
    assert choose_layout(4, 2, 40) == Layout(4, 2, 2, "ulysses")
    # no guidance (the toy model edits with guidance 1): all ranks on the sequence
    assert choose_layout(4, 1, 40) == Layout(4, 1, 4, "ulysses")
    # 12 heads (Wan 1.3B) over 8 ranks do not split: every rank gathers keys and values
    assert choose_layout(8, 1, 12, "sequence") == Layout(8, 1, 8, "kv-gather")
    assert choose_layout(3, 3, 40) == Layout(3, 1, 3, "kv-gather")  # odd ranks: no guidance pairs
    assert choose_layout(3, 3, 40, "guidance") == Layout(3, 3, 1, None)  # dual guidance: 3 branches, 3 ranks
    assert choose_layout(2, 2, 40).describe() == "guidance 2"
    assert choose_layout(4, 2, 40).describe() == "guidance 2 x sequence 2 (ulysses)"
    with pytest.raises(ConfigError, match="3 ranks for 2 guidance"):
        choose_layout(3, 2, 40, "guidance")
    with pytest.raises(ConfigError, match="--parallel must be one of"):
        choose_layout(2, 2, 40, "ring")


@pytest.mark.parametrize("ranks", [2, 4])
def test_every_layout_equals_the_one_process_edit(tmp_path: Path, ranks: int) -> None:
    """Tiny SAMA models (source tokens and channel source; 4 heads, and 3 heads that no rank count divides),
    no guidance, classifier-free and dual guidance, each layout that fits `ranks`: the shared sampler's
    latents and semantic tokens equal the one-process ones within 1e-5 relative error, on every rank. The
    joint sequence (21 or 13 tokens) does not divide by the ranks, so the padding is exercised."""
    out = tmp_path / "rows.json"
    res = torchrun(ranks, str(REPO / "tests" / "parallel_worker.py"), str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len({r["rank"] for r in rows}) == ranks
    for r in rows:
        assert r["rel"] < 1e-5 and r["rel_semantic"] < 1e-5, r
        assert r["same_on_ranks"], r
    layouts = {r["layout"] for r in rows}
    expected = ({"sequence 2 (ulysses)", "sequence 2 (kv-gather)", "guidance 2"} if ranks == 2 else
                {"sequence 4 (ulysses)", "sequence 4 (kv-gather)", "guidance 2 x sequence 2 (ulysses)",
                 "guidance 2 x sequence 2 (kv-gather)"})
    assert expected <= layouts


def test_torchrun_edit_writes_one_file_from_rank_0(tiny_edit_checkpoint: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m sama_cli edit`: one output, written by rank 0, the one-process edit's
    frames (lossless; within one level of rounding), and the ranks and layout in the JSON summary."""
    model = ["--model", str(tiny_edit_checkpoint), "--guidance", "3", *FAST]
    alone = tmp_path / "alone.mp4"
    one = subprocess.run([sys.executable, "-m", "sama_cli", "edit", str(CLIP), "remove the cup", "-o", str(alone),
                          *model], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert one.returncode == 0, one.stderr
    expected = read_video(alone).frames.int()
    for layout, described in (("auto", "guidance 2"), ("sequence", "sequence 2 (ulysses)")):
        run_dir = tmp_path / layout
        run_dir.mkdir()
        res = torchrun(2, "-m", "sama_cli", "edit", str(CLIP), "remove the cup", "-o", "out.mp4", *model,
                       "--parallel", layout, "--json", cwd=run_dir)
        assert res.returncode == 0, res.stderr[-3000:]
        lines = res.stdout.strip().splitlines()
        assert len(lines) == 1, res.stdout  # rank 0 alone prints the summary
        summary = json.loads(lines[0])
        assert summary["ranks"] == 2 and summary["layout"] == described
        assert sorted(p.name for p in run_dir.iterdir()) == ["out.mp4"]
        got = read_video(run_dir / "out.mp4").frames.int()
        assert got.shape == expected.shape and (got - expected).abs().max() <= 1


def test_a_step_cache_with_a_sequence_split_is_refused(tiny_edit_checkpoint: Path, tmp_path: Path) -> None:
    res = torchrun(2, "-m", "sama_cli", "edit", str(CLIP), "remove the cup", "-o", "out.mp4", "--model",
                   str(tiny_edit_checkpoint), "--guidance", "1", "--cache", "fbc", *FAST, cwd=tmp_path)
    assert res.returncode != 0
    assert "--cache with a sequence split" in res.stderr
    assert not (tmp_path / "out.mp4").exists()
