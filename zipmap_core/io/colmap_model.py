"""The one bridge between numpy cameras and tracks and a COLMAP model (pycolmap): the classical
engine and refinement read what COLMAP found through it, refinement seeds COLMAP with the
network's cameras through it, and the COLMAP export writes a scene through it. A COLMAP model on
disk that we did not just write is read in a child process with a memory cap (`read_bounded`):
pycolmap allocates what a file's counts declare without checking them against the file.

Conventions: world-to-camera [3, 4] poses in OpenCV axes, pinhole intrinsics, pixel coordinates
with 0 at the left edge of the first pixel (COLMAP's and ours); frames numbered from 0, COLMAP's
image and camera ids from 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tracks import Tracks

READBACK_BYTES_PER_FILE_BYTE = 64  # pycolmap's memory for a model, against the model's size on disk
READBACK_SLACK_BYTES = 256 << 20


def colmap() -> Any:
    """pycolmap with its log silenced (INFO lines per image and pair, errors said again by us).
    torch is imported first: pycolmap loaded before it makes feature extraction abort with a
    double free (pycolmap 4.2, torch 2.13)."""
    import torch  # noqa: F401

    # isort: split
    import pycolmap

    pycolmap.logging.minloglevel = 3  # fatal only: its errors reach the user as our messages
    return pycolmap


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


# ---- numpy -> pycolmap --------------------------------------------------------------------------------
def rigid3d(w2c: np.ndarray) -> Any:
    """A world-to-camera [3, 4] pose as pycolmap's Rigid3d."""
    pose = np.asarray(w2c, np.float64)
    return colmap().Rigid3d(colmap().Rotation3d(pose[:, :3]), pose[:, 3])


def pinhole_camera(k: np.ndarray, hw: tuple[int, int], camera_id: int) -> Any:
    """A PINHOLE camera (fx, fy, cx, cy) of pictures `hw` (h, w)."""
    k = np.asarray(k, np.float64)
    return colmap().Camera(model="PINHOLE", width=hw[1], height=hw[0], params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2]], camera_id=camera_id)


@dataclass
class FrameEntry:
    """One posed picture of a model to build: its COLMAP name and ids, and its keypoints (None:
    the ones a database holds for it)."""

    name: str
    image_id: int
    camera_id: int
    w2c: np.ndarray
    keypoints: np.ndarray | None = None


def build_model(cameras: Sequence[Any], frames: Sequence[FrameEntry], tracks: Tracks | None = None) -> Any:
    """A pycolmap Reconstruction of `cameras`, posed `frames` and, with `tracks` (numbered by
    position in `frames`), their points: an observation is the keypoint at its position among its
    frame's observations, so `frames[i].keypoints` are `tracks_keypoints(tracks, len(frames))[0][i]`."""
    pycolmap = colmap()
    model = pycolmap.Reconstruction()
    for camera in cameras:
        model.add_camera_with_trivial_rig(camera)
    for entry in frames:
        given = {} if entry.keypoints is None else {"keypoints": np.asarray(entry.keypoints, np.float64)}
        image = pycolmap.Image(name=entry.name, camera_id=entry.camera_id, image_id=entry.image_id, **given)
        model.add_image_with_trivial_frame(image, rigid3d(entry.w2c))
    if tracks is not None and tracks.num_points:
        _add_points(model, tracks, [entry.image_id for entry in frames])
    return model


def tracks_keypoints(tracks: Tracks, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each frame's keypoints (its observations' pixels, in observation order) and every
    observation's index among its frame's keypoints."""
    order = np.argsort(tracks.observations[:, 1], kind="stable")
    starts = np.searchsorted(tracks.observations[order, 1], np.arange(frames + 1))
    index_in_image = np.empty(len(order), int)
    keypoints = []
    for i in range(frames):
        chosen = order[starts[i] : starts[i + 1]]
        index_in_image[chosen] = np.arange(len(chosen))
        keypoints.append(tracks.pixels[chosen].astype(np.float64))
    return keypoints, index_in_image


def _add_points(model: Any, tracks: Tracks, image_ids: list[int]) -> None:
    pycolmap = colmap()
    _, index_in_image = tracks_keypoints(tracks, len(image_ids))
    by_point = np.argsort(tracks.observations[:, 0], kind="stable")
    bounds = np.searchsorted(tracks.observations[by_point, 0], np.arange(tracks.num_points + 1))
    for p in range(tracks.num_points):
        track = pycolmap.Track()
        for o in by_point[bounds[p] : bounds[p + 1]]:
            track.add_element(image_ids[int(tracks.observations[o, 1])], int(index_in_image[o]))
        model.add_point3D(tracks.xyz[p].astype(np.float64), track, tracks.rgb[p])
    model.update_point_3d_errors()


# ---- pycolmap -> numpy --------------------------------------------------------------------------------
def read_sparse(model: Any, frame_of: Callable[[str], int]) -> SparseModel:
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


# ---- a model on disk, read in a child with a memory cap ---------------------------------------------
# the child caps its address space once pycolmap is imported, reads the model and prints what was
# asked of it as JSON: its counts, or its cameras and posed images
_BOUNDED_READ = """
import json, resource, sys
import pycolmap
page = resource.getpagesize()
with open("/proc/self/statm") as fh:
    now = int(fh.read().split()[0]) * page
limit = now + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
r = pycolmap.Reconstruction(sys.argv[1])
out = {"counts": [r.num_cameras(), r.num_images(), r.num_points3D()]}
if sys.argv[3] == "cameras":
    out["cameras"] = {str(i): {"model": c.model.name, "width": c.width, "height": c.height, "params": list(c.params),
                               "K": c.calibration_matrix().tolist()} for i, c in r.cameras.items()}
    out["images"] = [{"name": im.name, "camera_id": im.camera_id, "w2c": im.cam_from_world().matrix().tolist()}
                     for im in r.images.values() if im.has_pose]
print(json.dumps(out))
"""


class ModelReadError(OSError):
    """A COLMAP model on disk that does not read (truncated, hostile, or too large); `detail`
    is the reader's last word."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the COLMAP model does not read ({detail})")
        self.detail = detail


def read_bounded(folder: Path, what: str = "counts", timeout_s: float = 600) -> dict:
    """The counts (and with `what` "cameras", the cameras and posed images) of the COLMAP model
    in `folder`, read by pycolmap in a child whose memory is capped at a multiple of the model's
    size on disk: a truncated or hostile file fails there, never here."""
    on_disk = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    budget = READBACK_BYTES_PER_FILE_BYTE * on_disk + READBACK_SLACK_BYTES
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", _BOUNDED_READ, str(folder), str(budget), what], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelReadError("not in time") from exc
    if child.returncode != 0:
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        raise ModelReadError(lines[-1][:200] if lines else f"exit {child.returncode}")
    try:
        return dict(json.loads(child.stdout))
    except ValueError as exc:
        raise ModelReadError("no answer from the reader") from exc
