"""Novel views rendered from the photos themselves (image-based rendering).

For each view: the few input frames nearest to it by pose that see it are chosen; their dense
depth is forward-warped into the view (z-buffered, so occlusions are resolved by depth) to give
the view's depth; each chosen photo is then sampled where that depth lands in it (backward warp,
bilinear: no splatting blur), kept only where its own depth says the point is not hidden, and
blended with weights that favour photos seeing the point from nearly the view's direction and
with high confidence. Cracks in the depth are closed and uncovered pixels filled (`holes`).
Only frames in `sources` are ever read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..cancel import CancelToken
from ..errors import InputError
from ..io.novel_views import NovelViews
from .cameras import HALF, axes, centres, check_cameras, pixel_centres, project, relative, to_world_to_camera, transfer
from .consistency import lookup
from .holes import close_cracks, fill_holes

SOURCES_PER_VIEW = 4  # photos blended into a view
DRAFT_SOURCES = 2  # ... into a draft
DRAFT_SCALE = 0.5  # a draft is rendered at this fraction of the size, then enlarged
VISIBLE_TOLERANCE = 0.03  # relative depth within which a photo's own depth says it sees the point
ANGLE_SIGMA = 4.0  # degrees: how fast a photo's weight falls with its angle to the view's ray
UNKNOWN_WEIGHT = 0.05  # weight of a photo that has no depth of its own where the point lands
ORIENTATION_SCALE = 0.5  # scene units of camera distance one radian of turning counts as
VISIBILITY_GRID = 8  # a view's pixels sampled (per side) to measure how much of it a photo sees
MIN_SEEN_SHARE = 0.2  # a photo must see this share of the view to be blended into it
CANDIDATE_FACTOR = 3  # photos ranked by pose and checked for visibility, per photo blended


@dataclass
class Photos:
    """The frames a view may be rendered from, with their dense depth."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    depth: np.ndarray  # float32 [N, H, W], 0 = none
    confidence: np.ndarray  # float32 [N, H, W]
    extrinsics: np.ndarray  # float64 [N, 3, 4] world-to-camera
    intrinsics: np.ndarray  # float64 [N, 3, 3]
    sources: np.ndarray  # the frames that may be read
    scale: float  # the scene's typical depth
    keep: np.ndarray | None = None  # bool [N, H, W]: the pixels the user's masks keep (None: all)

    def camera(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.intrinsics[i], self.extrinsics[i]


def pose_ranking(c2w: np.ndarray, extrinsics: np.ndarray, candidates: Sequence[int] | np.ndarray, scale: float) -> np.ndarray:
    """`candidates` ordered by nearness to the camera `c2w` [3, 4]: distance between centres (in
    units of `scale`, the scene's typical depth) plus the angle between optical axes."""
    cand = np.asarray(candidates, int)
    centre = centres(extrinsics[cand])
    gap = np.linalg.norm(centre - c2w[:3, 3], axis=1) / max(scale, 1e-12)
    turn = np.arccos(np.clip(axes(extrinsics[cand]) @ c2w[:3, 2], -1, 1))
    return cand[np.argsort(gap + ORIENTATION_SCALE * turn, kind="stable")]


def seen_share(c2w: np.ndarray, k: np.ndarray, size: tuple[int, int], photos: Photos, cand: np.ndarray) -> np.ndarray:
    """Share of the view's pixels (a coarse grid, at the scene's typical depth) each candidate sees."""
    h, w = size
    ext_v = to_world_to_camera(c2w[None])[0]
    ys, xs = np.meshgrid(np.linspace(0.5, h - 0.5, VISIBILITY_GRID), np.linspace(0.5, w - 0.5, VISIBILITY_GRID), indexing="ij")
    rays = np.stack(((xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)), -1).reshape(-1, 3)
    points = (rays * photos.scale - ext_v[:3, 3]) @ ext_v[:3, :3]
    h_s, w_s = photos.depth.shape[1:]
    share = np.zeros(len(cand))
    for c, j in enumerate(cand):
        u, v, z = project(points, photos.intrinsics[j], photos.extrinsics[j])
        share[c] = np.mean((z > 0) & (u >= 0) & (u < w_s) & (v >= 0) & (v < h_s))
    return share


def choose_sources(c2w: np.ndarray, k: np.ndarray, size: tuple[int, int], photos: Photos, count: int) -> np.ndarray:
    """The `count` frames nearest the view by pose among those that see enough of it (the
    nearest by pose alone when none does)."""
    ranked = pose_ranking(c2w, photos.extrinsics, photos.sources, photos.scale)[: count * CANDIDATE_FACTOR]
    seeing = ranked[seen_share(c2w, k, size, photos, ranked) >= MIN_SEEN_SHARE]
    return (seeing if len(seeing) else ranked)[:count]


def typical_depth(depth: np.ndarray, frames: Sequence[int] | np.ndarray) -> float:
    """Median depth over `frames` (1 when none has depth)."""
    found = [np.median(depth[i][depth[i] > 0]) for i in frames if (depth[i] > 0).any()]
    return float(np.median(found)) if found else 1.0


def forward_depth(depth_s: np.ndarray, cam_s, cam_v, size: tuple[int, int]) -> np.ndarray:
    """Frame s's depth warped into the view: z-buffered, each point covering the 2x2 pixels
    around where it lands (no cracks at up to 2x magnification); inf where nothing lands."""
    h, w = size
    u, v = pixel_centres(depth_s.shape)
    has = depth_s > 0
    u_v, v_v, z_v = transfer(u[has], v[has], depth_s[has], *relative(*cam_s, *cam_v))
    front = z_v > 0
    u_v, v_v, z_v = u_v[front] - HALF, v_v[front] - HALF, z_v[front]
    index, value = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            col, row = np.floor(u_v).astype(np.int64) + dx, np.floor(v_v).astype(np.int64) + dy
            inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
            index.append(row[inside] * w + col[inside])
            value.append(z_v[inside])
    zbuf = torch.full((h * w,), float("inf"))
    zbuf.scatter_reduce_(0, torch.from_numpy(np.concatenate(index)), torch.from_numpy(np.concatenate(value)), reduce="amin")
    return zbuf.numpy().reshape(h, w)


def blend(views_of: list[tuple], depth_v: np.ndarray, cam_v) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [H, W, 3] float32 0..1 where covered, weight [H, W]) of the photos (image uint8,
    depth, confidence, camera, kept pixels or None) sampled where the view's depth lands in them."""
    u, v = pixel_centres(depth_v.shape)
    total = np.zeros(depth_v.shape, np.float32)
    colour = np.zeros((*depth_v.shape, 3), np.float32)
    c_v = centres(cam_v[1][None])[0]
    points = None
    for image, depth_s, conf_s, cam_s, keep_s in views_of:
        u_s, v_s, z_s = transfer(u, v, depth_v, *relative(*cam_v, *cam_s))
        h_s, w_s = depth_s.shape
        inside = (z_s > 0) & (u_s >= 0) & (u_s < w_s) & (v_s >= 0) & (v_s < h_s) & (depth_v > 0)
        d_s, col, row = lookup(depth_s, u_s, v_s)
        seen = np.where(d_s > 0, (np.abs(z_s - d_s) < VISIBLE_TOLERANCE * z_s) * np.maximum(conf_s[row, col], 0.05), UNKNOWN_WEIGHT)
        if keep_s is not None:  # a masked pixel (a moving thing, the sky) is never drawn into a view
            seen = seen * keep_s[row, col]
        if points is None:  # the view's points in the world, for the angle between rays
            k_inv = np.linalg.inv(cam_v[0]).astype(np.float32)
            rays = np.stack((k_inv[0, 0] * u + k_inv[0, 2], k_inv[1, 1] * v + k_inv[1, 2], np.ones_like(u)), -1)
            ext = cam_v[1].astype(np.float32)
            points = (rays * depth_v[..., None] - ext[:3, 3]) @ ext[:3, :3]
        a = points - c_v.astype(np.float32)
        b = points - centres(cam_s[1][None])[0].astype(np.float32)
        cos = np.einsum("hwc,hwc->hw", a, b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        weight = np.where(inside, seen * np.exp(-0.5 * (angle / ANGLE_SIGMA) ** 2) + 1e-6, 0).astype(np.float32)
        sampled = cv2.remap(image, u_s - np.float32(HALF), v_s - np.float32(HALF), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        colour += sampled.astype(np.float32) / 255.0 * weight[..., None]
        total += weight
    return colour / np.maximum(total, 1e-12)[..., None], total


def render_one(photos: Photos, c2w: np.ndarray, k: np.ndarray, size: tuple[int, int], count: int) -> tuple:
    """(rgb, depth, confidence) of one view from `count` of the photos."""
    cam_v = (np.asarray(k, np.float64), to_world_to_camera(c2w[None])[0])
    chosen = choose_sources(c2w, k, size, photos, count)
    zbuf = np.full(size, np.inf, np.float32)
    for s in chosen:
        zbuf = np.minimum(zbuf, forward_depth(photos.depth[s], photos.camera(s), cam_v, size))
    depth_v = close_cracks(np.where(np.isfinite(zbuf), zbuf, 0))
    keep = [None if photos.keep is None else photos.keep[s] for s in chosen]
    views_of = [(photos.images[s], photos.depth[s], photos.confidence[s], photos.camera(s), kept) for s, kept in zip(chosen, keep)]
    rgb, weight = blend(views_of, depth_v, cam_v)
    covered = weight > 1e-5
    rgb = fill_holes(rgb, covered)
    return np.clip(rgb, 0, 1), np.where(covered, depth_v, 0), np.clip(weight, 0, 1)


def _photos(images, depth, confidence, extrinsics, intrinsics, sources: Sequence[int] | np.ndarray | None, keep=None) -> Photos:
    """The inputs checked and gathered; `sources` less the frames without depth."""
    images = np.asarray(images)
    n, h, w = check_cameras(images, np.asarray(extrinsics), np.asarray(intrinsics))
    depth, confidence = np.asarray(depth, np.float32), np.asarray(confidence, np.float32)
    if depth.shape != (n, h, w) or confidence.shape != (n, h, w):
        raise InputError(
            f"depth and confidence must be [{n}, {h}, {w}] like the images, not {list(depth.shape)} and {list(confidence.shape)}"
        )
    allowed = range(n) if sources is None else [int(i) for i in sources]
    if any(not 0 <= i < n for i in allowed):
        raise InputError(f"source frames must be between 0 and {n - 1}")
    chosen = np.array([i for i in allowed if (depth[i] > 0).any()], int)
    if not len(chosen):
        raise InputError("no source frame has depth to render from")
    ext, k = np.asarray(extrinsics, np.float64), np.asarray(intrinsics, np.float64)
    if keep is not None and np.shape(keep) != (n, h, w):
        raise InputError(f"masks must be [{n}, {h}, {w}] like the images, not {list(np.shape(keep))}")
    kept = None if keep is None else np.asarray(keep, bool)
    return Photos(images, depth, confidence, ext, k, chosen, typical_depth(depth, chosen), kept)


def render_from_photos(
    images: np.ndarray,
    depth: np.ndarray,
    confidence: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    c2w: np.ndarray,
    k: np.ndarray,
    size: tuple[int, int],
    sources: Sequence[int] | np.ndarray | None = None,
    draft: bool = False,
    keep: np.ndarray | None = None,
    cancel: CancelToken | None = None,
) -> NovelViews:
    """Views [V] at cameras `c2w` [V, 3|4, 4] (camera-to-world) with intrinsics `k` [V, 3, 3] for
    pictures of `size` (h, w), from the photos of `sources` (None: every frame with depth) and
    their dense depth and confidence [N, H, W]; `draft`: fewer photos at half the pixels;
    `keep`: bool [N, H, W], the pixels the user's masks keep (the others are never drawn);
    `cancel`: checked before each view."""
    photos = _photos(images, depth, confidence, extrinsics, intrinsics, sources, keep)
    c2w, k = np.asarray(c2w, np.float64)[..., :3, :4].reshape(-1, 3, 4), np.asarray(k, np.float64).reshape(-1, 3, 3)
    if min(size) < 1 or len(c2w) != len(k):
        raise InputError(f"cannot render {len(c2w)} poses with {len(k)} intrinsics at size {tuple(size)}")
    h, w = int(size[0]), int(size[1])
    scale = DRAFT_SCALE if draft else 1.0
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = []
    for pose, kk in zip(c2w, k):
        if cancel is not None:
            cancel.check()
        k_small = np.diag([small[1] / w, small[0] / h, 1.0]) @ kk
        rgb, d, conf = render_one(photos, pose, k_small, small, DRAFT_SOURCES if draft else SOURCES_PER_VIEW)
        if draft:
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
            conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append((rgb, d, conf))
    rgb, d, conf = (np.stack(x).astype(np.float32) for x in zip(*out))
    return NovelViews(rgb, d, conf)
