"""The result of a reconstruction and its `.zipmap` scene file.

A `.zipmap` file is a zip archive with no pickled objects:
- `manifest.json`: format name and version, frame names, image size, metadata, timings;
- `arrays.npz`: images (uint8 [S,H,W,3]), extrinsics (world-to-camera [S,3,4]; frame 0 = identity,
  except in a scene made on known cameras, which keeps their world frame),
  intrinsics [S,3,3], depth / depth_conf [S,H,W], points_cam / points_world [S,H,W,3] (left out,
  format version 2, when they are depth unprojected: they are 70 % of the bytes and are derived
  again on loading), original_wh [S,2];
- `state.npz` (optional): the per-layer fast weights `layer{i}.w0|w1|w2`, so a reopened scene can
  be queried for novel views without recomputing;
- `tracks.npz` (optional, counts in the manifest's `tracks`): COLMAP's points and observations
  (see `tracks.py`);
- `dense.npz` (optional, counts in the manifest's `dense_points`): the dense stage's fused points
  (see `dense_points.py`); the manifest's `state_frame` (optional, [3, 4]) turns a query of the
  scene state into the frame the state was made in;
- `masks.npz` (optional, the manifest's `masks` true): `keep` uint8 [S,H,W], the pixels the user's
  masks keep.

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
from .dense_points import DensePoints
from .scene_file import (
    DERIVED,
    SCENE_FORMAT,
    SCENE_VERSION,
    SceneFileError,
    expected_arrays,
    read_scene,
    write_scene,
)
from .similarity import Similarity
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
    dense_points: DensePoints | None = None  # the dense stage's fused cloud, each surface point once
    # [3, 4]: the turn and move from this scene's frame into the one its scene state was made in
    # (None: the same), applied before `state_scale` (see `transformed`)
    state_frame: np.ndarray | None = None
    masks: np.ndarray | None = None  # bool [S, H, W]: the pixels the user's masks keep (None: every pixel)

    def __post_init__(self) -> None:
        if self.points_from_depth is None:
            given = self.__dict__["_point_maps"]
            self.points_from_depth = given.get("points_cam") is None or given.get("points_world") is None

    def ensure_points(self) -> Reconstruction:
        """Derives the point maps now (a background job calls this, so a viewer on the GUI thread
        never does the work)."""
        _ = self.points_cam, self.points_world
        return self

    def held_bytes(self) -> int:
        """The bytes this scene holds now: pictures, depth, cameras, the point maps once derived
        (not deriving them), the scene state (what a long session's memory is measured against)."""
        arrays = [self.images, self.depth, self.depth_conf, self.extrinsics, self.intrinsics]
        arrays += [a for a in self.__dict__.get("_point_maps", {}).values() if a is not None]
        arrays += [v for layer in self.state or [] for v in layer.values()]
        return sum(int(a.nbytes) for a in arrays)

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

    def with_depth(self, depth: np.ndarray, depth_conf: np.ndarray, **changes: Any) -> Reconstruction:
        """This scene with new depth (and `changes`), its point maps derived again from that
        depth: `dataclasses.replace` alone would carry the old maps over, since the point-map
        fields read as the maps derived from the old depth."""
        derived: dict[str, Any] = {"points_cam": None, "points_world": None, "points_from_depth": True}  # None: derive
        return replace(self, depth=depth, depth_conf=depth_conf, **derived, **changes)

    def rescaled(self, factor: float, metadata: dict[str, Any] | None = None) -> Reconstruction:
        """This scene with every length multiplied by `factor` (`metric.apply_metric_scale` makes a
        scene metric with it): camera positions, depth, point maps, COLMAP's and the dense points,
        and the scene state's unit, so novel views come out in the new unit too. Angles, pixels,
        colours, confidences and reprojection errors do not change. `metadata` entries are added."""
        return self.transformed(Similarity(float(factor)), metadata)

    def transformed(self, change: Similarity, metadata: dict[str, Any] | None = None) -> Reconstruction:
        """This scene in another world frame and unit (x' = s R x + t): cameras, depth (times s),
        point maps, COLMAP's and the dense points. The scene state stays as it was made; its
        queries are turned back into its frame (`state_frame`) and unit (`state_scale`)."""
        s = change.scale
        points: dict[str, Any] = {"points_cam": None, "points_world": None}  # derived again, in the new frame
        if not self.points_from_depth:
            points = {"points_cam": self.points_cam * s, "points_world": change.points(self.points_world)}
        frame = np.eye(3, 4) if self.state_frame is None else np.asarray(self.state_frame, np.float64)
        # a query point x' was x = R^T (x' - t) / s, which the old frame took to frame(x) / state_scale
        turn = frame[:, :3] @ change.rotation.T
        dense = self.dense_points
        return replace(
            self,
            extrinsics=change.world_to_camera(self.extrinsics).astype(self.extrinsics.dtype),
            depth=self.depth * s,
            **points,
            state_scale=self.state_scale * s,
            state_frame=None if self.state is None else np.concatenate((turn, (s * frame[:, 3] - turn @ change.translation)[:, None]), 1),
            metadata={**self.metadata, **(metadata or {})},
            timings=dict(self.timings),
            tracks=None if self.tracks is None else replace(self.tracks, xyz=change.points(self.tracks.xyz)),
            dense_points=None if dense is None else replace(dense, xyz=change.points(dense.xyz)),
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

    def field_of_view(self) -> float:
        """The input cameras' median vertical field of view in degrees: what a virtual camera of
        this scene sees by default, so it frames what the photos framed."""
        fy = float(np.median(self.intrinsics[:, 1, 1]))
        return float(np.degrees(2 * np.arctan2(self.image_hw[0] / 2, fy)))

    def median_depth(self) -> float:
        """The median measured depth (0 is "not measured"): the scene's unit for drawing and meshing."""
        d = self.depth[np.isfinite(self.depth) & (self.depth > 0)]
        return float(np.median(d)) if d.size else 1.0

    @property
    def is_sparse(self) -> bool:
        """True for a scene whose depth is COLMAP's triangulated points alone (the classical engine
        without the dense stage)."""
        return self.tracks is not None and self.metadata.get("engine") == "colmap" and self.dense_points is None

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
        """(points [N,3], colours uint8 [N,3], confidence [N]) above a confidence percentile: the
        dense stage's fused points, or a sparse scene's triangulated points, once each (confidence:
        how many frames agree, the track length), else the depth maps' points."""
        dense = self.dense_cloud(percentile, frames)
        if dense is not None:
            return dense.xyz, dense.rgb, dense.confidence
        if self.is_sparse and self.tracks is not None:
            t = self.tracks
            keep = t.seen_in(np.arange(self.num_frames) if frames is None else np.asarray(frames))
            length = t.track_length.astype(np.float32)
            if percentile > 0 and keep.any():
                keep &= length >= np.percentile(length[keep], min(float(percentile), 100.0), method="lower")
            return t.xyz[keep], t.rgb[keep], length[keep]
        mask = self.confidence_mask(percentile, frames)
        return self.points_world[mask], self.images[mask], self.depth_conf[mask]

    def dense_cloud(self, percentile: float = 0.0, frames: list[int] | None = None) -> DensePoints | None:
        """The dense stage's fused points that came from `frames` (default all) whose confidence
        reaches the `percentile`-th of theirs, each with its colour, confidence and frame (None:
        no dense stage ran)."""
        if self.dense_points is None:
            return None
        d = self.dense_points if frames is None else self.dense_points.of_frames(frames)
        if percentile > 0 and d.num_points:
            d = d.select(d.confidence >= np.percentile(d.confidence, min(float(percentile), 100.0), method="lower"))
        return d

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
        extras = {}
        if self.tracks is not None:
            manifest["tracks"] = self.tracks.counts()
            extras["tracks.npz"] = self.tracks.to_arrays()
        if self.dense_points is not None:
            manifest["dense_points"] = self.dense_points.counts()
            extras["dense.npz"] = self.dense_points.to_arrays()
        if has_state and self.state_frame is not None:
            manifest["state_frame"] = np.asarray(self.state_frame, np.float64).tolist()
        if self.masks is not None:
            manifest["masks"] = True
            extras["masks.npz"] = {"keep": np.ascontiguousarray(self.masks, np.uint8)}
        with atomic_path(path) as tmp:
            write_scene(tmp, manifest, arrays, state if has_state else None, extras)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reconstruction:
        """Opens a `.zipmap`; a malformed or hostile file raises `SceneFileError` (see `scene_file`)."""
        scene = read_scene(path)
        arrays: dict[str, Any] = dict(scene.arrays)
        manifest = scene.manifest
        return cls(
            names=list(manifest["names"]),
            **arrays,
            state=scene.state,
            state_scale=float(manifest.get("state_scale", 1.0)),
            metadata=dict(manifest.get("metadata", {})),
            timings=numeric_entries(manifest.get("timings", {})),
            tracks=scene.tracks,
            dense_points=scene.dense_points,
            state_frame=scene.state_frame,
            masks=scene.masks,
        )


def numeric_entries(table: dict) -> dict[str, float]:
    """The finite numbers of a file's table (timings are information: an odd entry is dropped,
    never shown as a number it is not)."""
    return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}
