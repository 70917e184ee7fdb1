"""The result of a reconstruction and its `.zipmap` scene file.

A `.zipmap` file is a zip archive with no pickled objects:
- `manifest.json`: format name and version, frame names, image size, metadata, timings;
- `arrays.npz`: images (uint8 [S,H,W,3]), extrinsics (world-to-camera [S,3,4], frame 0 = identity),
  intrinsics [S,3,3], depth / depth_conf [S,H,W], points_cam / points_world [S,H,W,3],
  original_wh [S,2];
- `state.npz` (optional): the per-layer fast weights `layer{i}.w0|w1|w2`, so a reopened scene can
  be queried for novel views without recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .scene_file import (
    SCENE_FORMAT,
    SCENE_VERSION,
    SceneFileError,
    expected_arrays,
    read_scene,
    write_scene,
)

ARRAY_FIELDS = tuple(expected_arrays(1, (1, 1)))
__all__ = ["ARRAY_FIELDS", "Reconstruction", "SceneFileError"]


@dataclass
class Reconstruction:
    names: list[str]
    images: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    points_cam: np.ndarray
    points_world: np.ndarray
    original_wh: np.ndarray
    state: list[dict[str, np.ndarray]] | None = None
    state_scale: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.names)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def colors(self) -> np.ndarray:
        """Per-point colours [S, H, W, 3] in [0, 1], aligned with `points_world`."""
        return self.images.astype(np.float32) / 255.0

    @property
    def cam_to_world(self) -> np.ndarray:
        rot = self.extrinsics[:, :3, :3].transpose(0, 2, 1)
        t = -rot @ self.extrinsics[:, :3, 3:4]
        return np.concatenate((rot, t), axis=2)

    @property
    def has_state(self) -> bool:
        return self.state is not None

    def confidence_threshold(self, percentile: float) -> float:
        """Confidence value below which `percentile` % of the pixels lie."""
        return float(np.percentile(self.depth_conf, percentile)) if percentile > 0 else -np.inf

    def point_cloud(self, percentile: float = 0.0, frames: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points [N,3], colours uint8 [N,3], confidence [N]) above a confidence percentile."""
        idx = list(range(self.num_frames)) if frames is None else frames
        conf = self.depth_conf[idx]
        mask = (conf >= self.confidence_threshold(percentile)) & np.isfinite(self.points_world[idx]).all(-1)
        return self.points_world[idx][mask], self.images[idx][mask], conf[mask]

    # ---- scene file -------------------------------------------------------------------------------
    def save(self, path: str | Path, include_state: bool = True) -> Path:
        path = Path(path)
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in ARRAY_FIELDS}
        has_state = bool(include_state and self.state is not None)
        manifest = {
            "format": SCENE_FORMAT,
            "version": SCENE_VERSION,
            "names": self.names,
            "image_hw": list(self.image_hw),
            "num_frames": self.num_frames,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "has_state": has_state,
            "state_scale": self.state_scale,
            "metadata": self.metadata,
            "timings": self.timings,
        }
        state = {f"layer{i}.{k}": v for i, layer in enumerate(self.state or []) for k, v in layer.items()}
        with atomic_path(path) as tmp:
            write_scene(tmp, manifest, arrays, state if has_state else None)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Reconstruction":
        """Opens a `.zipmap`; a malformed or hostile file raises `SceneFileError` (see `scene_file`)."""
        manifest, arrays, state = read_scene(path)
        return cls(
            names=list(manifest["names"]),
            **arrays,
            state=state,
            state_scale=float(manifest.get("state_scale", 1.0)),
            metadata=dict(manifest.get("metadata", {})),
            timings=dict(manifest.get("timings", {})),
        )
