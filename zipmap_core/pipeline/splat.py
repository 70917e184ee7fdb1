"""Point-cloud fallback for novel views: z-buffered splats of the reconstructed points.

Models without a novel-view head can still show something from a virtual camera; it is also the
baseline the scene-state render must beat on held-out photos.
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.novel_views import NovelViews
from ..io.reconstruction import Reconstruction


def splat_render(
    recon: Reconstruction,
    c2w: np.ndarray,
    intrinsics: np.ndarray,
    size: tuple[int, int],
    radius: int = 1,
    min_confidence_percentile: float = 0.0,
):
    """Renders cameras [N, 3|4, 4] into (rgb [N,H,W,3], depth [N,H,W] (0 where empty), coverage)."""
    h, w = size
    pts = torch.as_tensor(recon.points_world.reshape(-1, 3), dtype=torch.float32)
    cols = torch.as_tensor(recon.colors.reshape(-1, 3), dtype=torch.float32)
    if min_confidence_percentile > 0:
        conf = recon.depth_conf.reshape(-1)
        keep = torch.as_tensor(conf >= np.percentile(conf, min_confidence_percentile))
        pts, cols = pts[keep], cols[keep]
    rgbs, depths, covers = [], [], []
    offsets = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    for pose, k in zip(np.asarray(c2w, np.float32), np.asarray(intrinsics, np.float32)):
        rot, t = torch.as_tensor(pose[:3, :3]), torch.as_tensor(pose[:3, 3])
        cam = (pts - t) @ rot  # world -> camera: R^T (p - t)
        z = cam[:, 2]
        front = z > 1e-6
        uv = cam[front, :2] / z[front, None] * torch.as_tensor([k[0, 0], k[1, 1]]) + torch.as_tensor([k[0, 2], k[1, 2]])
        zf, cf = z[front], cols[front]
        zbuf = torch.full((h * w,), float("inf"))
        best = torch.full((h * w,), -1, dtype=torch.long)
        px_all, idx_all, z_all = [], [], []
        for dx, dy in offsets:
            u = torch.floor(uv[:, 0]).long() + dx
            v = torch.floor(uv[:, 1]).long() + dy
            inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
            px_all.append(v[inside] * w + u[inside])
            idx_all.append(torch.nonzero(inside)[:, 0])
            # a point's own pixel beats its neighbours' splats at (nearly) equal depth
            z_all.append(zf[inside] * (1 + 0.02 * (abs(dx) + abs(dy))))
        px, idx, zz = torch.cat(px_all), torch.cat(idx_all), torch.cat(z_all)
        zbuf.scatter_reduce_(0, px, zz, reduce="amin")
        winner = zz <= zbuf[px]
        best[px[winner]] = idx[winner]
        hit = best >= 0
        rgb = torch.zeros(h * w, 3)
        rgb[hit] = cf[best[hit]]
        depth = torch.zeros(h * w)
        depth[hit] = zf[best[hit]]
        rgbs.append(rgb.reshape(h, w, 3).numpy())
        depths.append(depth.reshape(h, w).numpy())
        covers.append(hit.reshape(h, w).float().numpy())
    return NovelViews(np.stack(rgbs), np.stack(depths), np.stack(covers))
