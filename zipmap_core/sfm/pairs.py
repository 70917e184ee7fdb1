"""Which frames to match. Matching is COLMAP's dearest stage and grows with the pairs: all of them
(N^2 / 2) for a few photos, neighbours in time for a video, and for anything larger each frame with
the k frames that see most of what it sees, judged from ZipMap's own cameras and depth, which
keeps matching linear in N."""

from __future__ import annotations

import numpy as np

SEQUENTIAL_OVERLAP = 10  # a video frame is matched with this many following frames (COLMAP's default)
EXHAUSTIVE_UP_TO = 40  # photo sets up to this size are matched exhaustively
NEIGHBOURS = 8  # k of the overlap choice
SAMPLES = 24  # a frame's depth is sampled on a SAMPLES x SAMPLES grid to judge overlap


def exhaustive_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def sequential_pairs(n: int, overlap: int = SEQUENTIAL_OVERLAP) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 1 + overlap))]


def overlap_scores(extrinsics: np.ndarray, intrinsics: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """[N, N]: the share of frame i's sampled surface points (depth unprojected with its predicted
    camera) that fall inside frame j's picture, in front of it. The diagonal is 0."""
    n, h, w = depth.shape
    vs = np.linspace(0, h - 1, SAMPLES).astype(int)
    us = np.linspace(0, w - 1, SAMPLES).astype(int)
    d = depth[:, vs][:, :, us].reshape(n, -1).astype(np.float64)  # [N, G]
    u, v = np.meshgrid(us + 0.5, vs + 0.5)
    pix = np.stack((u.ravel(), v.ravel(), np.ones(u.size)), 0)  # [3, G]
    rays = np.linalg.inv(intrinsics.astype(np.float64)) @ pix  # [N, 3, G]
    cam = rays * d[:, None]
    rot, t = extrinsics[:, :, :3].astype(np.float64), extrinsics[:, :, 3:].astype(np.float64)
    world = np.swapaxes(rot, 1, 2) @ (cam - t)  # [N, 3, G]
    valid = np.isfinite(d) & (d > 0)
    scores = np.zeros((n, n))
    for j in range(n):  # N^2 G cheap projections: a fraction of a second at N = 256
        pj = rot[j] @ world + t[j]  # [N, 3, G]
        z = pj[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            img = (intrinsics[j].astype(np.float64) @ pj)[:, :2] / z[:, None]
        inside = valid & (z > 1e-6) & (img[:, 0] >= 0) & (img[:, 0] < w) & (img[:, 1] >= 0) & (img[:, 1] < h)
        scores[:, j] = inside.sum(1) / np.maximum(valid.sum(1), 1)
    np.fill_diagonal(scores, 0.0)
    return scores


def overlap_pairs(extrinsics: np.ndarray, intrinsics: np.ndarray, depth: np.ndarray, k: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """Each frame with its `k` most overlapping frames (by `overlap_scores`, both ways), as sorted
    unique pairs: at most N k pairs."""
    scores = overlap_scores(extrinsics, intrinsics, depth)
    both = np.minimum(scores, scores.T) + 1e-3 * (scores + scores.T)  # ties broken by the larger share
    n = len(scores)
    pairs = set()
    for i in range(n):
        order = np.argsort(-both[i], kind="stable")
        for j in order[: min(k, n - 1)]:
            if j != i:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def look_alike_pairs(images: np.ndarray, k: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """Each frame [N, H, W, 3] with its `k` most alike frames by a 16x16 grey thumbnail (cosine of
    the centred thumbnails) and its neighbours in file order: a linear pair choice for a large
    photo set when there are no predicted cameras (COLMAP's vocabulary trees need a download)."""
    n, h, w, _ = images.shape
    grey = images.astype(np.float32).mean(-1)
    thumbs = grey[:, :: max(1, h // 16), :: max(1, w // 16)][:, :16, :16].reshape(n, -1)
    thumbs -= thumbs.mean(1, keepdims=True)
    thumbs /= np.linalg.norm(thumbs, axis=1, keepdims=True) + 1e-6
    alike = thumbs @ thumbs.T
    np.fill_diagonal(alike, -np.inf)
    pairs = set(sequential_pairs(n, 2))
    for i in range(n):
        for j in np.argsort(-alike[i], kind="stable")[: min(k, n - 1)]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def pairs_for(kind: str, images: np.ndarray) -> tuple[str, list[tuple[int, int]]]:
    """(how, pairs) for the classical engine by input kind: sequential for a video, exhaustive for
    a small photo set, the look-alike choice for a large one."""
    n = len(images)
    if kind == "video":
        return "sequential", sequential_pairs(n)
    if n <= EXHAUSTIVE_UP_TO:
        return "exhaustive", exhaustive_pairs(n)
    return "look-alike", look_alike_pairs(images)
