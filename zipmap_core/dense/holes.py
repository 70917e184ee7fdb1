"""Filling what a rendered view did not see: cracks in a warped depth map, and pixels no photo
covered.

Depth cracks are filled from their farthest neighbour, because a crack beside an edge is almost
always background the foreground uncovered; colour holes are filled by push-pull (averages of
the covered pixels over a pyramid), which blends smoothly from the hole's rim without the seams
or the cost of diffusion inpainting."""

from __future__ import annotations

import cv2
import numpy as np

CRACK_STEPS = 3  # 3x3 dilations: depth cracks up to about twice this wide are closed
HOLE_REACH = 0.04  # of the picture's diagonal: the rim of a large uncovered region that is filled
SMALL_HOLE = 0.05  # of the picture's pixels: an uncovered region up to this size is filled whole


def close_cracks(depth: np.ndarray, steps: int = CRACK_STEPS) -> np.ndarray:
    """`depth` [H, W] (0 = none) with holes a few pixels wide filled by their farthest neighbour."""
    out = depth.astype(np.float32).copy()
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(steps):
        hole = out <= 0
        if not hole.any():
            break
        out[hole] = cv2.dilate(out, kernel)[hole]
    return out


def fill_holes(rgb: np.ndarray, covered: np.ndarray, reach: float = HOLE_REACH) -> np.ndarray:
    """rgb [H, W, 3] with its holes filled by `push_pull`: an uncovered region up to SMALL_HOLE
    of the picture whole (sky stereo could not match, a gap between photos), a larger one only
    within `reach` of its rim; what no photo saw anywhere near stays black (a view beside the
    scene is not painted with the smear of its edge)."""
    if covered.all() or not covered.any():
        return np.where(covered[..., None], rgb, 0).astype(np.float32)
    hole = (~covered).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hole, connectivity=4)
    large = np.zeros(count, bool)
    large[1:] = stats[1:, cv2.CC_STAT_AREA] > SMALL_HOLE * covered.size
    far = large[labels] & (cv2.distanceTransform(hole, cv2.DIST_L2, 3) > reach * float(np.hypot(*covered.shape)))
    return np.where(far[..., None], 0, push_pull(rgb, covered.astype(np.float32))).astype(np.float32)


def push_pull(rgb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """rgb [H, W, 3] with the pixels of weight 0 filled by weighted averages from a pyramid."""
    w = np.clip(weight.astype(np.float32), 0, 1)
    if w.min() > 0 or w.max() <= 0:
        return rgb.astype(np.float32)
    levels: list[tuple[np.ndarray, np.ndarray]] = [(rgb.astype(np.float32) * w[..., None], w)]
    while min(levels[-1][1].shape) > 1 and levels[-1][1].min() <= 0:
        c, a = levels[-1]
        c2, a2 = cv2.pyrDown(c), cv2.pyrDown(a)
        norm = np.maximum(a2, 1e-8)[..., None]
        a2c = np.clip(a2 * 4, 0, 1)  # a pixel is covered at the coarser level once a quarter of it was
        levels.append((c2 / norm * a2c[..., None], a2c))
    colour, alpha = levels[-1]
    filled = colour / np.maximum(alpha, 1e-8)[..., None]
    for c, a in reversed(levels[:-1]):
        up = cv2.resize(filled, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)
        own = c / np.maximum(a, 1e-8)[..., None]
        filled = own * a[..., None] + up * (1 - a[..., None])
    return filled
