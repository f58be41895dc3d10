"""The command line as a user meets it: help, version, one-line errors with meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


HEAVY = ("torch", "diffusers", "transformers")

# Runs in a fresh interpreter: import the CLI, then ask it for --version and for the help of the app and of
# every subcommand (found on the app, so a new one is covered). After each step it notes how it exited, how
# its output starts, and which heavy libraries (argv[2:]) are loaded, each with the chain of sama_cli lines
# that first imported it. Writes {step: [exit code, {library: chain}, output]} as JSON to the file argv[1].
PROBE = """
import contextlib, io, json, sys, traceback
heavy, first = sys.argv[2:], {}

class Watch:  # records who imports a heavy library first; finds nothing itself
    def find_spec(self, name, path=None, target=None):
        if name in heavy and name not in first:
            chain = [f"{f.filename.rsplit('/sama_cli/', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack()
                     if "/sama_cli/" in f.filename]
            first[name] = " -> ".join(chain) or "?"

sys.meta_path.insert(0, Watch())
loaded = lambda: {m: first.get(m, "?") for m in heavy if m in sys.modules}
import sama_cli.cli as cli
import typer.main
report = {"import sama_cli.cli": [0, loaded(), ""]}

def paths(cmd, prefix):
    yield prefix
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from paths(sub, [*prefix, name])

def run(args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args)
            code = 0
        except SystemExit as e:
            code = e.code or 0
    report[" ".join(["sama", *args])] = [code, loaded(), out.getvalue()[:200]]

run(["--version"])
for path in paths(typer.main.get_command(cli.app), []):
    run([*path, "--help"])
json.dump(report, open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def startup_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """What PROBE found, step by step."""
    where = tmp_path_factory.mktemp("startup") / "report.json"
    res = subprocess.run([sys.executable, "-c", PROBE, str(where), *HEAVY], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(where.read_text())


def test_importing_the_cli_and_every_help_leave_torch_unloaded(startup_report: dict[str, list]) -> None:
    """A shell tool answers --help at once: the Typer app, its --version and every `sama ... --help` must not
    import torch, diffusers or transformers (import them inside the command function that uses them)."""
    helps = [step for step in startup_report if step.endswith("--help")]
    for sub in ("synth", "encode", "perturb", "anchor", "edit", "train", "bench", "bench run", "bench filter"):
        assert f"sama {sub} --help" in helps
    for step, (code, loaded, out) in startup_report.items():
        assert code == 0, f"{step} exited with {code}"
        assert not loaded, f"{step} imported " + "; ".join(f"{m} (via {who})" for m, who in loaded.items())
        assert step == "import sama_cli.cli" or out.strip(), f"{step} printed nothing"
    assert startup_report["sama --version"][2].strip() == f"sama {__version__}"


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
