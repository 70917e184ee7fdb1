"""The four official configurations have exactly the state-dict layout of the published files."""

from __future__ import annotations

import json

import pytest
import torch
from golden import GOLDEN_DIR, require_golden

from zipmap_core.model.config import OFFICIAL_CONFIGS, OFFICIAL_FILES
from zipmap_core.model.zipmap import ZipMap


@pytest.mark.parametrize("variant", sorted(OFFICIAL_CONFIGS))
def test_official_layout_matches(variant):
    require_golden("official_checkpoint_layout")
    layout = json.loads((GOLDEN_DIR / "official_checkpoint_layout.json").read_text())["variants"]
    expected = layout[OFFICIAL_FILES[variant]]
    with torch.device("meta"):
        model = ZipMap(OFFICIAL_CONFIGS[variant])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) - set(expected["state_dict"]) == set(), "keys we have that the file lacks"
    assert set(expected["state_dict"]) - set(ours) == set(), "keys the file has that we lack"
    mismatched = {k: (ours[k], s) for k, s in expected["state_dict"].items() if ours[k] != s}
    assert not mismatched
    assert sum(p.numel() for p in model.parameters()) == expected["num_params"]
