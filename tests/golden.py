"""Access to the parity vectors made with the authors' code (`../shared/golden`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zipmap_core.config import ZipMapConfig
from zipmap_core.model import ZipMap

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
