"""Dense depth for every frame of a scene with known cameras: the multi-view stereo stage.

Each frame is matched against a few partners (`views`) by rectified semi-global matching
(`rectified`); the partners' depths are merged where they agree, the frames are checked against
each other (`consistency`), what stereo could not measure is taken from the network's prior when
one is given, and the maps are fused into one cloud (`fusion`). Only one pair's cost volume is
alive at a time (inside OpenCV), so memory is the N depth maps; time is linear in N."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..cancel import CancelToken, Progress, reporter
from ..errors import InputError
from ..io.dense_points import DensePoints
from ..io.tracks import Tracks
from .cameras import check_cameras
from .consistency import MIN_CONSISTENT, consistent_counts, merge_estimates
from .fusion import fuse
from .rectified import pair_depth, rectify
from .views import Neighbourhood, depth_ranges

PARTNERS = 6  # frames matched against each frame
CHECKED = 4  # frames each frame's depth is checked against
FUSED = 16  # earlier frames (most overlapping first) a frame's points are checked against before fusing
PRIOR_WEIGHT = 0.2  # confidence of a prior pixel at the prior's own highest: below any stereo pixel's (>= 1 / CHECKED)
TEXTURE_WINDOW = 7  # pixels: the window whose grey-level spread says whether stereo can match
MIN_TEXTURE = 2.0  # grey levels: flatter than this and stereo's depth there is a guess
NONE, STEREO, PRIOR = 0, 1, 2  # what each pixel's depth came from
SOURCE_NAMES = ("none", "stereo", "prior")


@dataclass
class DenseDepth:
    depth: np.ndarray  # float32 [N, H, W], 0 = no depth
    confidence: np.ndarray  # float32 [N, H, W] in [0, 1]: share of checked frames that agreed (prior: lower)
    source: np.ndarray  # uint8 [N, H, W]: NONE, STEREO or PRIOR
    points: DensePoints  # the stereo depth fused, each surface point once (prior pixels are left out)
    stats: dict = field(default_factory=dict)

    @property
    def xyz(self) -> np.ndarray:
        return self.points.xyz

    @property
    def rgb(self) -> np.ndarray:
        return self.points.rgb


def textured(grey: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose neighbourhood varies enough for a match to mean something."""
    g = grey.astype(np.float32)
    mean = cv2.blur(g, (TEXTURE_WINDOW, TEXTURE_WINDOW))
    var = cv2.blur(g * g, (TEXTURE_WINDOW, TEXTURE_WINDOW)) - mean * mean
    return np.sqrt(np.maximum(var, 0)) >= MIN_TEXTURE


def frame_depth(i: int, grey: list[np.ndarray], cams: tuple[np.ndarray, np.ndarray], partners: np.ndarray, depth_range) -> np.ndarray:
    """Frame i's stereo depth [H, W] merged over its partners (0 = none)."""
    ext, k = cams
    hw = grey[i].shape
    estimates = []
    for j in partners:
        pair = rectify(grey[i], grey[j], (k[i], ext[i], k[j], ext[j]), depth_range)
        if pair is not None:
            estimates.append(pair_depth(pair, hw))
    if not estimates:
        return np.zeros(hw, np.float32)
    depth, _ = merge_estimates(np.stack(estimates))
    return np.where(textured(grey[i]), depth, 0).astype(np.float32)


def checked(
    raw: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, overlapping, token: CancelToken
) -> tuple[np.ndarray, np.ndarray]:
    """(depth, confidence) [N, H, W]: each frame's raw depth where at least MIN_CONSISTENT of the
    CHECKED most overlapping frames with depth agree; confidence = the share that agreed."""
    depth = np.zeros_like(raw)
    confidence = np.zeros_like(raw)
    for i in range(len(raw)):
        token.check()
        others = [j for j in overlapping[i] if raw[j].any()][:CHECKED]
        counts = consistent_counts(raw, extrinsics, intrinsics, i, others)
        keep = counts >= MIN_CONSISTENT
        depth[i] = np.where(keep, raw[i], 0)
        confidence[i] = np.where(keep, counts / max(len(others), 1), 0)
    return depth, confidence


