"""`zipmap bench classical`: what the classical engine costs as a video's frames grow, incremental
against global mapping (GLOMAP's method, pycolmap's `global_mapping`), with the frames each
registers and its reprojection error. Both mappers start from the same features and matches of
the same frames (sequential pairs, as the engine matches a video); the summary's `time_slope` is
the log-log slope of the engine's seconds with the mapper it picks by default (`default_mapper`)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import CancelToken
from ..io.atomic import atomic_path
from ..io.inputs import Preparation, VideoSampling, load_inputs
from ..options import CLASSICAL_WIDTH
from ..pipeline.recipe import model_images
from ..resources import REAL_SAMPLE
from ..sfm.mapping import GLOBAL_FROM, MAPPERS, default_mapper, map_global, map_incremental, match_pairs
from ..sfm.pairs import pairs_for
from ..sfm.workspace import Workspace
from .dense import slope


def _quiet(stage: str, done: int, total: int) -> None:
    return None


def frames_of(video: Path, n: int) -> np.ndarray:
    """`n` evenly spaced frames of `video` as the classical engine sees them (uint8 [N, H, W, 3])."""
    inputs = load_inputs([video], VideoSampling(fps=None, max_frames=n), prepare=Preparation("crop", CLASSICAL_WIDTH))
    images, _ = model_images(inputs.frames, "crop", CLASSICAL_WIDTH, _quiet)
    return images.permute(0, 2, 3, 1).numpy()


def one_size(video: Path, n: int) -> dict[str, Any]:
    """Features and matching once, then each mapper on them."""
    frames = frames_of(video, n)
    row: dict[str, Any] = {"frames": len(frames), "image_hw": list(frames.shape[1:3])}
    with Workspace(frames, CancelToken()) as ws:
        ws.add_cameras(None, True, False)
        t0 = time.perf_counter()
        _, pairs = pairs_for("video", frames)
        match_pairs(ws, pairs, _quiet, len(frames))
        row["features_and_matching_s"] = time.perf_counter() - t0
        row["pairs"] = len(pairs)
        for name, mapper in zip(MAPPERS, (map_incremental, map_global)):
            t0 = time.perf_counter()
            best = mapper(ws, len(frames), False, _quiet).best
            row[name] = {
                "mapping_s": time.perf_counter() - t0,
                "seconds": row["features_and_matching_s"] + time.perf_counter() - t0,
                "registered": int(best.num_reg_images()),
                "reprojection_error_px": float(best.compute_mean_reprojection_error()),
            }
    row["default_mapper"] = default_mapper("video", len(frames))
    return row


def bench_classical(frames: list[int], out_dir: Path, log: Callable[[str], None] = print, video: Path = REAL_SAMPLE) -> dict[str, Any]:
    rows = []
    for n in sorted(frames):
        row = one_size(video, n)
        rows.append(row)
        log(
            f"N={row['frames']}: features and matching {row['features_and_matching_s']:.1f} s; "
            + "; ".join(
                f"{m} {row[m]['mapping_s']:.1f} s, {row[m]['registered']} registered, {row[m]['reprojection_error_px']:.2f} px"
                for m in MAPPERS
            )
        )
    ns = [r["frames"] for r in rows]
    engine = [r[r["default_mapper"]]["seconds"] for r in rows]
    summary = {
        "time_slope": slope(ns, engine),
        **{f"{m}_time_slope": slope(ns, [r[m]["seconds"] for r in rows]) for m in MAPPERS},
        **{f"{m}_mapping_slope": slope(ns, [r[m]["mapping_s"] for r in rows]) for m in MAPPERS},
        "global_registers_as_many": all(r["global"]["registered"] >= r["incremental"]["registered"] for r in rows),
        "default": f"global mapping for videos of at least {GLOBAL_FROM} frames, incremental otherwise",
    }
    result = {
        "what": f"the classical engine on N frames of {video.name} at {CLASSICAL_WIDTH} px: seconds of features and matching "
        "(sequential pairs) plus each mapper; time_slope is the engine's, with the mapper it picks by default",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "rows": rows,
        "summary": summary,
    }
    plot(result, Path(out_dir) / "classical.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = [r["frames"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, style in zip(MAPPERS, ("o-", "s-")):
        ax.loglog(ns, [r[m]["seconds"] for r in rows], style, label=f"{m} mapping (slope {result['summary'][f'{m}_time_slope']:.2f})")
    ax.loglog(ns, [rows[0]["global"]["seconds"] * n / ns[0] for n in ns], ":", color="grey", label="linear in N")
    ax.set_xlabel("frames")
    ax.set_ylabel("seconds, features to model")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
