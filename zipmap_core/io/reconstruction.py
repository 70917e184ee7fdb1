"""The result of a reconstruction and its `.zipmap` scene file.

A `.zipmap` file is a zip archive with no pickled objects:
- `manifest.json`: format name and version, frame names, image size, metadata, timings;
- `arrays.npz`: images (uint8 [S,H,W,3]), extrinsics (world-to-camera [S,3,4], frame 0 = identity),
  intrinsics [S,3,3], depth / depth_conf [S,H,W], points_cam / points_world [S,H,W,3] (left out,
  format version 2, when they are depth unprojected: they are 70 % of the bytes and are derived
  again on loading), original_wh [S,2];
- `state.npz` (optional): the per-layer fast weights `layer{i}.w0|w1|w2`, so a reopened scene can
  be queried for novel views without recomputing;
- `tracks.npz` (optional, counts in the manifest's `tracks`): COLMAP's points and observations
  (see `tracks.py`).

A depth of 0 means "not measured": a scene from the classical engine has depth only where a
triangulated point was seen, and its point maps are NaN elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.geometry import camera_to_world, depth_to_camera_points
from .atomic import atomic_path
from .scene_file import (
    DERIVED,
    SCENE_FORMAT,
    SCENE_VERSION,
    SceneFileError,
    expected_arrays,
    read_scene,
    write_scene,
)
from .tracks import Tracks

ARRAY_FIELDS = tuple(expected_arrays(1, (1, 1)))
__all__ = ["ARRAY_FIELDS", "Reconstruction", "SceneFileError"]


class PointMap:
    """A point map [S, H, W, 3] of a `Reconstruction` that is either given (the point head's, or
    a stream's already computed) or derived from depth and cameras the first time it is read and
    kept from then on. A dataclass field whose default is this descriptor: the constructor's value
    (None: derive) goes through `__set__`, reading goes through `__get__`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, recon: Reconstruction | None, owner: type) -> Any:
        if recon is None:
            return None  # the field's default: derive
        maps = recon.__dict__.setdefault("_point_maps", {})
        if maps.get(self.name) is None:
            maps.update(recon.derived_point_maps())
        return maps[self.name]

    def __set__(self, recon: Reconstruction, value: np.ndarray | None) -> None:
        recon.__dict__.setdefault("_point_maps", {})[self.name] = value


