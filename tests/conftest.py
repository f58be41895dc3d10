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
