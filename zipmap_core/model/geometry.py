"""Camera geometry: pose encodings, frame alignment, unprojection and query rays.

Conventions: OpenCV axes (x right, y down, z forward); extrinsics are world-to-camera [R|t];
intrinsics have the principal point at the image centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def quat_to_mat(q: Tensor) -> Tensor:
    """Quaternion XYZW (need not be unit) -> rotation matrix [..., 3, 3]."""
    x, y, z, w = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    m = torch.stack(
        (
            1 - two_s * (y * y + z * z),
            two_s * (x * y - z * w),
            two_s * (x * z + y * w),
            two_s * (x * y + z * w),
            1 - two_s * (x * x + z * z),
            two_s * (y * z - x * w),
            two_s * (x * z - y * w),
            two_s * (y * z + x * w),
            1 - two_s * (x * x + y * y),
        ),
        dim=-1,
    )
    return m.reshape((*q.shape[:-1], 3, 3))


def mat_to_quat(m: Tensor) -> Tensor:
    """Rotation matrix [..., 3, 3] -> unit quaternion XYZW with w >= 0."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = torch.stack(
        (
            torch.stack((1 + m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12), -1),
            torch.stack((m01 + m10, 1 - m00 + m11 - m22, m12 + m21, m02 - m20), -1),
            torch.stack((m02 + m20, m12 + m21, 1 - m00 - m11 + m22, m10 - m01), -1),
            torch.stack((m21 - m12, m02 - m20, m10 - m01, 1 + m00 + m11 + m22), -1),
        ),
        dim=-2,
    )
    diag = torch.stack((1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22), -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(candidates, -2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., 3:4] < 0, -q, q)


MIN_FOV = 1e-3  # radians: a focal length of 1,000 half-widths


def pose_encoding_to_cameras(enc: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """[..., 9] absT_quaR_FoV -> (world-to-camera [..., 3, 4], intrinsics [..., 3, 3])."""
    h, w = image_hw
    rot = quat_to_mat(enc[..., 3:7])
    extrinsics = torch.cat((rot, enc[..., :3, None]), dim=-1)
    # a field of view of 0 (an untrained head) or of 180 degrees has no finite focal length
    fov = enc[..., 7:9].clamp(MIN_FOV, math.pi - MIN_FOV)
    fy = (h / 2.0) / torch.tan(fov[..., 0] / 2.0)
    fx = (w / 2.0) / torch.tan(fov[..., 1] / 2.0)
    k = torch.zeros((*enc.shape[:-1], 3, 3), dtype=enc.dtype, device=enc.device)
    k[..., 0, 0], k[..., 1, 1] = fx, fy
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = w / 2.0, h / 2.0, 1.0
    return extrinsics, k


def cameras_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Inverse of `pose_encoding_to_cameras` (training targets)."""
    h, w = image_hw
    fov_h = 2 * torch.atan((h / 2.0) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((w / 2.0) / intrinsics[..., 0, 0])
    return torch.cat((extrinsics[..., :3, 3], mat_to_quat(extrinsics[..., :3, :3]), fov_h[..., None], fov_w[..., None]), -1)


def to_homogeneous(m: Tensor) -> Tensor:
    """[..., 3, 4] -> [..., 4, 4]."""
    bottom = torch.zeros((*m.shape[:-2], 1, 4), dtype=m.dtype, device=m.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat((m[..., :3, :4], bottom), dim=-2)


def invert_rigid(m: Tensor) -> Tensor:
    """Inverse of rigid transforms [..., 3, 4] (returned as [..., 3, 4])."""
    rot_t = m[..., :3, :3].transpose(-1, -2)
    return torch.cat((rot_t, -rot_t @ m[..., :3, 3:4]), dim=-1)


def align_to_first(extrinsics: Tensor) -> Tensor:
    """Re-expresses world-to-camera poses [S, 3, 4] in frame 0's camera frame (frame 0 = identity)."""
    first_c2w = to_homogeneous(invert_rigid(extrinsics[:1]))
    return (to_homogeneous(extrinsics) @ first_c2w)[..., :3, :4]


def pixel_grid(h: int, w: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Homogeneous pixel centres [h, w, 3] at (x + 0.5, y + 0.5)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype) + 0.5, torch.arange(w, device=device, dtype=dtype) + 0.5, indexing="ij"
    )
    return torch.stack((xs, ys, torch.ones_like(xs)), dim=-1)


def depth_to_camera_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """depth [S, H, W], K [S, 3, 3] -> camera-frame points [S, H, W, 3]."""
    s, h, w = depth.shape
    rays = pixel_grid(h, w, depth.device, depth.dtype).reshape(1, -1, 3) @ torch.linalg.inv(intrinsics).transpose(-1, -2)
    return rays.reshape(s, h, w, 3) * depth[..., None]


def camera_to_world(points: Tensor, extrinsics: Tensor) -> Tensor:
    """Camera-frame points [S, H, W, 3] -> world points with world-to-camera poses [S, 3, 4]."""
    c2w = invert_rigid(extrinsics)
    s = points.shape[0]
    flat = points.reshape(s, -1, 3)
    return (flat @ c2w[:, :3, :3].transpose(-1, -2) + c2w[:, None, :3, 3]).reshape(points.shape)


def ray_conditions(c2w: Tensor, intrinsics: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Query rays [..., 9, H, W]: [origin, unit direction, origin x direction] per pixel centre."""
    h, w = image_hw
    batch = c2w.shape[:-2]
    c2w = c2w.reshape(-1, 3, 4)[:, :3, :4]
    k_inv = torch.linalg.inv(intrinsics.reshape(-1, 3, 3))
    pix = pixel_grid(h, w, c2w.device, c2w.dtype).reshape(1, -1, 3)
    dirs = pix @ (c2w[:, :3, :3] @ k_inv).transpose(-1, -2)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origin = c2w[:, None, :3, 3].expand_as(dirs)
    rays = torch.cat((origin, dirs, torch.cross(origin, dirs, dim=-1)), dim=-1)
    return rays.reshape(*batch, h, w, 9).movedim(-1, -3)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Camera-to-world [3, 4] at `eye` looking at `target` (OpenCV axes: y down)."""
    forward = F.normalize(target - eye, dim=0)
    right = F.normalize(torch.linalg.cross(forward, up), dim=0)
    if not torch.isfinite(right).all() or right.norm() < 1e-6:
        right = F.normalize(torch.linalg.cross(forward, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype)), dim=0)
    down = torch.linalg.cross(forward, right)
    return torch.cat((torch.stack((right, down, forward), dim=1), eye[:, None]), dim=1)


def intrinsics_from_fov(fov_y_deg: float, image_hw: tuple[int, int]) -> Tensor:
    h, w = image_hw
    f = (h / 2.0) / torch.tan(torch.deg2rad(torch.tensor(fov_y_deg / 2.0, dtype=torch.float64)))
    return torch.tensor([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1.0]], dtype=torch.float32)
