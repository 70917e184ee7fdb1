"""A box room papered with multi-scale noise, seen by a sideways sweep of cameras: exact geometry
with texture COLMAP's SIFT can match (the training scenes' smooth procedural patterns give it
little), for testing and benchmarking the refinement of cameras against known ground truth."""

from __future__ import annotations

import numpy as np

from ..io.reconstruction import Reconstruction


def textured_room(views: int = 8, seed: int = 0, hw: tuple[int, int] = (480, 640)) -> Reconstruction:
    """The ground truth of a box room papered with multi-scale noise (texture SIFT can match, which
    the training scenes' smooth patterns lack), seen by cameras sweeping sideways across it while
    turning towards its back wall: geometry, cameras and intrinsics exact."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((512, 512, 3), np.float32)
    for cells in (8, 32, 128):  # octaves of blocky noise, upsampled by repetition
        noise = rng.random((cells, cells, 3)).astype(np.float32)
        texture += np.kron(noise, np.ones((512 // cells, 512 // cells, 1), np.float32)) / 3
    h, w = hw
    f = 0.9 * w
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float32)
    half = np.array([2.0, 1.5, 3.0])  # the room is [-2, 2] x [-1.5, 1.5] x [0, 6]
    images, depths, exts = [], [], []
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays_cam = np.stack(((u - w / 2) / f, (v - h / 2) / f, np.ones_like(u)), -1)
    for i in range(views):
        s = i / max(views - 1, 1) - 0.5
        eye = np.array([1.2 * s, 0.2 * np.sin(3 * s), 0.6])
        target = np.array([-0.8 * s, 0.0, 5.0])
        fwd = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross([0.0, 1.0, 0.0], fwd)
        right /= np.linalg.norm(right)
        rot = np.stack((right, np.cross(fwd, right), fwd))  # world-to-camera rows
        dirs = rays_cam @ rot  # world directions [H, W, 3]
        t = np.full((h, w), np.inf)
        hit_uv = np.zeros((h, w, 2))
        centre = np.array([0.0, 0.0, 3.0])
        for axis in range(3):
            for sign in (-1, 1):
                with np.errstate(divide="ignore", invalid="ignore"):
                    ti = (centre[axis] + sign * half[axis] - eye[axis]) / dirs[..., axis]
                hit = eye + ti[..., None] * dirs
                others = [a for a in range(3) if a != axis]
                inside = (ti > 0) & np.all(np.abs(hit[..., others] - centre[others]) <= half[others] + 1e-6, -1)
                closer = inside & (ti < t)
                t[closer] = ti[closer]
                hit_uv[closer] = hit[closer][:, others] + 7.0 * (axis * 2 + (sign > 0))  # each wall its own patch
        tex = ((hit_uv * 96.0) % 512).astype(int)
        images.append((texture[tex[..., 1], tex[..., 0]] * 255 + 0.5).astype(np.uint8))
        depths.append((t * (dirs @ fwd)).astype(np.float32))
        exts.append(np.hstack((rot, -rot @ eye[:, None])))
    first = np.vstack((exts[0], [0, 0, 0, 1]))
    ext = np.stack([e @ np.linalg.inv(first) for e in exts]).astype(np.float32)
    return Reconstruction(
        names=[f"room_{i:03d}.png" for i in range(views)],
        images=np.stack(images),
        extrinsics=ext,
        intrinsics=np.repeat(k[None], views, 0),
        depth=np.stack(depths),
        depth_conf=np.ones((views, h, w), np.float32),
        original_wh=np.tile([w, h], (views, 1)).astype(np.int32),
    )


def turned(truth: Reconstruction, degrees: tuple[float, float], seed: int = 0) -> Reconstruction:
    """`truth` with every camera but the first turned by `degrees` (low, high; uniform) about a
    random axis: what a prediction's camera error looks like, for refining against the truth."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    ext = truth.extrinsics.astype(np.float64).copy()
    for i in range(1, len(ext)):
        axis = rng.normal(size=3)
        turn = Rotation.from_rotvec(np.radians(rng.uniform(*degrees)) * axis / np.linalg.norm(axis)).as_matrix()
        ext[i, :, :3] = turn @ ext[i, :, :3]
    return Reconstruction(
        names=truth.names,
        images=truth.images,
        extrinsics=ext.astype(np.float32),
        intrinsics=truth.intrinsics,
        depth=truth.depth,
        depth_conf=truth.depth_conf,
        original_wh=truth.original_wh,
    )
