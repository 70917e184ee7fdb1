"""Raw per-frame network outputs -> a `Reconstruction`: cameras aligned to the first frame,
camera-frame and world points, colours and the scale of the scene state."""

from __future__ import annotations

import numpy as np
import torch

from ..io.reconstruction import Reconstruction
from ..model.geometry import (
    align_to_first,
    camera_to_world,
    depth_to_camera_points,
    invert_rigid,
    pose_encoding_to_cameras,
)

# where world points come from: unprojected depth (the default, as ZipMap's and VGGT's demos do)
# or the camera-frame point head
POINT_SOURCES = ("depth", "point_head")


def check_point_source(points_from: str) -> None:
    if points_from not in POINT_SOURCES:
        raise ValueError(f"points_from must be one of {', '.join(POINT_SOURCES)}, got {points_from!r}")


def assemble(
    names: list[str],
    images: torch.Tensor,
    pose_enc: torch.Tensor,
    depth: torch.Tensor,
    depth_conf: torch.Tensor,
    local_points: torch.Tensor | None,
    points_from: str,
    original_wh: np.ndarray,
) -> Reconstruction:
    """Raw per-frame predictions -> aligned cameras and world points."""
    h, w = images.shape[-2:]
    extrinsics, intrinsics = pose_encoding_to_cameras(pose_enc, (h, w))
    extrinsics = align_to_first(extrinsics)
    check_point_source(points_from)
    if points_from == "point_head":
        if local_points is None:
            raise ValueError("points_from='point_head' needs the point head's output; run the model with point_head=True")
        points_cam = local_points
    else:
        points_cam = depth_to_camera_points(depth, intrinsics)
    points_world = camera_to_world(points_cam, extrinsics)
    c2w = invert_rigid(extrinsics)
    scale = float(c2w[:, :3, 3].abs().max()) if len(names) > 1 else 1.0
    return Reconstruction(
        names=list(names),
        images=(images.permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy(),
        extrinsics=extrinsics.numpy().astype(np.float32),
        intrinsics=intrinsics.numpy().astype(np.float32),
        depth=depth.numpy().astype(np.float32),
        depth_conf=depth_conf.numpy().astype(np.float32),
        points_cam=points_cam.numpy().astype(np.float32),
        points_world=points_world.numpy().astype(np.float32),
        original_wh=original_wh,
        state_scale=scale if scale > 1e-8 else 1.0,
    )
