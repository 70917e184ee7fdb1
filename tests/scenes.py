"""Reconstructions made from generated scenes' exact geometry (no model), for exporter and viewer tests."""

from __future__ import annotations

import numpy as np

from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.model.geometry import (
    align_to_first,
    camera_to_world,
    depth_to_camera_points,
)
from zipmap_core.sfm.test_scenes import textured_room  # noqa: F401  (the tests' name for it)
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
