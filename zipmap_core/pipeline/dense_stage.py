"""The dense stage, run after any engine whose cameras COLMAP measured (`zipmap_core.engines`
decides): dense depth and confidence for every frame from the photos (`dense.dense_depth`), the
network's depth as a prior where the scene has one (refinement), and the fused point cloud.
A cancel or a failure leaves the scene it was given as it was."""

from __future__ import annotations

import time

from ..cancel import CancelToken, Progress
from ..dense import SOURCE_NAMES, dense_depth
from ..io.reconstruction import Reconstruction

METHOD = "rectified semi-global matching (OpenCV) against 6 partners, checked across frames, fused"


def densify(recon: Reconstruction, progress: Progress | None = None, cancel: CancelToken | None = None) -> Reconstruction:
    """`recon` with dense depth: a scene whose depth is the network's keeps it as the prior where
    stereo cannot match (the confidence says which: a prior pixel's is at most 0.2, below any
    pixel stereo measured); a sparse scene's triangulated points set each frame's depth range."""
    t0 = time.perf_counter()
    prior = None if recon.is_sparse else (recon.depth, recon.depth_conf)
    result = dense_depth(recon.images, recon.extrinsics, recon.intrinsics, recon.tracks, prior, progress, cancel, keep=recon.masks)
    seconds = time.perf_counter() - t0
    shares = {f"{name}_share": float((result.source == code).mean()) for code, name in enumerate(SOURCE_NAMES)}
    info = {"method": METHOD, "prior": prior is not None, "points": result.points.num_points, "seconds": seconds, **shares}
    timings = {**recon.timings, "dense_s": seconds, "total_s": recon.timings.get("total_s", 0.0) + seconds}
    return recon.with_depth(
        result.depth,
        result.confidence,
        dense_points=result.points,
        metadata={**recon.metadata, "dense": info},
        timings=timings,
    )
