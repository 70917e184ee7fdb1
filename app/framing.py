"""How the 3D view frames and shades things: how far back to stand to see a cloud, which field of
view shows a camera's whole photo, where a confidence ranks. Pure functions of numbers, so they
test without a screen."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction

MAX_FIT_STEP_BACK = 1.6


def fit_fov_deg(k: np.ndarray, image_hw: tuple[int, int], canvas_wh: tuple[int, int]) -> float:
    """VisPy's field of view (it spans the canvas's shorter side) at which a camera with
    intrinsics `k` shows its whole image on a canvas of `canvas_wh`, letterboxed, not cropped."""
    tx, ty = (image_hw[1] / 2) / float(k[0, 0]), (image_hw[0] / 2) / float(k[1, 1])
    aspect = canvas_wh[0] / max(canvas_wh[1], 1)
    half = max(ty, tx / aspect) if aspect >= 1 else max(tx, ty * aspect)
    return math.degrees(2 * math.atan(half))


def fit_distance(
    points: np.ndarray, centre: np.ndarray, direction: np.ndarray, fov_deg: float, keep: float = 99.5, margin: float = 1.1
) -> float:
    """Eye-to-centre distance along `direction` at which `keep` % of the points fall inside a
    cone of `fov_deg` (the canvas's narrower side), with a margin."""
    offset = points - centre
    along = offset @ direction
    lateral = np.linalg.norm(offset - along[:, None] * direction, axis=1)
    needed = lateral * margin / math.tan(math.radians(fov_deg) / 2) - along
    return float(np.percentile(needed, keep)) if len(needed) else 0.0


def confidence_ranks(conf: np.ndarray) -> np.ndarray:
    """Each confidence's rank among `conf`, in [0, 1] (ties share one): the scale the confidence
    slider uses, so the colour says which points a slider value hides, and a model whose
    confidences bunch up (or are quantised) still spreads over the whole colour map."""
    values = np.where(np.isnan(conf), -np.inf, conf)
    order = np.sort(values)
    return np.searchsorted(order, values, side="left") / max(len(values) - 1, 1)


def floor_grid(points: np.ndarray, scale: float, cells: int = 10) -> np.ndarray:
    """Segment end points [4 (cells + 1), 3] of a square grid under the scene: on the floor (y
    points down, so the 97th percentile of the points' height), centred on their median, 4 x
    `scale` wide."""
    pts = points[np.isfinite(points).all(1)]
    floor = float(np.percentile(pts[:, 1], 97)) if len(pts) else 0.0
    cx, cz = (np.median(pts[:, 0]), np.median(pts[:, 2])) if len(pts) else (0.0, 0.0)
    half = 2.0 * scale
    segs = []
    for t in np.linspace(-half, half, cells + 1):
        segs += [(cx + t, floor, cz - half), (cx + t, floor, cz + half), (cx - half, floor, cz + t), (cx + half, floor, cz + t)]
    return np.array(segs, np.float32)


MAX_IMAGE_PLANES = 96  # photos drawn on at most this many frusta: a long (live) video stays cheap to draw


def planes_shown(frames: int) -> set[int]:
    """The frames whose photos are drawn on their frusta: every `stride`-th, the stride the least
    power of two that keeps them at most MAX_IMAGE_PLANES. As a live scene grows, the set only
    loses every other member when the stride doubles, so the photos drawn are never made again
    (a new set a window made a hundred textured meshes a window, and their GL programs)."""
    stride = 1
    while -(-frames // stride) > MAX_IMAGE_PLANES:
        stride *= 2
    return set(range(0, frames, stride))


def grows(old: Reconstruction | None, new: Reconstruction | None) -> bool:
    """Whether `new` is `old` with frames added after its own, which stay as they were."""
    if old is None or new is None or new.num_frames < old.num_frames or new.image_hw != old.image_hw:
        return False
    n = old.num_frames
    return new.names[:n] == old.names and np.array_equal(new.extrinsics[:n], old.extrinsics)
