"""The gauge a scene is expressed in (its first frame at the origin, its unit) and the sizes
COLMAP saw it at: what the classical engine and refinement do to COLMAP's models (read through
`io.colmap_model`) before they become scenes."""

from __future__ import annotations

import numpy as np

from ..io.colmap_model import SparseModel
from ..io.tracks import Tracks


def to_first_frame(model: SparseModel, scale: float = 1.0) -> SparseModel:
    """The model with its first registered frame at the origin looking down +z (a scene's
    convention) and its lengths multiplied by `scale`."""
    first = np.vstack((model.extrinsics[0], [0, 0, 0, 1]))
    world_from_first = np.linalg.inv(first)
    ext = np.einsum("nij,jk->nik", model.extrinsics, world_from_first)
    ext[:, :, 3] *= scale
    rot, t = first[:3, :3], first[:3, 3]
    xyz = ((model.tracks.xyz.astype(np.float64) @ rot.T + t) * scale).astype(np.float32)
    tracks = Tracks(xyz, model.tracks.rgb, model.tracks.error, model.tracks.observations, model.tracks.pixels)
    return SparseModel(model.frames, ext, model.intrinsics, tracks)


def median_depth(model: SparseModel) -> float:
    """The median depth of the observed points in the frames that saw them."""
    t = model.tracks
    if not len(t.observations):
        return 1.0
    point, frame = t.observations[:, 0], t.observations[:, 1]
    ext = model.extrinsics[frame]
    z = np.einsum("mj,mj->m", ext[:, 2, :3], t.xyz[point].astype(np.float64)) + ext[:, 2, 3]
    z = z[z > 0]
    return float(np.median(z)) if len(z) else 1.0


def observed_depths(tracks: Tracks, extrinsics: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, triangulated depth, `depth` map's value) at every observation in front of its
    camera: the pairs a depth map is scored or aligned on."""
    point, frame = tracks.observations[:, 0], tracks.observations[:, 1]
    ext = extrinsics[frame]
    z = np.einsum("mj,mj->m", ext[:, 2, :3], tracks.xyz[point].astype(np.float64)) + ext[:, 2, 3]
    h, w = depth.shape[1:]
    u = np.clip(tracks.pixels[:, 0].astype(int), 0, w - 1)
    v = np.clip(tracks.pixels[:, 1].astype(int), 0, h - 1)
    at = depth[frame, v, u].astype(np.float64)
    ok = (z > 0) & np.isfinite(at) & (at > 0)
    return frame[ok], z[ok], at[ok]


def scaled_intrinsics(k: np.ndarray, factor: float) -> np.ndarray:
    """Intrinsics [..., 3, 3] for pictures `factor` times larger."""
    return k * np.array([[factor], [factor], [1.0]], dtype=k.dtype)


def at_scale(model: SparseModel, factor: float) -> SparseModel:
    """A model read from pictures 1/`factor` times the scene's size, in the scene's pixels."""
    maps = np.repeat(np.diag([factor, factor, 1.0])[None], len(model.frames), 0)
    return in_pixels(model, maps)


def in_pixels(model: SparseModel, maps: np.ndarray) -> SparseModel:
    """The model in other pixels of its frames: `maps` [R, 3, 3] takes each registered frame's
    pixels to the new ones (`io.preprocess.pixel_map`); intrinsics, observed pixels and
    reprojection errors follow (errors by the mean scale)."""
    t = model.tracks
    frame = t.observations[:, 1]
    m = maps[frame].astype(np.float64)
    pixels = np.einsum("mij,mj->mi", m[:, :2, :2], t.pixels.astype(np.float64)) + m[:, :2, 2]
    scale = np.sqrt(np.abs(np.linalg.det(maps[:, :2, :2]))).mean() if len(maps) else 1.0
    tracks = Tracks(t.xyz, t.rgb, (t.error * scale).astype(np.float32), t.observations, pixels.astype(np.float32))
    return SparseModel(model.frames, model.extrinsics, np.einsum("nij,njk->nik", maps, model.intrinsics), tracks)
