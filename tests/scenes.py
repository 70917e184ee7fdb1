"""Reconstructions made from generated scenes' exact geometry (no model), for exporter and viewer tests."""

from __future__ import annotations

import numpy as np

from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.model.geometry import (
    align_to_first,
    camera_to_world,
    depth_to_camera_points,
)
from zipmap_core.training.synthetic import generate


def truth_reconstruction(views: int = 4, seed: int = 7, hw: tuple[int, int] = (84, 112)) -> Reconstruction:
    """A Reconstruction whose depth, cameras and points are a generated scene's ground truth."""
    v = generate(1, views, seed, hw)
    ext = align_to_first(v.extrinsics[0].double()).float()
    depth = v.depth[0]
    pts_cam = depth_to_camera_points(depth, v.intrinsics[0])
    rng = np.random.default_rng(seed)
    return Reconstruction(
        names=[f"view_{i:03d}.png" for i in range(views)],
        images=(v.images[0].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8),
        extrinsics=ext.numpy(),
        intrinsics=v.intrinsics[0].numpy(),
        depth=depth.numpy(),
        depth_conf=(1 + rng.random(depth.shape)).astype(np.float32),
        points_cam=pts_cam.numpy(),
        points_world=camera_to_world(pts_cam, ext).numpy(),
        original_wh=np.tile([hw[1], hw[0]], (views, 1)).astype(np.int32),
    )


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
        points_cam=None,
        points_world=None,
        original_wh=np.tile([w, h], (views, 1)).astype(np.int32),
    )
