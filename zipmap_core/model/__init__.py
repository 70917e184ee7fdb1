"""The network: configuration, encoder, frame and TTT global blocks, heads, and the camera
geometry they share. No files, no devices: the ground floor every other layer stands on.
(`config` is plain Python; the network's modules import torch when first named here.)"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ModelOutput": "zipmap", "ZipMap": "zipmap", "ZipMapConfig": "config"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zipmap_core.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
