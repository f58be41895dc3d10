"""Shared test fixtures: where the shared reference data lives, and a fresh temp dir per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("SAMA_SHARED_DIR", REPO.parent / "shared"))
REAL_FIXTURES = SHARED_DIR / "fixtures" / "real"
REFERENCE_DIR = Path(os.environ.get("SAMA_REFERENCE_DIR", SHARED_DIR / "reference"))

# Two cores: keep intra-op threads bounded so that xdist workers do not oversubscribe.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def real_fixtures() -> Path:
    """The seven real clips (sources + SAMA-14B outputs) with manifest.jsonl."""
    assert (REAL_FIXTURES / "manifest.jsonl").is_file(), f"missing shared fixtures at {REAL_FIXTURES}"
    return REAL_FIXTURES
