"""Where the files shipped with ZipMap Studio live: the bundled model, the sample scene, icons."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUNDLED_MODEL = RESOURCES / "zipmap_small.safetensors"
SAMPLE_SCENE = RESOURCES / "samples"
