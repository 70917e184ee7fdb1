"""ZipMap engine: a faithful implementation of ZipMap (CVPR 2026) with no GUI dependencies.

The public names below are imported when first used, so that `zipmap --help`, argument errors
and the light modules (options, errors) answer without importing torch."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cancelled": "cancel",
    "CancelToken": "cancel",
    "select_device": "device",
    "CheckpointError": "errors",
    "SceneFileError": "errors",
    "ZipMapError": "errors",
    "convert": "io.checkpoints",
    "load_checkpoint": "io.checkpoints",
    "save_model": "io.checkpoints",
    "NoUsableImagesError": "io.inputs",
    "VideoSampling": "io.inputs",
    "load_inputs": "io.inputs",
    "Reconstruction": "io.reconstruction",
    "OFFICIAL_CONFIGS": "model.config",
    "ZipMapConfig": "model.config",
    "get_config": "model.config",
    "ZipMap": "model.zipmap",
    "NovelViews": "io.novel_views",
    "Reconstructor": "pipeline.reconstructor",
    "BUNDLED_MODEL": "resources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zipmap_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
