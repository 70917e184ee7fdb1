"""A scene's sparse model: the points COLMAP triangulated and the pixels each was seen at.

ZipMap's depth maps say where every pixel is; a track says which pixels of which frames are the
same 3D point, which is what bundle adjustment, Gaussian-splatting trainers and evaluation
against COLMAP need. A scene made or refined with COLMAP keeps its tracks (`Reconstruction.tracks`,
`tracks.npz` in the scene file) and its COLMAP and nerfstudio exports carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SceneFileError

MAX_POINTS = 50_000_000  # a scene file may declare at most this many points (and 64x observations)
FIELDS = {"xyz": ((-1, 3), "f"), "rgb": ((-1, 3), "u"), "error": ((-1,), "f"), "observations": ((-2, 2), "i"), "pixels": ((-2, 2), "f")}


@dataclass
class Tracks:
    xyz: np.ndarray  # float32 [P, 3] in the scene's world frame
    rgb: np.ndarray  # uint8 [P, 3]
    error: np.ndarray  # float32 [P]: mean reprojection error in pixels
    observations: np.ndarray  # int32 [M, 2]: (point index, frame index)
    pixels: np.ndarray  # float32 [M, 2]: (x, y) in the scene's image pixels, COLMAP's convention (0 = the left edge)

    @property
    def num_points(self) -> int:
        return len(self.xyz)

    @property
    def track_length(self) -> np.ndarray:
        """int [P]: how many frames saw each point."""
        return np.bincount(self.observations[:, 0], minlength=self.num_points)

    def mean_error(self) -> float:
        return float(self.error.mean()) if len(self.error) else float("nan")

    def seen_in(self, frames: list[int] | np.ndarray) -> np.ndarray:
        """bool [P]: the points observed in any of `frames`."""
        chosen = np.zeros(int(self.observations[:, 1].max(initial=-1)) + 1, bool)
        frames = np.asarray(frames, int)
        chosen[frames[frames < len(chosen)]] = True
        seen = np.zeros(self.num_points, bool)
        seen[self.observations[chosen[self.observations[:, 1]], 0]] = True
        return seen

    def depth_maps(self, extrinsics: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(depth, track length) [S, H, W] at each observation's pixel, 0 elsewhere: the sparse
        depth of a scene COLMAP made (the nearest point where two fall on one pixel)."""
        s, (h, w) = len(extrinsics), hw
        depth = np.zeros((s, h, w), np.float32)
        length = np.zeros((s, h, w), np.float32)
        point, frame = self.observations[:, 0], self.observations[:, 1]
        cam = np.einsum("mij,mj->mi", extrinsics[frame, :, :3], self.xyz[point]) + extrinsics[frame, :, 3]
        u = np.clip(self.pixels[:, 0].astype(int), 0, w - 1)
        v = np.clip(self.pixels[:, 1].astype(int), 0, h - 1)
        ok = cam[:, 2] > 0
        order = np.argsort(-cam[:, 2])  # farthest first, so the nearest is written last
        order = order[ok[order]]
        depth[frame[order], v[order], u[order]] = cam[order, 2]
        length[frame[order], v[order], u[order]] = self.track_length[point[order]]
        return depth, length

    def keep_frames(self, keep: np.ndarray) -> Tracks:
        """The tracks renumbered to the frames `keep` (bool [S]); points no kept frame saw go."""
        new_index = np.cumsum(keep) - 1
        obs_ok = keep[self.observations[:, 1]]
        seen = np.zeros(self.num_points, bool)
        seen[self.observations[obs_ok, 0]] = True
        point_index = np.cumsum(seen) - 1
        obs = self.observations[obs_ok]
        observations = np.stack((point_index[obs[:, 0]], new_index[obs[:, 1]]), 1).astype(np.int32)
        return Tracks(self.xyz[seen], self.rgb[seen], self.error[seen], observations, self.pixels[obs_ok])

    # ---- scene file -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in FIELDS}

    def counts(self) -> dict[str, int]:
        return {"points": self.num_points, "observations": len(self.observations)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], counts: dict, num_frames: int, hw: tuple[int, int], name: str) -> Tracks:
        """Tracks read from a file, every shape, index and number checked."""
        p, m = int(counts["points"]), int(counts["observations"])
        out = {}
        for key, (shape, kind) in FIELDS.items():
            a = arrays.get(key)
            want = tuple({-1: p, -2: m}.get(d, d) for d in shape)
            if a is None or a.shape != want:
                raise SceneFileError(f"{name} is damaged: its tracks' {key} is not of shape {want}")
            out[key] = a.astype({"u": np.uint8, "f": np.float32, "i": np.int32}[kind], copy=False)
            if kind == "f" and not np.isfinite(out[key]).all():
                raise SceneFileError(f"{name} is damaged: its tracks' {key} holds NaN or infinite numbers")
        obs = out["observations"]
        if m and (obs[:, 0].min() < 0 or obs[:, 0].max() >= p or obs[:, 1].min() < 0 or obs[:, 1].max() >= num_frames):
            raise SceneFileError(f"{name} is damaged: its tracks name points or frames it does not have")
        return cls(**out)


def check_counts(counts: object, name: str) -> dict[str, int]:
    """The manifest's `tracks` entry: whole numbers within bounds, else a `SceneFileError`."""
    ok = isinstance(counts, dict) and all(
        isinstance(counts.get(k), int) and not isinstance(counts.get(k), bool) and 0 <= counts[k] <= limit
        for k, limit in (("points", MAX_POINTS), ("observations", 64 * MAX_POINTS))
    )
    if not ok:
        raise SceneFileError(f"{name} is damaged: its tracks entry {counts!r} is not two counts within bounds")
    assert isinstance(counts, dict)
    return {"points": int(counts["points"]), "observations": int(counts["observations"])}


def expected_bytes(counts: dict[str, int]) -> int:
    """The most `tracks.npz` may hold for these counts (8-byte numbers allowed)."""
    return (counts["points"] * 7 + counts["observations"] * 4) * 8 + 5 * 4096
