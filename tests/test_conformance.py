"""Release conformance: every case of every `*.safetensors` file in the reference folder, run through our
forward from the release weight layout, must match the release's outputs (relative error <= 1e-4, fp32).

New vector files need no code change; `SAMA_REFERENCE_DIR` points elsewhere. Nothing is skipped: a file
that cannot be read or a case that cannot be run fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_DIR
from safetensors import safe_open

from sama_cli.model.config import ModelConfig
from sama_cli.model.weights import materialize, to_ours

TOLERANCE = 1e-4


def _discover() -> list:
    files = sorted(REFERENCE_DIR.glob("*.safetensors"))
    params = []
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                cases = json.loads((fh.metadata() or {})["cases"])
        except Exception as e:  # noqa: BLE001 - an unreadable file becomes a failing case
            params.append(pytest.param(f, None, repr(e), id=f"{f.name}:unreadable"))
            continue
        params += [pytest.param(f, case, None, id=f"{f.name}:{case}") for case in cases]
    if not params:
        params.append(pytest.param(REFERENCE_DIR, None, "no *.safetensors vectors found", id="no-vectors"))
    return params


_MODELS: dict[Path, torch.nn.Module] = {}


def _model_for(path: Path, fh) -> torch.nn.Module:
    if path not in _MODELS:
        config = ModelConfig.from_wan_config(json.loads(fh.metadata()["config"]))
        weights = {k[len("weights.") :]: fh.get_tensor(k) for k in fh.keys() if k.startswith("weights.")}
        model, report = materialize(config, to_ours(weights))
        assert report.loaded == len(weights) and not report.unexpected and not report.initialised
        _MODELS[path] = model.eval()
    return _MODELS[path]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("path,case,problem", _discover())
def test_conformance(path: Path, case: str | None, problem: str | None) -> None:
    assert problem is None, f"{path}: {problem}"
    with safe_open(str(path), framework="pt") as fh:
        model = _model_for(path, fh)
        keys = list(fh.keys())
        inputs = {k.split(".in.", 1)[1]: fh.get_tensor(k) for k in keys if k.startswith(f"{case}.in.")}
        outputs = {k.split(".out.", 1)[1]: fh.get_tensor(k) for k in keys if k.startswith(f"{case}.out.")}
    assert {"latents", "timestep", "context"} <= inputs.keys(), f"case {case} lacks inputs: {sorted(inputs)}"
    with torch.no_grad():
        out = model(
            inputs["latents"], inputs["timestep"], inputs["context"],
            source_latents=inputs.get("source_latents"), semantic_latents=inputs.get("semantic_latents"),
        )
    assert out.video.shape == outputs["video"].shape
    assert rel_err(out.video, outputs["video"]) <= TOLERANCE
    if "semantic_pred" in outputs:
        assert out.semantic is not None and out.semantic.shape == outputs["semantic_pred"].shape
        assert rel_err(out.semantic, outputs["semantic_pred"]) <= TOLERANCE
    else:
        assert out.semantic is None