@dataclass
class Reconstruction:
    """A scene: per-frame pictures, cameras (world-to-camera, frame 0 = identity), intrinsics,
    depth and confidence, plus point maps, the scene state and COLMAP's tracks when there are
    any. `points_cam` and `points_world` are derived from depth and cameras when not given (see
    `PointMap`); `points_from_depth` says they are, so a saved scene leaves them out."""

    names: list[str]
    images: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    points_cam: np.ndarray = PointMap()  # type: ignore[assignment]
    points_world: np.ndarray = PointMap()  # type: ignore[assignment]
    original_wh: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))
    state: list[dict[str, np.ndarray]] | None = None
    state_scale: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tracks: Tracks | None = None  # COLMAP's sparse model, when COLMAP made or refined the scene
    # the point maps are depth unprojected with the cameras (None: whenever none were given)
    points_from_depth: bool | None = None

    def __post_init__(self) -> None:
        if self.points_from_depth is None:
            given = self.__dict__["_point_maps"]
            self.points_from_depth = given.get("points_cam") is None or given.get("points_world") is None

    def ensure_points(self) -> Reconstruction:
        """Derives the point maps now (a background job calls this, so a viewer on the GUI thread
        never does the work)."""
        _ = self.points_cam, self.points_world
        return self

    def forget_points(self) -> None:
        """The point maps are derived again from depth when next read (the cameras changed)."""
        self.__dict__["_point_maps"] = {}
        self.points_from_depth = True

    def derived_point_maps(self) -> dict[str, np.ndarray]:
        """Depth unprojected with the cameras (the assembly's own functions, on the host); NaN
        where depth is 0, "not measured" (a sparse scene's pixels that saw no point)."""
        depth = torch.from_numpy(np.ascontiguousarray(self.depth, np.float32))
        cam = depth_to_camera_points(depth, torch.from_numpy(self.intrinsics.astype(np.float32)))
        world = camera_to_world(cam, torch.from_numpy(self.extrinsics.astype(np.float32)))
        cam_np, world_np = cam.numpy(), world.numpy()
        unmeasured = ~(self.depth > 0)
        if unmeasured.any():
            cam_np[unmeasured] = np.nan
            world_np[unmeasured] = np.nan
        return {"points_cam": cam_np, "points_world": world_np}

    def rescaled(self, factor: float, metadata: dict[str, Any] | None = None) -> Reconstruction:
        """This scene with every length multiplied by `factor` (`metric.apply_metric_scale` makes a
        scene metric with it): camera positions, depth, point maps, COLMAP's points, and the scene
        state's unit, so novel views come out in the new unit too. Angles, pixels, colours,
        confidences and reprojection errors do not change. `metadata` entries are added."""
        f = float(factor)
        ext = self.extrinsics.copy()
        ext[:, :3, 3] *= f
        # point maps derived from depth are derived again in the new unit; given ones are scaled
        points: dict[str, Any] = {"points_cam": None, "points_world": None}
        if not self.points_from_depth:
            points = {"points_cam": self.points_cam * f, "points_world": self.points_world * f}
        return replace(
            self,
            extrinsics=ext,
            depth=self.depth * f,
            **points,
            state_scale=self.state_scale * f,
            metadata={**self.metadata, **(metadata or {})},
            timings=dict(self.timings),
            tracks=None if self.tracks is None else replace(self.tracks, xyz=self.tracks.xyz * f),
        )

    @property
    def num_frames(self) -> int:
        return len(self.names)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def colors(self) -> np.ndarray:
        """Per-point colours [S, H, W, 3] in [0, 1], aligned with `points_world`."""
        return self.images.astype(np.float32) / 255.0

    @property
    def cam_to_world(self) -> np.ndarray:
        rot = self.extrinsics[:, :3, :3].transpose(0, 2, 1)
        t = -rot @ self.extrinsics[:, :3, 3:4]
        return np.concatenate((rot, t), axis=2)

    def median_depth(self) -> float:
        """The median measured depth (0 is "not measured"): the scene's unit for drawing and meshing."""
        d = self.depth[np.isfinite(self.depth) & (self.depth > 0)]
        return float(np.median(d)) if d.size else 1.0

    @property
    def is_sparse(self) -> bool:
        """True for a scene whose depth is COLMAP's triangulated points alone (the classical engine)."""
        return self.tracks is not None and self.metadata.get("engine") == "colmap"

    def confidence_mask(self, percentile: float = 0.0, frames: list[int] | None = None) -> np.ndarray:
        """bool [S, H, W]: the finite points of `frames` (default all) whose confidence ranks in
        the top (100 - percentile) % of those points. The ranking is among the points asked
        for, so hiding frames never leaves the rest empty, and it never keeps fewer than one
        point: no threshold hides every point. Points with a missing (NaN) confidence rank
        last; at 0 every finite point is kept."""
        mask = np.isfinite(self.points_world).all(-1)
        if frames is not None:
            chosen = np.zeros(self.num_frames, bool)
            chosen[list(frames)] = True
            mask &= chosen[:, None, None]
        if percentile <= 0 or not mask.any():
            return mask
        conf = np.where(np.isnan(self.depth_conf), -np.inf, self.depth_conf)[mask]
        keep = max(1, int(np.ceil(conf.size * (1.0 - min(float(percentile), 100.0) / 100.0))))
        threshold = np.partition(conf, conf.size - keep)[conf.size - keep]
        mask[mask] = conf >= threshold  # ties at the threshold stay: never fewer than `keep`
        return mask

    def confidence_is_flat(self, spread: float = 0.01) -> bool:
        """True when the central 80 % of the confidences (1 + exp(x), so >= 1) lie within
        `spread` of each other: the model is equally unsure everywhere and a confidence filter
        ranks noise (the bundled demonstration model's case; an official model spans 1 to tens)."""
        conf = self.depth_conf[np.isfinite(self.depth_conf)]
        if conf.size == 0:
            return True
        lo, hi = np.percentile(conf, [10, 90])
        return float(hi - lo) < spread

    def point_cloud(self, percentile: float = 0.0, frames: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points [N,3], colours uint8 [N,3], confidence [N]) above a confidence percentile: a
        sparse scene's triangulated points once each (confidence: track length), else the depth's."""
        if self.is_sparse and self.tracks is not None:
            t = self.tracks
            keep = t.seen_in(np.arange(self.num_frames) if frames is None else np.asarray(frames))
            length = t.track_length.astype(np.float32)
            if percentile > 0 and keep.any():
                keep &= length >= np.percentile(length[keep], min(float(percentile), 100.0), method="lower")
            return t.xyz[keep], t.rgb[keep], length[keep]
        mask = self.confidence_mask(percentile, frames)
        return self.points_world[mask], self.images[mask], self.depth_conf[mask]

    # ---- scene file -------------------------------------------------------------------------------
    def save(self, path: str | Path, include_state: bool = True) -> Path:
        path = Path(path)
        derived = self.points_from_depth
        fields = [name for name in ARRAY_FIELDS if not (derived and name in DERIVED)]
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in fields}
        has_state = bool(include_state and self.state is not None)
        manifest = {
            "format": SCENE_FORMAT,
            "version": SCENE_VERSION if derived else 1,  # a file older readers can open when they can
            "derived_points": derived,
            "names": self.names,
            "image_hw": list(self.image_hw),
            "num_frames": self.num_frames,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "has_state": has_state,
            "state_scale": self.state_scale,
            "metadata": self.metadata,
            "timings": self.timings,
        }
        state = {f"layer{i}.{k}": v for i, layer in enumerate(self.state or []) for k, v in layer.items()}
        if self.tracks is not None:
            manifest["tracks"] = self.tracks.counts()
        with atomic_path(path) as tmp:
            write_scene(tmp, manifest, arrays, state if has_state else None, None if self.tracks is None else self.tracks.to_arrays())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reconstruction:
        """Opens a `.zipmap`; a malformed or hostile file raises `SceneFileError` (see `scene_file`)."""
        manifest, read, state, tracks = read_scene(path)
        arrays: dict[str, Any] = dict(read)
        return cls(
            names=list(manifest["names"]),
            **arrays,
            state=state,
            state_scale=float(manifest.get("state_scale", 1.0)),
            metadata=dict(manifest.get("metadata", {})),
            timings=numeric_entries(manifest.get("timings", {})),
            tracks=tracks,
        )


def numeric_entries(table: dict) -> dict[str, float]:
    """The finite numbers of a file's table (timings are information: an odd entry is dropped,
    never shown as a number it is not)."""
    return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}
