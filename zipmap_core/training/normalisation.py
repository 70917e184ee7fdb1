"""Generated scenes -> the frame the model predicts in: cameras relative to input frame 0,
lengths divided by a scale per scene (the camera extent, or the points' mean distance), and the
unit the state-query convention poses its queries in."""

from __future__ import annotations

from torch import Tensor

from ..model.geometry import camera_to_world, depth_to_camera_points, invert_rigid, to_homogeneous
from .synthetic import SceneViews

NORMALISATIONS = ("cameras", "points")


def normalise(views: SceneViews, inputs: int, by: str = "cameras") -> tuple[SceneViews, Tensor]:
    """Re-expresses cameras relative to input frame 0 and divides lengths by a scale per scene,
    taken from the `inputs` first views. Returns the normalised views and the scales.

    by="cameras": the largest absolute camera-to-world translation component (the convention the
    state-query model renders with); the classic family's cameras circle the scene, so this is
    about the scene's size. by="points": the mean distance of the input views' points from frame
    0's camera (VGGT's convention), the one that stays well defined for handheld paths, where
    the camera moves a few centimetres (a pan on the spot) and the camera extent would make the
    scene a hundred units deep."""
    if by not in NORMALISATIONS:
        raise ValueError(f"normalise by one of {', '.join(NORMALISATIONS)}, got {by!r}")
    first_c2w = to_homogeneous(invert_rigid(views.extrinsics[:, :1]))
    extr = (to_homogeneous(views.extrinsics) @ first_c2w)[..., :3, :4]
    if by == "cameras":
        scale = camera_extent(extr[:, :inputs]).clamp(min=1e-6)
    else:
        scale = mean_point_distance(views.depth[:, :inputs], extr[:, :inputs], views.intrinsics[:, :inputs])
    extr = extr.clone()
    extr[..., :3, 3] = extr[..., :3, 3] / scale[:, None, None]
    return SceneViews(views.images, views.depth / scale[:, None, None, None], extr, views.intrinsics), scale


def mean_point_distance(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
    """Per scene, the mean distance from the world origin of the points that depth [B, V, H, W]
    unprojects to (pixels with depth > 0), with world-to-camera poses [B, V, 3, 4]."""
    b, _v, _h, _w = depth.shape
    cam = depth_to_camera_points(depth.flatten(0, 1), intrinsics.flatten(0, 1))
    dist = camera_to_world(cam, extrinsics.flatten(0, 1)).norm(dim=-1).reshape(b, -1)
    valid = (depth.reshape(b, -1) > 0).float()
    return ((dist * valid).sum(1) / valid.sum(1).clamp(min=1)).clamp(min=1e-6)


def camera_extent(extrinsics: Tensor) -> Tensor:
    """Per scene, the largest absolute camera-to-world translation component of world-to-camera
    poses [B, V, 3, 4] (the rule `assembly.state_scale` applies to a reconstruction)."""
    return invert_rigid(extrinsics)[..., :3, 3].abs().flatten(1).max(1).values


def query_unit(views: SceneViews, inputs: int) -> Tensor:
    """Per scene, the unit of the state-query convention in the normalised frame: the input
    views' camera extent (1 when normalised by cameras), the `state_scale` a reconstruction of
    them would have."""
    return camera_extent(views.extrinsics[:, :inputs])
