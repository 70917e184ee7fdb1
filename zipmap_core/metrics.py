"""The scores the field judges reconstructions by, in one place, on numpy arrays: every evaluation
(against generated ground truth, against COLMAP, on held-out frames) and every benchmark reads
them from here.

- cameras: the angle of a rotation, relative rotation and translation-direction errors over all
  pairs of frames (RRA, RTA at 5/15/30 degrees, AUC@30, as the VGGT and ZipMap papers report
  them; unchanged by a similarity of either side), and each frame's rotation error after the one
  rotation that brings two sets of cameras together;
- depth: AbsRel and delta < 1.25 after per-view median scaling;
- points: accuracy, completeness and Chamfer distance after a similarity (Umeyama) alignment;
- pictures: PSNR, and SSIM with the Gaussian window of Wang et al. (scikit-image's).
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLDS = (5, 15, 30)  # degrees of the camera accuracies


# ---- cameras ----------------------------------------------------------------------------------------
def rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """The angle in degrees of rotation matrices [..., 3, 3]."""
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def homogeneous(poses: np.ndarray) -> np.ndarray:
    """[..., 3, 4] or [..., 4, 4] -> [..., 4, 4] in float64."""
    poses = np.asarray(poses, np.float64)
    if poses.shape[-2] == 4:
        return poses
    out = np.zeros((*poses.shape[:-2], 4, 4))
    out[..., :3, :] = poses
    out[..., 3, 3] = 1.0
    return out


def pose_errors(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative rotation and translation-direction errors (degrees) over all pairs i < j. The
    translation direction is compared up to sign, as VGGT's and ZipMap's metric does."""
    p, g = homogeneous(pred_w2c), homogeneous(gt_w2c)
    i, j = np.triu_indices(len(p), 1)
    rel_p = p[j] @ np.linalg.inv(p[i])
    rel_g = g[j] @ np.linalg.inv(g[i])
    rot = rotation_angle_deg(rel_p[:, :3, :3] @ np.swapaxes(rel_g[:, :3, :3], 1, 2))
    tp, tg = rel_p[:, :3, 3], rel_g[:, :3, 3]
    denom = np.linalg.norm(tp, axis=1) * np.linalg.norm(tg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs(np.einsum("ni,ni->n", tp, tg) / denom)
    trans = np.where(denom > 1e-12, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), 90.0)
    return rot, trans


def pose_metrics(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> dict[str, float]:
    """RRA and RTA at each of THRESHOLDS, AUC@30 and the median relative rotation error."""
    rot, trans = pose_errors(pred_w2c, gt_w2c)
    out: dict[str, float] = {}
    for t in THRESHOLDS:
        out[f"RRA@{t}"] = float(np.mean(rot < t))
        out[f"RTA@{t}"] = float(np.mean(trans < t))
    worst = np.maximum(rot, trans)
    out["AUC@30"] = float(np.mean([np.mean(worst < t) for t in range(1, 31)]))
    out["rot_err_median_deg"] = float(np.median(rot))
    return out


def aligned_rotation_errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Degrees [N] between each frame's world-to-camera rotation [N, 3, 3] and the reference's,
    after the one rotation of the world that brings `pred` closest (chordal mean)."""
    m = np.einsum("nji,njk->ik", pred, ref)  # sum R_pred^T R_ref
    u, _, vt = np.linalg.svd(m)
    align = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    rel = np.einsum("nij,jk,nlk->nil", pred, align, ref)  # R_pred A R_ref^T
    return rotation_angle_deg(rel)


def pairs_within(pred_w2c: np.ndarray, ref_w2c: np.ndarray, degrees: float) -> float:
    """The share of frame pairs whose relative rotation and translation direction both agree
    within `degrees`: how often two sets of cameras tell the same story."""
    rot, trans = pose_errors(pred_w2c, ref_w2c)
    return float(np.mean(np.maximum(rot, trans) < degrees)) if len(rot) else 1.0


# ---- depth ------------------------------------------------------------------------------------------
def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Per-view median scaling, then AbsRel and delta<1.25 averaged over views."""
    absrel, delta = [], []
    for p, g in zip(pred, gt):
        valid = (g > 0) & np.isfinite(g) & np.isfinite(p) & (p > 0)
        p, g = p[valid], g[valid]
        p = p * (np.median(g) / max(np.median(p), 1e-12))
        absrel.append(float(np.mean(np.abs(p - g) / g)))
        delta.append(float(np.mean(np.maximum(p / g, g / p) < 1.25)))
    return {"depth_absrel": float(np.mean(absrel)), "depth_delta1": float(np.mean(delta))}


# ---- points -----------------------------------------------------------------------------------------
def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    r = u @ sign @ vt
    var = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ sign) / max(var, 1e-12))
    return s, r, mu_d - s * r @ mu_s


def point_metrics(pred: np.ndarray, gt: np.ndarray, samples: int = 20000, seed: int = 0) -> dict[str, float]:
    """pred, gt: corresponding points [N, 3]; aligned with Umeyama, then nearest-neighbour distances,
    reported relative to the ground truth's extent (median distance to its centroid)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pred), size=min(samples, len(pred)), replace=False)
    p, g = pred[idx].astype(np.float64), gt[idx].astype(np.float64)
    s, r, t = umeyama(p, g)
    p = s * p @ r.T + t
    extent = float(np.median(np.linalg.norm(g - g.mean(0), axis=1)))
    acc = cKDTree(g).query(p)[0].mean() / extent
    comp = cKDTree(p).query(g)[0].mean() / extent
    return {"pts_accuracy": float(acc), "pts_completeness": float(comp), "pts_chamfer": float((acc + comp) / 2)}


# ---- pictures ---------------------------------------------------------------------------------------
def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of pictures in [0, 1] (`pred` clipped into it)."""
    mse = float(np.mean((np.clip(pred, 0, 1) - target) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity of RGB pictures [H, W, 3] in [0, 1]: an 11x11 Gaussian window of
    sigma 1.5 and population statistics, the settings of Wang et al. and of the novel-view
    literature."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            np.clip(pred, 0, 1).astype(np.float64),
            np.asarray(target, np.float64),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )
