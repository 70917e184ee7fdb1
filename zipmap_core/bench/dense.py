"""What the dense stage and the photo renderer cost as the frames grow, on the real video.

The frames are registered once by the classical engine (the largest N asked for, evenly spaced
over the video), and N = each of `frames` is every (largest / N)-th of them, so every N sees the
same scene at a coarser or finer spacing. The dense stage is timed over all N frames (seconds
per frame at the scene's 518-pixel width); the renderer is timed on one held-out-style camera
(the middle frame, rendered from the others) at the scene's size, full and draft. The summary's
`dense_s_per_frame` is at the largest N; `render_s_per_view` is the median over the Ns;
`time_slope` is the log-log slope of dense seconds against N (1 = linear)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..dense.depth import dense_depth
from ..dense.render import render_from_photos
from ..io.atomic import atomic_path
from ..io.reconstruction import Reconstruction

VIDEO = Path(__file__).resolve().parents[2] / "resources" / "samples" / "real" / "great_wall.mp4"
RENDER_REPEATS = 3  # a render is timed this many times; the median is kept


def register(count: int, video: Path = VIDEO) -> Reconstruction:
    """`count` evenly spaced frames of `video` registered by the classical engine."""
    import torch  # noqa: F401  (pycolmap imported before torch breaks feature extraction)

    from ..io.inputs import VideoSampling
    from ..pipeline.reconstruct_options import ReconstructOptions
    from ..sfm.engine import ClassicalEngine

    options = ReconstructOptions(sampling=VideoSampling(fps=None, max_frames=count), dense=False)  # cameras only: the stage is timed here
    return ClassicalEngine().reconstruct([str(video)], options)


def subset(scene: Reconstruction, n: int) -> Reconstruction:
    """`n` evenly spaced frames of `scene` (every (S / n)-th when n divides S), tracks renumbered."""
    if scene.num_frames % n:
        pick = np.unique(np.round(np.linspace(0, scene.num_frames - 1, n)).astype(int))
    else:
        pick = np.arange(0, scene.num_frames, scene.num_frames // n)
    keep = np.zeros(scene.num_frames, bool)
    keep[pick] = True
    return scene.with_depth(
        scene.depth[keep],
        scene.depth_conf[keep],
        names=[scene.names[i] for i in pick],
        images=scene.images[keep],
        extrinsics=scene.extrinsics[keep],
        intrinsics=scene.intrinsics[keep],
        original_wh=scene.original_wh[keep],
        tracks=None if scene.tracks is None else scene.tracks.keep_frames(keep),
    )


def timed_render(scene: Reconstruction, depth: np.ndarray, confidence: np.ndarray, draft: bool) -> float:
    """Median seconds to render the middle frame's camera from the other frames."""
    mid = scene.num_frames // 2
    sources = [i for i in range(scene.num_frames) if i != mid]
    args = (
        scene.images,
        depth,
        confidence,
        scene.extrinsics,
        scene.intrinsics,
        scene.cam_to_world[mid : mid + 1],
        scene.intrinsics[mid : mid + 1],
    )
    times = []
    for _ in range(RENDER_REPEATS):
        t0 = time.perf_counter()
        render_from_photos(*args, scene.image_hw, sources=sources, draft=draft)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def slope(ns: list[int], seconds: list[float]) -> float:
    """The log-log slope of seconds against N (1: linear, 2: quadratic)."""
    return float(np.polyfit(np.log(ns), np.log(seconds), 1)[0])


def bench_dense(frames: list[int], out_dir: Path, log: Callable[[str], None] = print, scene: Path | None = None) -> dict[str, Any]:
    """Times the dense stage and one rendered view for N in `frames` frames of the video; plots
    `out_dir/dense.png` (`zipmap bench dense` writes the JSON beside it). `scene`: a `.zipmap` of the video registered
    already (at least max(frames) frames), so the minutes of registration are not repeated."""
    out_dir = Path(out_dir)
    largest = max(frames)
    t0 = time.perf_counter()
    full = Reconstruction.load(scene) if scene is not None else register(largest)
    log(f"registered {full.num_frames} frames in {time.perf_counter() - t0:.0f} s" if scene is None else f"loaded {full.num_frames} frames")
    rows = []
    for n in sorted(frames):
        part = subset(full, n)
        t0 = time.perf_counter()
        dense = dense_depth(part.images, part.extrinsics, part.intrinsics, part.tracks)
        seconds = time.perf_counter() - t0
        row = {
            "frames": part.num_frames,
            "image_hw": list(part.image_hw),
            "dense_s": seconds,
            "dense_s_per_frame": seconds / part.num_frames,
            "stereo_share": dense.stats["stereo_share"],
            "fused_points": dense.stats["points"],
            "stage_seconds": {k[len("seconds_") :]: v for k, v in dense.stats.items() if k.startswith("seconds_")},
            "render_s": timed_render(part, dense.depth, dense.confidence, draft=False),
            "render_draft_s": timed_render(part, dense.depth, dense.confidence, draft=True),
        }
        rows.append(row)
        log(
            f"N={row['frames']}: dense {seconds:.1f} s ({row['dense_s_per_frame']:.2f} s/frame, {row['stereo_share']:.0%} of pixels), "
            f"render {row['render_s']:.2f} s (draft {row['render_draft_s']:.2f} s)"
        )
    ns = [r["frames"] for r in rows]
    summary = {
        "dense_s_per_frame": rows[-1]["dense_s_per_frame"],
        "render_s_per_view": float(np.median([r["render_s"] for r in rows])),
        "render_draft_s_per_view": float(np.median([r["render_draft_s"] for r in rows])),
        "time_slope": slope(ns, [r["dense_s"] for r in rows]) if len(rows) > 1 else None,
    }
    result = {
        "what": "dense depth (rectified SGM, partners, consistency check, fusion) and a photo render of the middle frame, "
        f"{VIDEO.name} registered by the classical engine; dense_s_per_frame at the largest N, render_s_per_view the median",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "rows": rows,
        "summary": summary,
    }
    plot(result, out_dir / "dense.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = [r["frames"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    dense = [r["dense_s"] for r in rows]
    a.loglog(ns, dense, "o-", label=f"dense stage (slope {result['summary']['time_slope'] or float('nan'):.2f})")
    a.loglog(ns, [dense[0] * n / ns[0] for n in ns], ":", color="grey", label="linear in N")
    a.set_xlabel("frames")
    a.set_ylabel("seconds")
    a.legend()
    b.plot(ns, [r["render_s"] for r in rows], "o-", label="render, full")
    b.plot(ns, [r["render_draft_s"] for r in rows], "s--", label="render, draft")
    b.set_xscale("log")
    b.set_xlabel("frames")
    b.set_ylabel("seconds per view")
    b.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
