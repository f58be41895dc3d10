"""The command line as a user meets it: help, version, one-line errors with meaningful exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sama_cli import __version__

REPO = Path(__file__).resolve().parent.parent


def sama(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sama_cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=120)


def test_help_and_version() -> None:
    out = sama("--help")
    assert out.returncode == 0 and "train" in out.stdout
    out = sama("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"sama {__version__}"


def test_bad_recipe_is_one_line_and_exit_2(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lrr: 1\n")
    out = sama("train", str(recipe))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "unknown key optim.lrr" in lines[0]
    assert "Traceback" not in out.stderr
    out = sama("train", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml" in out.stderr and "does not exist" in out.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = sama("--debug", "train", str(tmp_path / "missing.yaml"))
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_bad_override_names_it(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    out = sama("train", str(recipe), "optim.lr")
    assert out.returncode == 2 and "override 'optim.lr' must look like key.sub=value" in out.stderr
