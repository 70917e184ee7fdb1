"""A change of a scene's world frame and unit: x' = s R x + t. Known cameras bring a network's
scene onto them by the similarity that fits its predicted cameras; a metric scale is one with no
turn; refinement records the one between its cameras and the network's, so that a query of the
scene state is asked in the frame the state was made in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Similarity:
    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def points(self, x: np.ndarray) -> np.ndarray:
        """World points [..., 3] in the new frame."""
        return (self.scale * np.asarray(x, np.float64) @ self.rotation.T + self.translation).astype(np.asarray(x).dtype)

    def world_to_camera(self, w2c: np.ndarray) -> np.ndarray:
        """Cameras [..., 3, 4] (world-to-camera) of the old frame, in the new frame and unit: the
        same rotation seen from a turned world, positions moved and scaled."""
        w2c = np.asarray(w2c, np.float64)
        rot = w2c[..., :3, :3] @ self.rotation.T
        t = self.scale * w2c[..., :3, 3] - np.einsum("...ij,j->...i", rot, self.translation)
        return np.concatenate((rot, t[..., None]), -1)

    def camera_to_world(self, c2w: np.ndarray) -> np.ndarray:
        """Cameras [..., 3, 4] (camera-to-world) of the old frame in the new one."""
        c2w = np.asarray(c2w, np.float64)
        rot = self.rotation @ c2w[..., :3, :3]
        return np.concatenate((rot, self.points(c2w[..., :3, 3])[..., None]), -1)

    def inverse(self) -> Similarity:
        r = self.rotation.T
        return Similarity(1.0 / self.scale, r, -(r @ self.translation) / self.scale)

    def then(self, other: Similarity) -> Similarity:
        """This change followed by `other`."""
        return Similarity(self.scale * other.scale, other.rotation @ self.rotation, other.points(self.translation))

    def rigid(self) -> np.ndarray:
        """[3, 4]: the turn and move of this change, without its scale (R, t / s)."""
        return np.concatenate((self.rotation, (self.translation / self.scale)[:, None]), 1)


def fit_similarity(src_w2c: np.ndarray, dst_w2c: np.ndarray) -> Similarity:
    """The similarity taking the world of cameras `src_w2c` [N, 3, 4] onto the world of the same
    cameras `dst_w2c`: the turn from their orientations (their chordal mean), then scale and move
    by least squares on their centres (scale 1 when the centres do not spread)."""
    src, dst = np.asarray(src_w2c, np.float64), np.asarray(dst_w2c, np.float64)
    # camera i: R_dst_i = R_src_i R^T, so R = sum R_dst_i^T R_src_i projected onto the rotations
    u, _, vt = np.linalg.svd(np.einsum("nji,njk->ik", dst[:, :, :3], src[:, :, :3]))
    rot = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    c_src = -np.einsum("nji,nj->ni", src[:, :, :3], src[:, :, 3])
    c_dst = -np.einsum("nji,nj->ni", dst[:, :, :3], dst[:, :, 3])
    a = c_src @ rot.T - (c_src @ rot.T).mean(0)
    b = c_dst - c_dst.mean(0)
    spread = float((a * a).sum())
    scale = float((a * b).sum() / spread) if spread > 1e-12 else 1.0
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return Similarity(scale, rot, c_dst.mean(0) - scale * (c_src @ rot.T).mean(0))
