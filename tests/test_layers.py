"""The package's layers, read off its import statements: no module imports from a layer above its own
or from a package beside it (docs/architecture.md). Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sama_cli"

# lowest first; packages on one level sit side by side and may not import each other
LAYERS = [["core"], ["io"], ["model"], ["data"], ["train", "edit", "eval"], ["toy", "perf"], ["commands"], ["cli"],
          ["__main__"]]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str | None:
    """The top-level part of `sama_cli.<part>...` (None for the package root, which holds only the version)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sama_cli" else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                                                    if node.module == "sama_cli"]
    return [(line, m) for line, m in found if m == "sama_cli" or m.startswith("sama_cli.")]


def violations(package: Path) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        own = part_of(".".join(rel.parts))
        if own is None or own == "__init__":
            continue
        if own not in LEVEL:
            bad.append(f"{rel}: part {own!r} has no layer (add it to LAYERS and docs/architecture.md)")
            continue
        for line, module in imports_of(path):
            other = part_of(module)
            if other in (None, own, "__version__"):
                continue
            if other not in LEVEL or LEVEL[other] >= LEVEL[own]:
                bad.append(f"{rel}.py:{line}: {own} (level {LEVEL[own]}) imports {module} "
                           f"(level {LEVEL.get(other, '?')})")
    return bad


def test_no_import_runs_up_a_layer_or_across_to_a_sibling() -> None:
    assert violations(PACKAGE) == []


def test_the_checker_catches_an_upward_and_a_sideways_import(tmp_path: Path) -> None:
    pkg = tmp_path / "sama_cli"
    for part, text in {"io/video.py": "def f():\n    from sama_cli.train.loop import train\n",
                       "eval/runner.py": "import sama_cli.edit.editor\n",
                       "model/flow.py": "from sama_cli.core import errors\nfrom sama_cli.io.frames import fit_frames\n"}.items():
        (pkg / part).parent.mkdir(parents=True, exist_ok=True)
        (pkg / part).write_text(text)
    found = violations(pkg)
    assert len(found) == 2
    assert found[0].startswith("sama_cli/eval/runner.py:1: eval") and "sama_cli.edit.editor" in found[0]
    assert found[1].startswith("sama_cli/io/video.py:2: io (level 1) imports sama_cli.train.loop (level 4)")


def test_module_names_are_unique() -> None:
    """One word per concept: no two modules share a file name (commands/ mirrors the subcommands and is
    exempt, as are package markers)."""
    seen: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py") or path.parent.name == "commands":
            continue
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name"
        seen[path.name] = path


@pytest.mark.parametrize("part", [p for names in LAYERS for p in names if p not in ("cli", "__main__")])
def test_every_layer_exists(part: str) -> None:
    assert (PACKAGE / part / "__init__.py").is_file()
