"""The app's own records, free of Qt: what the user placed and chose, which views draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zipmap_core.model.geometry import intrinsics_from_fov


@dataclass
class VirtualCamera:
    """A camera placed by the user: camera-to-world (OpenCV axes), vertical field of view, size."""

    c2w: np.ndarray
    fov_y_deg: float = 60.0
    width: int = 112
    height: int = 84
    name: str = "virtual"

    def intrinsics(self) -> np.ndarray:
        return intrinsics_from_fov(self.fov_y_deg, (self.height, self.width)).numpy()
