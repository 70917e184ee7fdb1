"""What a rendered view must beat on held-out photos: the nearest photo as it is, the flat mean
colour of the neighbours, the pixel mean of the two nearest photos, and the sparse points splatted.
Each returns rgb float32 [H, W, 3] in [0, 1] for one held-out camera, reading only `sources`."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..io.tracks import Tracks
from .cameras import HALF, project, to_world_to_camera
from .render import pose_ranking

NEIGHBOURS = 2  # frames the mean-colour and two-frame baselines average
SPLAT_RADIUS = 1  # pixels around each splatted point (a 3x3 square)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 picture as float32 [0, 1] at `size` (h, w)."""
    out = image if image.shape[:2] == tuple(size) else cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32) / 255.0


def nearest_frame(
    images: np.ndarray, extrinsics: np.ndarray, c2w: np.ndarray, sources: Sequence[int] | np.ndarray, scale: float, size
) -> np.ndarray:
    return resized(images[pose_ranking(c2w, extrinsics, sources, scale)[0]], size)


def two_frame_mean(
    images: np.ndarray, extrinsics: np.ndarray, c2w: np.ndarray, sources: Sequence[int] | np.ndarray, scale: float, size
) -> np.ndarray:
    near = pose_ranking(c2w, extrinsics, sources, scale)[:NEIGHBOURS]
    return np.mean([resized(images[i], size) for i in near], axis=0)


def mean_colour(
    images: np.ndarray, extrinsics: np.ndarray, c2w: np.ndarray, sources: Sequence[int] | np.ndarray, scale: float, size
) -> np.ndarray:
    near = two_frame_mean(images, extrinsics, c2w, sources, scale, size)
    return np.broadcast_to(near.reshape(-1, 3).mean(0), near.shape).astype(np.float32).copy()


def kept_points(tracks: Tracks, images: np.ndarray, sources: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P, 3], rgb float32 [P, 3]) of the sparse points seen by at least two frames of
    `sources`, coloured by the mean of their pixels in those frames (COLMAP's own colours also
    averaged the held-out frames' pixels)."""
    keep = np.zeros(int(tracks.observations[:, 1].max(initial=-1)) + 1, bool)
    keep[np.asarray(sources, int)] = True
    obs = keep[tracks.observations[:, 1]]
    point, frame, pix = tracks.observations[obs, 0], tracks.observations[obs, 1], tracks.pixels[obs]
    h, w = images.shape[1:3]
    col, row = np.clip(pix[:, 0].astype(int), 0, w - 1), np.clip(pix[:, 1].astype(int), 0, h - 1)
    count = np.bincount(point, minlength=tracks.num_points)
    colour = np.stack([np.bincount(point, images[frame, row, col, c].astype(np.float64), tracks.num_points) for c in range(3)], -1)
    seen = count >= 2
    return tracks.xyz[seen].astype(np.float64), (colour[seen] / count[seen, None] / 255.0).astype(np.float32)


def splat_points(
    xyz: np.ndarray, rgb: np.ndarray, c2w: np.ndarray, k: np.ndarray, size: tuple[int, int], radius: int = SPLAT_RADIUS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points [P, 3] z-buffered into one camera as small squares: (rgb float32 [H, W, 3], depth
    [H, W], covered bool [H, W]), black and 0 where none falls. The one splatter: the sparse
    points' baseline here, and every scene's point-cloud novel views."""
    h, w = size
    u, v, z = project(np.asarray(xyz, np.float64), np.asarray(k, np.float64), to_world_to_camera(np.asarray(c2w)[None])[0])
    front = z > 1e-6
    idx, depth, which = [], [], []
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            col = np.floor(u - HALF + 0.5).astype(np.int64) + dx
            row = np.floor(v - HALF + 0.5).astype(np.int64) + dy
            ok = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
            idx.append(row[ok] * w + col[ok])
            depth.append(z[ok] * (1 + 0.01 * (abs(dx) + abs(dy))))  # a point's own pixel wins ties
            which.append(np.nonzero(ok)[0])
    index, zz, owner = (np.concatenate(a) for a in (idx, depth, which))
    zbuf = torch.full((h * w,), float("inf"), dtype=torch.float64)
    zbuf.scatter_reduce_(0, torch.from_numpy(index), torch.from_numpy(zz), reduce="amin")
    win = zz <= zbuf.numpy()[index]
    colour, out_z, hit = np.zeros((h * w, 3), np.float32), np.zeros(h * w, np.float32), np.zeros(h * w, bool)
    colour[index[win]] = rgb[owner[win]]
    out_z[index[win]] = z[owner[win]]
    hit[index[win]] = True
    return colour.reshape(h, w, 3), out_z.reshape(h, w), hit.reshape(h, w)
