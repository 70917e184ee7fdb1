"""What is under the cursor in the 3D view: the nearest drawn frustum or point, by projecting
world positions through the view's own VisPy transform (what is drawn is what is picked)."""

from __future__ import annotations

import numpy as np

CLICK_SLOP_PX = 4  # a press and release closer than this is a click, not a drag


def is_click(release) -> bool:
    """Whether a VisPy mouse release ends a click (its press within `CLICK_SLOP_PX`), not a drag."""
    press = getattr(release, "press_event", None)
    if press is None:
        return False
    return bool(np.linalg.norm(np.asarray(release.pos[:2], float) - np.asarray(press.pos[:2], float)) <= CLICK_SLOP_PX)


def screen_distances(transform, points: np.ndarray, canvas_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(pixel distance of each world point's projection from `canvas_xy`, whether it is in front)."""
    screen = transform.map(points)
    w = screen[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = screen[:, :2] / w[:, None]
    return np.linalg.norm(xy - np.asarray(canvas_xy), axis=1), w > 0


def nearest_frustum(transform, corners: list[np.ndarray], canvas_xy: tuple[float, float], radius_px: float) -> int | None:
    """Index of the frustum (apex + image-plane corners, world) whose centre is drawn nearest
    `canvas_xy`, if within `radius_px`; frusta behind the view never match."""
    if not corners:
        return None
    d, front = screen_distances(transform, np.array([c.mean(0) for c in corners]), canvas_xy)
    d[~front] = np.inf
    i = int(np.argmin(d))
    return i if d[i] <= radius_px else None


def nearest_point(transform, positions: np.ndarray, eye: np.ndarray, canvas_xy: tuple[float, float], radius_px: float) -> np.ndarray | None:
    """The drawn point under the cursor (within `radius_px`), the one nearest the eye among them."""
    if not len(positions):
        return None
    d, front = screen_distances(transform, positions, canvas_xy)
    near = np.nonzero((d <= radius_px) & front)[0]
    if not len(near):
        return None
    return positions[near[np.argmin(np.linalg.norm(positions[near] - eye, axis=1))]]
