"""Scoring a model against scenes with ground truth, always beside trivial baselines.

Depth: AbsRel and delta<1.25 after per-view median scaling. Cameras: relative rotation and
translation-direction errors over all frame pairs, accuracy at 5/15/30 degrees and AUC@30.
Points: accuracy / completeness / Chamfer after a similarity (Umeyama) alignment of corresponding
pixels. Held-out views: PSNR of the rendered RGB and AbsRel of its depth. The scores are `metrics`'. Baselines: constant
depth, identity cameras, a flat image in the input views' mean colour (the simplest guess from
the inputs alone), the point-cloud splats of the fallback renderer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.reconstruction import Reconstruction
from ..metrics import THRESHOLDS, depth_metrics, point_metrics, pose_metrics, psnr, umeyama
from ..model.geometry import (
    align_to_first,
    camera_to_world,
    depth_to_camera_points,
    invert_rigid,
)
from .scene_folders import GroundTruth, read_ground_truth


# ---- depth ------------------------------------------------------------------------------------------
def resize_map(m: np.ndarray, hw: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """[S, H, W] or [S, H, W, C] -> the model's size; refuses aspect ratios that would need a crop."""
    _s, h, w = m.shape[:3]
    if abs(h / w - hw[0] / hw[1]) > 0.03:
        raise InputError(f"ground truth {w}x{h} and prediction {hw[1]}x{hw[0]} differ in aspect ratio")
    t = torch.as_tensor(m, dtype=torch.float32)
    t = t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2)
    kwargs = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(t, size=hw, mode=mode, **kwargs)
    return (out[:, 0] if m.ndim == 3 else out.permute(0, 2, 3, 1)).numpy()


# ---- whole scenes -----------------------------------------------------------------------------------
@dataclass
class SceneTruth:
    """Ground truth expressed like a Reconstruction: frame 0 = identity, sized to the prediction."""

    extrinsics: np.ndarray  # [S, 3, 4] input views
    depth: np.ndarray  # [S, h, w]
    points: np.ndarray  # [S, h, w, 3] in frame-0 coordinates
    held_c2w: np.ndarray  # [Q, 3, 4] in frame-0 coordinates
    held_intrinsics: np.ndarray  # [Q, 3, 3] for the prediction's image size
    held_images: np.ndarray  # [Q, h, w, 3] in [0, 1]
    held_depth: np.ndarray  # [Q, h, w]


def truth_for(gt: GroundTruth, folder: Path, hw: tuple[int, int]) -> SceneTruth:
    from PIL import Image

    n = len(gt.input_names)
    ext = align_to_first(torch.as_tensor(gt.extrinsics, dtype=torch.float64)[:, :3, :4])
    scale_k = np.diag([hw[1] / gt.depth.shape[2], hw[0] / gt.depth.shape[1], 1.0])
    k = scale_k @ gt.intrinsics
    depth = resize_map(gt.depth, hw)
    pts = camera_to_world(depth_to_camera_points(torch.as_tensor(depth[:n], dtype=torch.float64), torch.as_tensor(k[:n])), ext[:n]).numpy()
    held = gt.names[n:]
    if held:
        images = np.stack([np.asarray(Image.open(folder / name).convert("RGB"), np.float32) / 255 for name in held])
    else:
        images = np.zeros((0, *gt.depth.shape[1:], 3), np.float32)
    return SceneTruth(
        extrinsics=ext[:n].numpy(),
        depth=depth[:n],
        points=pts,
        held_c2w=invert_rigid(ext[n:]).numpy(),
        held_intrinsics=k[n:],
        held_images=resize_map(images, hw, "bilinear") if held else images,
        held_depth=depth[n:],
    )


def similarity_to_prediction(recon: Reconstruction, truth: SceneTruth) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity mapping ground-truth coordinates onto the prediction's, from all pixels."""
    s, r, t = umeyama(truth.points.reshape(-1, 3)[::7].astype(np.float64), recon.points_world.reshape(-1, 3)[::7].astype(np.float64))
    return s, r, t


def evaluate_scene(rec, folder: str | Path, max_points: int = 20000) -> dict[str, float]:
    """Reconstructs one ground-truth folder with Reconstructor `rec` and scores it with baselines."""
    folder = Path(folder)
    gt = read_ground_truth(folder)
    recon = rec.reconstruct([folder / n for n in gt.input_names], keep_state=True)
    truth = truth_for(gt, folder, recon.image_hw)
    out: dict[str, float] = {}
    out.update(depth_metrics(recon.depth, truth.depth))
    out.update(pose_metrics(recon.extrinsics, truth.extrinsics))
    out.update(point_metrics(recon.points_world.reshape(-1, 3), truth.points.reshape(-1, 3), max_points))
    const = np.ones_like(truth.depth)
    out.update({f"baseline_const_{k}": v for k, v in depth_metrics(const, truth.depth).items()})
    ident = np.tile(np.eye(4)[:3], (len(truth.extrinsics), 1, 1))
    identity = pose_metrics(ident, truth.extrinsics)
    out.update({f"baseline_identity_{k}": v for k, v in identity.items() if k.startswith(("RRA", "RTA", "AUC"))})
    if len(truth.held_images) and rec.model.can_render and recon.state is not None:
        out.update(held_out_metrics(rec, recon, truth))
    return out


