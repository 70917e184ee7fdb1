"""What the 3D view draws of a scene, and in which colours. A scene the dense stage measured is
drawn as its fused cloud (`Reconstruction.point_cloud`: each surface point once); any other as
every frame's depth map, where a surface seen by several frames is drawn once per frame. Either
way the view's controls mean the same: hidden frames hide what they saw (the fused points that
came from them), the confidence slider ranks the points shown (a fused point's confidence is how
many frames agree on it), and the colour modes read each point's photo colour, its depth in the
camera that saw it, its confidence rank or its frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from vispy.color import get_colormap

from .framing import confidence_ranks

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction

COLOR_MODES = ("rgb", "depth", "confidence", "frame")
CONF_COLOR_FLOOR = 0.15  # colour by confidence starts above viridis's darkest purple, which vanishes on the dark background
FRAME_HUES = 12  # colour by frame cycles through this many hues


def scene_cloud(recon: Reconstruction, percentile: float, frames: list[int], mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(points float32 [N, 3], RGBA float32 [N, 4]) of `frames` above the confidence `percentile`."""
    dense = recon.dense_cloud(percentile, frames)
    if dense is None:
        mask = recon.confidence_mask(percentile, frames)
        return recon.points_world[mask].astype(np.float32), map_colours(recon, mask, mode)
    xyz, frame = np.asarray(dense.xyz, np.float32), dense.frame
    if mode == "rgb":
        return xyz, rgba(dense.rgb)
    if mode == "confidence":
        return xyz, confidence_colours(dense.confidence)
    if mode == "frame":
        return xyz, frame_colours(frame)
    ext = recon.extrinsics[frame]
    depth = np.einsum("nj,nj->n", ext[:, 2, :3], xyz) + ext[:, 2, 3]  # in the camera of the frame that measured it
    return xyz, depth_colours(depth)


def map_colours(recon: Reconstruction, mask: np.ndarray, mode: str) -> np.ndarray:
    """RGBA [N, 4] of the depth maps' points under `mask` (bool [S, H, W])."""
    if mode == "rgb":
        return rgba(recon.images[mask])
    if mode == "frame":
        return frame_colours(np.broadcast_to(np.arange(recon.num_frames)[:, None, None], mask.shape)[mask])
    if mode == "confidence":
        return confidence_colours(recon.depth_conf[mask])
    return depth_colours(recon.depth[mask])


def rgba(rgb: np.ndarray) -> np.ndarray:
    colours = np.asarray(rgb, np.float32) / 255
    return np.concatenate((colours, np.ones((len(colours), 1), np.float32)), 1)


def frame_colours(frame: np.ndarray) -> np.ndarray:
    return get_colormap("hsl").map((np.asarray(frame) % FRAME_HUES) / float(FRAME_HUES))


def confidence_colours(conf: np.ndarray) -> np.ndarray:
    return get_colormap("viridis").map(CONF_COLOR_FLOOR + (1 - CONF_COLOR_FLOOR) * confidence_ranks(np.asarray(conf, np.float64)))


def depth_colours(depth: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(depth, [2, 98]) if len(depth) else (0, 1)
    return get_colormap("viridis").map(np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1))
