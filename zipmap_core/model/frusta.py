"""Camera frusta for drawing, in numpy: the viewer and the GLB exporter draw the same cameras.
Apart from `geometry` so that the viewer draws them without importing torch (the studio's window
is on screen before torch has loaded)."""

from __future__ import annotations

import numpy as np


def frustum_corners(c2w: np.ndarray, k: np.ndarray, hw: tuple[int, int], size: float) -> np.ndarray:
    """Apex and the image plane's 4 corners [5, 3] at depth `size` (world coordinates)."""
    h, w = hw
    px = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64)
    rays = px @ np.linalg.inv(k).T * size
    return np.vstack([c2w[:3, 3], rays @ c2w[:3, :3].T + c2w[:3, 3]]).astype(np.float32)


def frustum_segments(corners: np.ndarray) -> np.ndarray:
    """The 8 line segments [8, 2, 3] of a frustum: apex to each corner, then the image rectangle."""
    apex, c = corners[0], corners[1:]
    segs = [(apex, c[i]) for i in range(4)] + [(c[i], c[(i + 1) % 4]) for i in range(4)]
    return np.array(segs, np.float32)
