"""Pinhole geometry on numpy arrays for the dense stage and the photo renderer: unprojecting
depth, projecting points, sampling maps at projected pixels, checking inputs.

Pixels follow COLMAP's convention (0 is the left edge of the first pixel, so its centre is 0.5);
OpenCV's remap puts the centre at 0, so every sampling call below subtracts the half pixel. Poses
are world-to-camera [R|t] with OpenCV axes (x right, y down, z forward)."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError

HALF = 0.5  # COLMAP pixel centre minus OpenCV's


def centres(extrinsics: np.ndarray) -> np.ndarray:
    """Camera centres [N, 3] of world-to-camera poses [N, 3, 4]."""
    rot, t = extrinsics[:, :3, :3].astype(np.float64), extrinsics[:, :3, 3].astype(np.float64)
    return -np.einsum("nji,nj->ni", rot, t)


def axes(extrinsics: np.ndarray) -> np.ndarray:
    """Optical axes [N, 3] in world coordinates (the third row of each rotation)."""
    return extrinsics[:, 2, :3].astype(np.float64)


def to_world_to_camera(c2w: np.ndarray) -> np.ndarray:
    """World-to-camera [V, 3, 4] of camera-to-world poses [V, 3|4, 4]."""
    rot = np.asarray(c2w, np.float64)[:, :3, :3]
    t = np.asarray(c2w, np.float64)[:, :3, 3]
    rot_t = rot.transpose(0, 2, 1)
    return np.concatenate((rot_t, -np.einsum("nij,nj->ni", rot_t, t)[..., None]), axis=2)


def pixel_rays(k: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Camera-frame rays [H, W, 3] with z = 1 through every pixel centre."""
    h, w = hw
    u, v = np.meshgrid(np.arange(w) + HALF, np.arange(h) + HALF)
    k = np.asarray(k, np.float64)
    x = (u - k[0, 2] - k[0, 1] * (v - k[1, 2]) / k[1, 1]) / k[0, 0]
    return np.stack((x, (v - k[1, 2]) / k[1, 1], np.ones_like(u)), -1)


def unproject(depth: np.ndarray, k: np.ndarray, ext: np.ndarray) -> np.ndarray:
    """World points [H, W, 3] of one frame's depth map (z-depth along the optical axis)."""
    cam = pixel_rays(k, depth.shape) * depth[..., None]
    rot, t = ext[:3, :3].astype(np.float64), ext[:3, 3].astype(np.float64)
    return (cam - t) @ rot  # R^T (x - t), row-wise


def project(points: np.ndarray, k: np.ndarray, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, z) of world points [..., 3] in one camera; u, v in COLMAP pixels; z <= 0 behind."""
    cam = points @ ext[:3, :3].T.astype(np.float64) + ext[:3, 3].astype(np.float64)
    z = cam[..., 2]
    safe = np.where(np.abs(z) > 1e-12, z, 1e-12)
    u = k[0, 0] * cam[..., 0] / safe + k[0, 1] * cam[..., 1] / safe + k[0, 2]
    v = k[1, 1] * cam[..., 1] / safe + k[1, 2]
    return u, v, z


def relative(k_i: np.ndarray, ext_i: np.ndarray, k_j: np.ndarray, ext_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A [3, 3], b [3]) taking frame i's pixels to frame j's: z_j (u_j, v_j, 1) = d_i A (u_i, v_i, 1) + b,
    so a whole depth map moves with a few float32 array operations instead of 3D points."""
    rot_i, rot_j = ext_i[:3, :3].astype(np.float64), ext_j[:3, :3].astype(np.float64)
    rot = rot_j @ rot_i.T
    t = ext_j[:3, 3].astype(np.float64) - rot @ ext_i[:3, 3].astype(np.float64)
    k_j = np.asarray(k_j, np.float64)
    return k_j @ rot @ np.linalg.inv(np.asarray(k_i, np.float64)), k_j @ t


def transfer(u: np.ndarray, v: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u_j, v_j, z_j) of pixels (u, v) at depth d under `relative`'s (A, b); z_j <= 0 behind."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    x = d * (a[0, 0] * u + a[0, 1] * v + a[0, 2]) + b[0]
    y = d * (a[1, 0] * u + a[1, 1] * v + a[1, 2]) + b[1]
    z = d * (a[2, 0] * u + a[2, 1] * v + a[2, 2]) + b[2]
    safe = np.where(np.abs(z) > 1e-12, z, np.float32(1e-12))
    return x / safe, y / safe, z


def pixel_centres(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (u, v) [H, W] of every pixel centre (COLMAP pixels)."""
    h, w = hw
    u, v = np.meshgrid(np.arange(w, dtype=np.float32) + HALF, np.arange(h, dtype=np.float32) + HALF)
    return u, v


def sample(image: np.ndarray, u: np.ndarray, v: np.ndarray, nearest: bool = False) -> np.ndarray:
    """`image` [H, W(, C)] at COLMAP pixels (u, v) [h, w]; 0 outside. Bilinear unless `nearest`."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    mx = (u - HALF).astype(np.float32)
    my = (v - HALF).astype(np.float32)
    return cv2.remap(image, mx, my, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def check_cameras(images: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray) -> tuple[int, int, int]:
    """(N, H, W) of consistent inputs, or an `InputError` naming what does not fit."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(f"images must be uint8 [N, H, W, 3], not {images.dtype} {list(images.shape)}")
    n, h, w = images.shape[:3]
    if extrinsics.shape != (n, 3, 4) or intrinsics.shape != (n, 3, 3):
        raise InputError(
            f"{n} images need extrinsics [{n}, 3, 4] and intrinsics [{n}, 3, 3], not {list(extrinsics.shape)} and {list(intrinsics.shape)}"
        )
    if not (np.isfinite(extrinsics).all() and np.isfinite(intrinsics).all()) or (intrinsics[:, [0, 1], [0, 1]] <= 0).any():
        raise InputError("cameras hold NaN, infinite numbers or focal lengths that are not positive")
    return n, h, w