def held_out_metrics(rec, recon: Reconstruction, truth: SceneTruth) -> dict[str, float]:
    """Renders the held-out cameras (mapped into the prediction's frame) from the scene state."""
    s, r, t = similarity_to_prediction(recon, truth)
    c2w = truth.held_c2w.astype(np.float64).copy()
    c2w_pred = np.concatenate((r @ c2w[:, :3, :3], (s * c2w[:, :3, 3] @ r.T + t)[..., None]), -1)
    views = rec.render_views(recon, c2w_pred.astype(np.float32), truth.held_intrinsics.astype(np.float32), recon.image_hw)
    mean_colour = recon.images.reshape(-1, 3).mean(0) / 255.0
    out = {
        "novel_psnr": float(np.mean([psnr(v, g) for v, g in zip(views.rgb, truth.held_images)])),
        "baseline_mean_colour_novel_psnr": float(np.mean([psnr(np.broadcast_to(mean_colour, g.shape), g) for g in truth.held_images])),
        "novel_depth_absrel": depth_metrics(views.depth, truth.held_depth * s)["depth_absrel"],
    }
    from ..pipeline.splat import splat_render

    fallback = splat_render(recon, c2w_pred.astype(np.float32), truth.held_intrinsics.astype(np.float32), recon.image_hw)
    out["baseline_pointcloud_novel_psnr"] = float(np.mean([psnr(v, g) for v, g in zip(fallback.rgb, truth.held_images)]))
    return out


def find_scenes(root: str | Path) -> list[Path]:
    root = Path(root)
    if (root / "ground_truth.npz").exists():
        return [root]
    scenes = sorted(p.parent for p in root.glob("*/ground_truth.npz"))
    if not scenes:
        raise InputError(f"no scenes with ground_truth.npz under {root}")
    return scenes


def evaluate(rec, root: str | Path, progress=None) -> dict:
    scenes = find_scenes(root)
    per_scene = {}
    for i, folder in enumerate(scenes):
        per_scene[folder.name] = evaluate_scene(rec, folder)
        if progress is not None:
            progress("evaluate", i + 1, len(scenes))
    keys = sorted({k for v in per_scene.values() for k in v})
    mean = {k: float(np.mean([v[k] for v in per_scene.values() if k in v])) for k in keys}
    return {"model": rec.description, "scenes": len(scenes), "mean": mean, "per_scene": per_scene}


def format_table(result: dict) -> str:
    m = result["mean"]
    rows = [
        ("depth AbsRel", "depth_absrel", "baseline_const_depth_absrel", "constant depth"),
        ("depth delta<1.25", "depth_delta1", "baseline_const_depth_delta1", "constant depth"),
        *[(f"RRA@{t}", f"RRA@{t}", f"baseline_identity_RRA@{t}", "identity cameras") for t in THRESHOLDS],
        *[(f"RTA@{t}", f"RTA@{t}", f"baseline_identity_RTA@{t}", "identity cameras") for t in THRESHOLDS],
        ("AUC@30", "AUC@30", "baseline_identity_AUC@30", "identity cameras"),
        ("points accuracy (rel.)", "pts_accuracy", None, ""),
        ("points completeness (rel.)", "pts_completeness", None, ""),
        ("points Chamfer (rel.)", "pts_chamfer", None, ""),
        ("novel view PSNR (dB)", "novel_psnr", "baseline_mean_colour_novel_psnr", "inputs' mean colour"),
        ("novel view PSNR (dB)", "novel_psnr", "baseline_pointcloud_novel_psnr", "point-cloud splats"),
        ("novel view depth AbsRel", "novel_depth_absrel", None, ""),
    ]
    n = result["scenes"]
    lines = [
        f"{result['model']}: scored on {n} scene{'' if n == 1 else 's'}",
        f"{'metric':<28}{'model':>10}{'baseline':>10}  baseline kind",
    ]
    for label, key, base, kind in rows:
        if key not in m:
            continue
        b = f"{m[base]:10.3f}" if base and base in m else f"{'':>10}"
        lines.append(f"{label:<28}{m[key]:10.3f}{b}  {kind}")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> None:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
