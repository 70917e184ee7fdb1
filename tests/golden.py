"""Access to the parity vectors made with the authors' code (`../shared/golden`)."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zipmap_core.model.config import ZipMapConfig
from zipmap_core.model.zipmap import ZipMap

GOLDEN_DIR = Path(os.environ.get("ZIPMAP_GOLDEN_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "golden"))


def require_golden(name: str) -> Path:
    path = GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"golden vectors not found at {GOLDEN_DIR} (set ZIPMAP_GOLDEN_DIR to the shared/golden folder)")
    return path


def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads(require_golden(name).read_text())
    return meta, load_file(str(GOLDEN_DIR / f"{name}.safetensors"))


def rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected.double()).pow(2).mean().sqrt()
    return float(err / (expected.double().pow(2).mean().sqrt() + 1e-30))


def golden_model(name: str) -> tuple[ZipMap, dict, dict[str, torch.Tensor]]:
    """The model of golden case `name`, built from its recorded configuration and weights."""
    meta, tensors = load_case(name)
    source = meta.get("uses_weights_of", name)
    source_meta, weights = (meta, tensors) if source == name else load_case(source)
    cfg = ZipMapConfig.from_reference(meta.get("config") or source_meta["config"], meta.get("model") or source_meta.get("model"))
    model = ZipMap(cfg)
    state = {k[len("weight.") :]: v for k, v in weights.items() if k.startswith("weight.")}
    model.load_state_dict(state, strict=True)
    return model.eval(), meta, tensors


def state_tolerances(meta: dict) -> dict[str, float]:
    """Per fast-weight tensor tolerances (2.5x the reference's own noise floor, measured with both
    AVX2 and AVX-512 kernels). Some golden files store the table as a Python dict literal."""
    table = meta.get("state_rel_rms_tolerance")
    if table is None:
        raise AssertionError("golden file has no state_rel_rms_tolerance table")
    return {k: float(v) for k, v in (ast.literal_eval(table) if isinstance(table, str) else table).items()}


def golden_kernels() -> bool:
    """Whether this process runs the kernels the golden files were made with (AVX2 for ATen and
    oneDNN): there our fast weights must equal the reference's bit for bit."""
    return (os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2"
            and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2")


def check_states(meta: dict, states: list[dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor],
                 exact_route: bool = True) -> None:
    """Every stored fast weight within its own tolerance, and every tolerance used; with the
    golden files' own kernels, bit-identical."""
    tol = state_tolerances(meta)
    keys = [k for k in tensors if k.startswith("state.")]
    assert keys, "golden file has no stored state"
    assert set(keys) == set(tol), f"state tensors without a tolerance or missing: {set(keys) ^ set(tol)}"
    errors = {}
    for key in keys:
        _, layer, name = key.split(".")
        errors[key] = rel_rms(states[int(layer)][name], tensors[key])
    bad = {k: (round(e, 5), tol[k]) for k, e in errors.items() if e > tol[k]}
    assert not bad, f"fast weights outside tolerance (error, tolerance): {bad}"
    if exact_route and golden_kernels():
        differ = [k for k, e in errors.items() if e != 0.0]
        assert not differ, f"with the golden kernels these fast weights differ from the reference: {differ}"
