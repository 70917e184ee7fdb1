"""A scene's fused dense point cloud: every surface point the dense stage measured, once (the
per-frame depth maps see most of them several times). The viewer draws it, and every export
carries it (PLY and GLB as their points, COLMAP as `fused.ply` beside the sparse model, as
COLMAP's own dense workspace does, nerfstudio as its point cloud). Stored as `dense.npz` in the
scene file, counts in the manifest's `dense_points`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SceneFileError

MAX_POINTS = 200_000_000  # a scene file may declare at most this many fused points
FIELDS = {"xyz": ((-1, 3), "f"), "rgb": ((-1, 3), "u"), "confidence": ((-1,), "f"), "frame": ((-1,), "i")}


@dataclass
class DensePoints:
    xyz: np.ndarray  # float32 [P, 3] in the scene's world frame
    rgb: np.ndarray  # uint8 [P, 3]
    confidence: np.ndarray  # float32 [P]: how many frames agree on the point (or the prior's confidence)
    frame: np.ndarray  # int32 [P]: the frame whose depth map the point came from

    @property
    def num_points(self) -> int:
        return len(self.xyz)

    def select(self, keep: np.ndarray) -> DensePoints:
        return DensePoints(self.xyz[keep], self.rgb[keep], self.confidence[keep], self.frame[keep])

    def of_frames(self, frames: np.ndarray | list[int], renumber: bool = False) -> DensePoints:
        """The points that came from `frames` (numbered 0.. in that order with `renumber`)."""
        frames = np.asarray(frames, int)
        lookup = np.full(int(max(self.frame.max(initial=-1), frames.max(initial=-1))) + 1, -1)
        lookup[frames] = np.arange(len(frames))
        new = lookup[self.frame]
        out = self.select(new >= 0)
        if renumber:
            out.frame = new[new >= 0].astype(np.int32)
        return out

    # ---- scene file -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in FIELDS}

    def counts(self) -> dict[str, int]:
        return {"points": self.num_points}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], counts: dict, num_frames: int, name: str) -> DensePoints:
        """Points read from a file, every shape, index and number checked."""
        p = int(counts["points"])
        out = {}
        for key, (shape, kind) in FIELDS.items():
            a = arrays.get(key)
            want = tuple(p if d == -1 else d for d in shape)
            if a is None or a.shape != want:
                raise SceneFileError(f"{name} is damaged: its dense points' {key} is not of shape {want}")
            out[key] = a.astype({"u": np.uint8, "f": np.float32, "i": np.int32}[kind], copy=False)
            if kind == "f" and not np.isfinite(out[key]).all():
                raise SceneFileError(f"{name} is damaged: its dense points' {key} holds NaN or infinite numbers")
        if p and (out["frame"].min() < 0 or out["frame"].max() >= num_frames):
            raise SceneFileError(f"{name} is damaged: its dense points name frames it does not have")
        return cls(**out)


def check_counts(counts: object, name: str) -> dict[str, int]:
    """The manifest's `dense_points` entry: a whole number within bounds, else a `SceneFileError`."""
    points = counts.get("points") if isinstance(counts, dict) else None
    if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= MAX_POINTS:
        raise SceneFileError(f"{name} is damaged: its dense points entry {counts!r} is not a count within bounds")
    return {"points": points}


def expected_bytes(counts: dict[str, int]) -> int:
    """The most `dense.npz` may hold for these counts (8-byte numbers allowed)."""
    return counts["points"] * 8 * 8 + 4 * 4096
