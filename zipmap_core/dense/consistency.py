"""Agreement between depth estimates: of one frame's partners (merging), and of frames with each
other (the geometric consistency check).

A wrong match is rarely wrong the same way twice: a pixel whose partners disagree, or whose point
lands, in another frame, on a depth that does not lead back to it, is dropped. This is what keeps
a frame with a bad camera or a mismatched region out of the result."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .cameras import HALF, pixel_centres, relative, transfer

MERGE_TOLERANCE = 0.02  # relative depth within which partners' estimates agree
REPROJECTION_TOLERANCE = 1.0  # pixels: a point's round trip through another frame lands this close
DEPTH_TOLERANCE = 0.02  # relative depth at which two frames agree on a point
MIN_CONSISTENT = 1  # frames that must agree with a pixel for it to stay


def merge_estimates(estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(depth, support) [H, W] from partners' depths [K, H, W] (0 = none): the median of the
    estimates, refined as the mean of those within MERGE_TOLERANCE of it; support = how many
    agreed. Where two estimates disagree and none is in between, the pixel is dropped."""
    valid = estimates > 0
    count = valid.sum(0)
    ordered = np.sort(np.where(valid, estimates, np.inf), axis=0)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, count[None] // 2 - (count[None] == 0), axis=0)[0]
    median = np.where(count > 0, (low + np.where(np.isfinite(high), high, low)) / 2, 0)
    agree = valid & (np.abs(estimates - median) <= MERGE_TOLERANCE * median)
    support = agree.sum(0)
    mean = np.where(agree, estimates, 0).sum(0) / np.maximum(support, 1)
    keep = (support >= 2) | (count == 1)
    return np.where(keep, mean, 0).astype(np.float32), np.where(keep, support, 0).astype(np.int16)


def lookup(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth, column, row) of the pixels (u, v) fall in (COLMAP pixels); depth 0 outside."""
    h, w = depth.shape
    # nowhere (NaN, infinite, or beyond int32 before the cast): outside
    u = np.clip(np.nan_to_num(u, nan=-1.0, posinf=-1.0, neginf=-1.0), -1.0, w)
    v = np.clip(np.nan_to_num(v, nan=-1.0, posinf=-1.0, neginf=-1.0), -1.0, h)
    col, row = np.floor(u).astype(np.int32), np.floor(v).astype(np.int32)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    col, row = np.clip(col, 0, w - 1), np.clip(row, 0, h - 1)
    return np.where(inside, depth[row, col], 0), col, row


def agrees_with(
    depth_i: np.ndarray, depth_j: np.ndarray, cam_i: tuple[np.ndarray, np.ndarray], cam_j: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """bool [H, W]: frame i's pixels whose point lands in frame j on a depth whose point comes
    back to the same pixel (within REPROJECTION_TOLERANCE) and depth (within DEPTH_TOLERANCE)."""
    u, v = pixel_centres(depth_i.shape)
    there, back = relative(*cam_i, *cam_j), relative(*cam_j, *cam_i)
    u_j, v_j, z_j = transfer(u, v, depth_i, *there)
    d_j, col, row = lookup(depth_j, u_j, v_j)
    u_b, v_b, z_b = transfer(col + np.float32(HALF), row + np.float32(HALF), d_j, *back)
    err = (u_b - u) ** 2 + (v_b - v) ** 2
    close = np.abs(z_b - depth_i) < DEPTH_TOLERANCE * depth_i
    return (depth_i > 0) & (z_j > 0) & (d_j > 0) & (err < REPROJECTION_TOLERANCE**2) & close


def consistent_counts(depth: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, i: int, others: Sequence[int]) -> np.ndarray:
    """int [H, W]: how many of the frames `others` agree with frame i's depth at each pixel."""
    counts = np.zeros(depth.shape[1:], np.int16)
    for j in others:
        counts += agrees_with(depth[i], depth[j], (intrinsics[i], extrinsics[i]), (intrinsics[j], extrinsics[j]))
    return counts
