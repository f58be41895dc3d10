"""Where the package's own files are: its assets (the embedded toy model, the real fixture clips) and,
in a source checkout, the repository's recipes."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
ASSETS = PACKAGE / "assets"
TOY_MODEL = ASSETS / "toy_model"
FIXTURES = ASSETS / "fixtures" / "real"
RECIPES = PACKAGE.parent / "recipes"  # present in a source checkout, not in an installed wheel
