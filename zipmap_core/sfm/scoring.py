"""Cameras and depth scored against COLMAP's, on real footage with no ground truth
(`zipmap eval --against colmap`).

Cameras: relative rotation and translation-direction accuracy over all pairs of frames both
registered (RRA, RTA at 5/15/30 degrees, AUC@30: the metrics of the ZipMap and VGGT papers; they
do not change under a similarity of either side), plus each frame's rotation error once the two
sets are rotated onto each other (the share within 5 degrees). Depth: AbsRel and delta < 1.25
at COLMAP's triangulated points, after scaling each frame's depth by its median ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import CancelToken, Progress
from ..io.reconstruction import Reconstruction
from ..metrics import aligned_rotation_errors, pose_metrics
from ..pipeline.engine import Engine
from ..pipeline.reconstruct_options import ReconstructOptions
from .engine import ClassicalEngine
from .models import observed_depths

WITHIN_DEG = 5.0


def depth_scores(pred: Reconstruction, ref: Reconstruction, pred_index: np.ndarray, ref_index: np.ndarray) -> dict[str, float]:
    """AbsRel and delta < 1.25 of `pred`'s depth at `ref`'s observed points, frames matched by index."""
    if ref.tracks is None:
        return {}
    keep = np.zeros(ref.num_frames, bool)
    keep[ref_index] = True
    tracks = ref.tracks.keep_frames(keep)
    scale = np.array([pred.image_hw[1] / ref.image_hw[1], pred.image_hw[0] / ref.image_hw[0]], np.float32)
    tracks.pixels = tracks.pixels * scale
    depth = pred.depth[pred_index[np.argsort(ref_index)]]  # ref frames ascending, as keep_frames renumbers
    frame, z, at = observed_depths(tracks, ref.extrinsics[np.sort(ref_index)].astype(np.float64), depth)
    rel, good = [], []
    for i in np.unique(frame):
        d, g = at[frame == i], z[frame == i]
        d = d * np.median(g / d)
        rel.append(np.abs(d - g) / g)
        good.append(np.maximum(d / g, g / d) < 1.25)
    if not rel:
        return {}
    r, ok = np.concatenate(rel), np.concatenate(good)
    return {"depth_AbsRel": float(r.mean()), "depth_delta<1.25": float(ok.mean()), "depth_points": len(r)}


def score(pred: Reconstruction, ref: Reconstruction) -> dict[str, Any]:
    """`pred` against `ref` on the frames both hold (matched by name)."""
    ref_at = {n: i for i, n in enumerate(ref.names)}
    pairs = [(i, ref_at[n]) for i, n in enumerate(pred.names) if n in ref_at]
    out: dict[str, Any] = {"frames": len(pred.names), "reference_frames": ref.num_frames, "common_frames": len(pairs)}
    if len(pairs) < 2:
        return out
    p, r = np.array(pairs).T
    out.update(pose_metrics(pred.extrinsics[p].astype(np.float64), ref.extrinsics[r].astype(np.float64)))
    errs = aligned_rotation_errors(pred.extrinsics[p, :, :3].astype(np.float64), ref.extrinsics[r, :, :3].astype(np.float64))
    out[f"frames_within_{WITHIN_DEG:g}deg"] = float(np.mean(errs < WITHIN_DEG))
    out["rotation_error_p90_deg"] = float(np.percentile(errs, 90))
    out.update(depth_scores(pred, ref, p, r))
    return out


def evaluate_against_colmap(
    engine: Engine,
    inputs: Sequence[str | Path],
    options: ReconstructOptions,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Scores `engine`'s scene of `inputs` against the classical engine's on the same frames; the
    classical engine scored against itself is a consistency check (every score is perfect)."""
    cancel = cancel or CancelToken()
    reference = ClassicalEngine().reconstruct(inputs, options, progress=progress, cancel=cancel)
    pred = reference if engine.name == ClassicalEngine.name else engine.reconstruct(inputs, options, progress=progress, cancel=cancel)
    result = score(pred, reference)
    result["model"] = pred.metadata.get("model", "")
    result["reference"] = reference.metadata.get("colmap", {})
    if "refine" in pred.metadata:
        result["refine"] = pred.metadata["refine"]
    return result


def format_scores(result: dict[str, Any]) -> str:
    """The scores as a few aligned lines for the terminal."""
    ref = result.get("reference", {})
    lines = [
        f"{result.get('model', '')} against COLMAP ({ref.get('registered')} of {ref.get('frames')} frames registered, "
        f"{ref.get('points')} points): {result['common_frames']} frames compared"
    ]
    keys = ["RRA@5", "RRA@15", "RRA@30", "RTA@5", "RTA@15", "RTA@30", "AUC@30", f"frames_within_{WITHIN_DEG:g}deg"]
    keys += ["depth_AbsRel", "depth_delta<1.25"]
    lines += [f"  {k:<22} {result[k]:.3f}" for k in keys if k in result]
    return "\n".join(lines)
