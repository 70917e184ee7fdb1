"""Between a COLMAP model and a `Reconstruction`: cameras and tracks read out of pycolmap, the
scene's cameras written into one, and the gauge (frame and scale) a scene is expressed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.tracks import Tracks


@dataclass
class SparseModel:
    """What COLMAP found, by frame index: poses and intrinsics of the registered frames."""

    frames: np.ndarray  # int [R]: the registered frames, ascending
    extrinsics: np.ndarray  # float64 [R, 3, 4] world-to-camera
    intrinsics: np.ndarray  # float64 [R, 3, 3]
    tracks: Tracks  # observations numbered by position in `frames`

    @property
    def mean_error(self) -> float:
        return self.tracks.mean_error()


def read_model(model: Any, frame_of: Any) -> SparseModel:
    """A pycolmap Reconstruction's registered images (named by `frame_of(name) -> index`), their
    cameras as pinhole intrinsics, and its points with their observations."""
    images = sorted((frame_of(model.image(i).name), i) for i in model.reg_image_ids())
    frames = np.array([f for f, _ in images], int)
    position = {image_id: k for k, (_, image_id) in enumerate(images)}
    extrinsics = np.stack([model.image(i).cam_from_world().matrix() for _, i in images])
    intrinsics = np.stack([model.image(i).camera.calibration_matrix() for _, i in images])
    xyz, rgb, error, observations, pixels = [], [], [], [], []
    for p, (_, point) in enumerate(model.points3D.items()):
        xyz.append(point.xyz)
        rgb.append(point.color)
        error.append(point.error)
        for element in point.track.elements:
            image = model.image(element.image_id)
            observations.append((p, position[element.image_id]))
            pixels.append(image.points2D[element.point2D_idx].xy)
    tracks = Tracks(
        np.asarray(xyz, np.float32).reshape(-1, 3),
        np.asarray(rgb, np.uint8).reshape(-1, 3),
        np.asarray(error, np.float32).reshape(-1),
        np.asarray(observations, np.int32).reshape(-1, 2),
        np.asarray(pixels, np.float32).reshape(-1, 2),
    )
    return SparseModel(frames, extrinsics, intrinsics, tracks)


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
