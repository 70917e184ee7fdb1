"""Point-cloud fallback for novel views: z-buffered splats of the reconstructed points.

Models without a novel-view head can still show something from a virtual camera; it is also the
baseline the scene-state render must beat on held-out photos.
"""

from __future__ import annotations

import numpy as np

from ..dense.baselines import splat_points
from ..io.novel_views import NovelViews
from ..io.reconstruction import Reconstruction


def splat_render(
    recon: Reconstruction,
    c2w: np.ndarray,
    intrinsics: np.ndarray,
    size: tuple[int, int],
    radius: int = 1,
    min_confidence_percentile: float = 0.0,
) -> NovelViews:
    """Renders cameras [N, 3|4, 4] into (rgb [N,H,W,3], depth [N,H,W] (0 where empty), coverage)."""
    pts = recon.points_world.reshape(-1, 3)
    cols = recon.colors.reshape(-1, 3).astype(np.float32)
    if min_confidence_percentile > 0:
        conf = recon.depth_conf.reshape(-1)
        keep = conf >= np.percentile(conf, min_confidence_percentile)
        pts, cols = pts[keep], cols[keep]
    views = [splat_points(pts, cols, pose, k, size, radius) for pose, k in zip(np.asarray(c2w), np.asarray(intrinsics))]
    rgb, depth, hit = (np.stack(v) for v in zip(*views))
    return NovelViews(rgb, depth, hit.astype(np.float32))