def _check_prior(prior, n: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    if prior is None:
        return None
    depth, conf = (np.asarray(a, np.float32) for a in prior)
    if depth.shape != (n, *hw) or conf.shape != (n, *hw):
        raise InputError(
            f"the prior's depth and confidence must be [{n}, {hw[0]}, {hw[1]}], not {list(depth.shape)} and {list(conf.shape)}"
        )
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0), np.where(np.isfinite(conf), conf, 0)


def _prior_confidence(conf: np.ndarray) -> np.ndarray:
    """The prior's confidence on the output's scale: PRIOR_WEIGHT at its own 90th percentile."""
    top = np.percentile(conf[conf > 0], 90) if (conf > 0).any() else 1.0
    return (PRIOR_WEIGHT * np.clip(conf / max(top, 1e-12), 0, 1)).astype(np.float32)


def dense_depth(
    images: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    tracks: Tracks | None = None,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    partners: int = PARTNERS,
    keep: np.ndarray | None = None,
) -> DenseDepth:
    """Dense depth, confidence and source per pixel, and the fused cloud, of frames with known
    cameras (see the module's docstring); reports ("dense", i + 1, N) after each frame. `keep`:
    bool [N, H, W], the pixels the user's masks keep (none of the others gets depth, from stereo
    or the prior, and none takes part in the cross-frame check)."""
    images = np.asarray(images)
    extrinsics, intrinsics = np.asarray(extrinsics, np.float64), np.asarray(intrinsics, np.float64)
    n, h, w = check_cameras(images, extrinsics, intrinsics)
    if n < 2:
        raise InputError("dense depth needs at least two frames with cameras")
    prior_maps = _check_prior(prior, n, (h, w))
    if keep is not None and np.shape(keep) != (n, h, w):  # before the stereo's minutes
        raise InputError(f"masks must be [{n}, {h}, {w}] like the images, not {list(np.shape(keep))}")
    token = cancel or CancelToken()
    report = reporter(progress, token)
    token.check()
    clock = {"start": time.perf_counter()}
    ranges = depth_ranges(extrinsics, tracks, None if prior_maps is None else prior_maps[0], n)
    hood = Neighbourhood(extrinsics, intrinsics, (h, w), ranges, tracks)
    grey = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
    raw = np.zeros((n, h, w), np.float32)
    chosen = []
    for i in range(n):
        chosen.append(hood.partners(i, partners))
        raw[i] = frame_depth(i, grey, (extrinsics, intrinsics), chosen[-1], ranges[i])
        report("dense", i + 1, n)
    clock["stereo"] = time.perf_counter()
    if keep is not None:
        raw = np.where(keep, raw, 0).astype(np.float32)
    overlapping = [hood.overlapping(i) for i in range(n)]
    depth, confidence = checked(raw, extrinsics, intrinsics, overlapping, token)
    source = np.where(depth > 0, STEREO, NONE).astype(np.uint8)
    clock["check"] = time.perf_counter()
    points = fuse(depth, confidence, images, extrinsics, intrinsics, [[j for j in o if j < i][:FUSED] for i, o in enumerate(overlapping)])
    token.check()
    if prior_maps is not None:
        fill = (depth == 0) & (prior_maps[0] > 0) & (True if keep is None else keep)
        depth = np.where(fill, prior_maps[0], depth)
        confidence = np.where(fill, _prior_confidence(prior_maps[1]), confidence)
        source[fill] = PRIOR
    clock["fuse"] = time.perf_counter()
    stats = {
        "frames": n,
        "stereo_share": float(np.mean(source == STEREO)),
        "prior_share": float(np.mean(source == PRIOR)),
        "raw_share": float(np.mean(raw > 0)),
        "points": points.num_points,
        "partners_per_frame": float(np.mean([len(c) for c in chosen])),
        "seconds_stereo": clock["stereo"] - clock["start"],
        "seconds_check": clock["check"] - clock["stereo"],
        "seconds_fuse": clock["fuse"] - clock["check"],
    }
    return DenseDepth(depth.astype(np.float32), confidence.astype(np.float32), source, points, stats)
