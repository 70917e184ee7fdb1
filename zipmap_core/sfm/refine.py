"""ZipMap's cameras refined by bundle adjustment (`--refine`).

The network's cameras initialise COLMAP: frames are matched with the ones ZipMap says overlap
(linear in N), points are triangulated from the predicted cameras, and cameras, points and
(unless known) focal lengths are bundle-adjusted, twice with retriangulation between. Each depth
map is then brought onto the refined cameras by a robust scale and shift against the points its
frame saw. When the predictions are too far off for that (too few points triangulate, or the
adjustment does not end near a pixel), COLMAP's incremental mapping starts from scratch on the
same features and matches, and the scene says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cancel import CancelToken, Progress, reporter
from ..io.inputs import Frame, InputSet, VideoSampling
from ..io.intrinsics import KnownIntrinsics
from ..io.preprocess import Crop, detail_image
from ..io.reconstruction import DERIVED_LATER, Reconstruction
from ..io.tracks import Tracks
from ..pipeline.recipe import input_set
from .engine import NoOverlapError
from .models import SparseModel, observed_depths, read_model, to_first_frame
from .pairs import EXHAUSTIVE_UP_TO, NEIGHBOURS, exhaustive_pairs, overlap_pairs, sequential_pairs
from .workspace import Workspace, quiet_colmap

MIN_OBSERVATIONS = 15  # a frame seeing fewer triangulated points is not held by the adjustment
MAX_ERROR_PX = 2.0  # a refinement that ends above this mean reprojection error did not converge
MIN_DEPTH_POINTS = 8  # a frame's depth is fitted on its own above this many points
DETAIL_WIDTH = 640  # COLMAP sees the frames about this wide (at most their own size)

if TYPE_CHECKING:
    from ..pipeline.reconstructor import Reconstructor


@dataclass
class RefineReport:
    path: str  # "bundle adjustment" or "incremental mapping (predictions too far off)"
    pairs: int
    points_before: int  # triangulated (within COLMAP's error bound) from ZipMap's cameras
    error_before_px: float
    error_after_px: float
    points: int
    left_out: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"refined by {self.path}: {self.pairs} matched pairs; ZipMap's cameras triangulated {self.points_before} points "
            f"({self.error_before_px:.2f} px mean reprojection error), the refined ones {self.points} ({self.error_after_px:.2f} px)"
        )
        return text + (f"; left out (not registered): {', '.join(self.left_out)}" if self.left_out else "")


def detail_images(frames: list[Frame], crops: list[Crop], hw: tuple[int, int], width: int = DETAIL_WIDTH) -> np.ndarray:
    """The frames' model-image views at a whole multiple of the model's size near `width` (never
    above the pictures' own resolution), for COLMAP's features."""
    factor = max(1, min(round(width / hw[1]), min(c.original_wh[0] // max(c.resized_wh[0], 1) for c in crops)))
    return np.stack([detail_image(f.full_image(), c, hw, factor) for f, c in zip(frames, crops)])


def reconstruct_refined(
    rec: Reconstructor,
    inputs: Sequence[str | Path] | InputSet,
    *,
    mode: str = "crop",
    resolution: int | None = None,
    max_frames: int | None = None,
    sampling: VideoSampling | None = None,
    intrinsics: KnownIntrinsics | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Reconstruction:
    """ZipMap's reconstruction of `inputs`, then `refine` on the frames at COLMAP's size."""
    cancel = cancel or CancelToken()
    size = resolution or rec.cfg.img_size
    loaded = input_set(inputs, sampling, max_frames, mode, size, reporter(progress, cancel), cancel)
    recon = rec.reconstruct(loaded, mode=mode, resolution=resolution, intrinsics=intrinsics, progress=progress, cancel=cancel, **options)
    t0 = time.perf_counter()
    crops = [f.model_input(mode, size)[1] for f in loaded.frames]
    refined = refine(
        recon,
        detail_images(loaded.frames, crops, recon.image_hw),
        intrinsics is not None and intrinsics.fixed,
        progress=progress,
        cancel=cancel,
    )
    refined.timings["refine_s"] = time.perf_counter() - t0
    refined.timings["total_s"] = refined.timings.get("total_s", 0.0) + refined.timings["refine_s"]
    return refined


def refine(
    recon: Reconstruction,
    detail: np.ndarray | None = None,
    fixed_intrinsics: bool = False,
    neighbours: int = NEIGHBOURS,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    pairs: list[tuple[int, int]] | None = None,
) -> Reconstruction:
    """A new Reconstruction with `recon`'s cameras bundle-adjusted, its depth moved onto them, and
    COLMAP's tracks; `recon` is left as it was (a cancel or a failure keeps it). `detail`: the
    frames at a whole multiple of the scene's image size (`detail_images`) for COLMAP's features;
    `pairs`: the frame pairs to match instead of each frame's `neighbours` by predicted overlap."""
    cancel = cancel or CancelToken()
    report = reporter(progress, cancel)
    if pairs is None:
        pairs = overlap_pairs(recon.extrinsics, recon.intrinsics, recon.depth, neighbours)
    shared = bool(np.all(recon.original_wh == recon.original_wh[0]))
    images = recon.images if detail is None else detail
    factor = images.shape[2] // recon.image_hw[1]
    with Workspace(images, cancel) as ws:
        ws.add_cameras(scaled_intrinsics(recon.intrinsics, factor), shared, fixed_intrinsics)
        ws.extract(report)
        ws.match(pairs, report)
        cancel.check()
        if ws.verified_pairs() == 0:
            raise NoOverlapError("COLMAP found no two frames that see the same things; the scene was not refined")
        model, before, points_before = _adjust(ws, recon, fixed_intrinsics, report, factor)
        cancel.check()
        path = "bundle adjustment"
        weak = _weak_frames(model)
        if weak and len(weak) <= recon.num_frames // 2:
            model = _register_weak(ws, model, weak, fixed_intrinsics, report)
            path = f"bundle adjustment ({len(weak)} frames too far off re-registered by COLMAP)"
        if not _converged(model, recon.num_frames):
            ws.match(_fallback_pairs(recon.num_frames, pairs), report)
            if not fixed_intrinsics:
                ws.forget_cameras()
            model = _incremental(ws, fixed_intrinsics, report)
            cancel.check()
            path = "incremental mapping (ZipMap's cameras were too far off to adjust)"
        sparse = at_scale(read_model(model, ws.frame_of), 1 / factor)
    report("depth", 0, 1)
    out = _onto_refined(recon, sparse)
    info = RefineReport(
        path,
        len(pairs),
        points_before,
        before,
        sparse.mean_error,
        sparse.tracks.num_points,
        [n for i, n in enumerate(recon.names) if i not in set(sparse.frames)],
    )
    out.metadata["refine"] = {**info.__dict__, "fixed_intrinsics": fixed_intrinsics, "line": info.line()}
    report("depth", 1, 1)
    return out


def scaled_intrinsics(k: np.ndarray, factor: float) -> np.ndarray:
    """Intrinsics [..., 3, 3] for pictures `factor` times larger."""
    return k * np.array([[factor], [factor], [1.0]], dtype=k.dtype)


def at_scale(model: SparseModel, factor: float) -> SparseModel:
    """A model read from pictures 1/`factor` times the scene's size, in the scene's pixels."""
    t = model.tracks
    tracks = Tracks(t.xyz, t.rgb, t.error * np.float32(factor), t.observations, t.pixels * np.float32(factor))
    return SparseModel(model.frames, model.extrinsics, scaled_intrinsics(model.intrinsics, factor), tracks)


def _seeded(ws: Workspace, recon: Reconstruction) -> Any:
    """A pycolmap model of the database's cameras and images posed where ZipMap put them."""
    pycolmap = quiet_colmap()
    model = pycolmap.Reconstruction()
    with ws.database_open() as db:
        for camera in db.read_all_cameras():
            model.add_camera_with_trivial_rig(camera)
        for image in db.read_all_images():
            pose = pycolmap.Rigid3d(recon.extrinsics[ws.frame_of(image.name)].astype(np.float64))
            model.add_image_with_trivial_frame(pycolmap.Image(name=image.name, camera_id=image.camera_id, image_id=image.image_id), pose)
    return model


def _adjust(ws: Workspace, recon: Reconstruction, fixed_intrinsics: bool, report: Progress, factor: int) -> tuple[Any, float, int]:
    """Triangulation from ZipMap's cameras, bundle adjustment, and triangulation again from the
    adjusted cameras (which completes the tracks the predictions left short); (the model, the
    mean reprojection error with the predicted cameras in the scene's pixels, and how many points
    they triangulated). One adjustment: a second, after the retriangulation, cost 12x the first at
    N = 128 (`zipmap bench refine`) and moved no camera by a measurable amount."""
    pycolmap = quiet_colmap()
    options = pycolmap.IncrementalPipelineOptions()
    model = _seeded(ws, recon)

    def triangulate(model: Any, fresh: bool) -> Any:
        with ws.quiet(), ws.cancellable():
            return pycolmap.triangulate_points(
                model, ws.database, ws.image_dir, ws.root / "tri", clear_points=fresh, options=options, cancellation_token=ws.token
            )

    report("adjustment", 0, 3)
    model = triangulate(model, True)
    before = float(model.compute_mean_reprojection_error()) / factor if model.num_points3D() else float("nan")
    points_before = int(model.num_points3D())
    report("adjustment", 1, 3)
    ba = pycolmap.BundleAdjustmentOptions()
    ba.refine_focal_length = not fixed_intrinsics
    ba.refine_principal_point = False
    ba.refine_extra_params = False
    ba.print_summary = False
    if model.num_points3D():
        with ws.quiet(), ws.cancellable():
            pycolmap.bundle_adjustment(model, ba, cancellation_token=ws.token)
    report("adjustment", 2, 3)
    model = triangulate(model, False)
    report("adjustment", 3, 3)
    return model, before, points_before


def _converged(model: Any, frames: int) -> bool:
    """Every frame held by enough points and the adjustment ended near a pixel (of the pictures
    COLMAP's features were found in)."""
    if model.num_points3D() == 0 or model.num_reg_images() < frames:
        return False
    seen = [model.image(i).num_points3D for i in model.reg_image_ids()]
    return min(seen) >= MIN_OBSERVATIONS and model.compute_mean_reprojection_error() <= MAX_ERROR_PX


def _weak_frames(model: Any) -> list[int]:
    """Image ids of the frames holding fewer than MIN_OBSERVATIONS triangulated points: their
    predicted cameras were too far off for triangulation to use them."""
    return [i for i in model.reg_image_ids() if model.image(i).num_points3D < MIN_OBSERVATIONS]


def _register_weak(ws: Workspace, model: Any, weak: list[int], fixed_intrinsics: bool, report: Progress) -> Any:
    """The weak frames taken out and registered again by COLMAP's mapper, continuing from the
    adjusted model (absolute pose from its points, then triangulation and adjustment of all)."""
    for image_id in weak:
        model.deregister_frame(model.image(image_id).frame_id)
    start = ws.root / "adjusted"
    start.mkdir(exist_ok=True)
    model.write(start)
    return _incremental(ws, fixed_intrinsics, report, start)


def _fallback_pairs(n: int, tried: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pairs the predictions did not choose, from the input order (COLMAP skips pairs it matched)."""
    done = set(tried)
    more = exhaustive_pairs(n) if n <= EXHAUSTIVE_UP_TO else sequential_pairs(n)
    return [p for p in more if p not in done]


def _incremental(ws: Workspace, fixed_intrinsics: bool, report: Progress, start: Path | None = None) -> Any:
    """COLMAP's incremental mapping on the workspace's matches, from scratch or continuing the
    model in `start`; the largest model."""
    pycolmap = quiet_colmap()
    options = pycolmap.IncrementalPipelineOptions()
    options.ba_refine_focal_length = not fixed_intrinsics
    options.ba_refine_principal_point = False
    out = ws.root / ("continued" if start else "sparse")
    out.mkdir(exist_ok=True)
    report("mapping", 0, 1)
    with ws.cancellable():
        models = pycolmap.incremental_mapping(ws.database, ws.image_dir, out, options, input_path=start or "", cancellation_token=ws.token)
    report("mapping", 1, 1)
    usable = [m for m in models.values() if m.num_reg_images() >= 2]
    if not usable:
        raise NoOverlapError("COLMAP could not register the frames together either; the scene was not refined")
    return max(usable, key=lambda m: (m.num_reg_images(), m.num_points3D()))


def _onto_refined(recon: Reconstruction, sparse: SparseModel) -> Reconstruction:
    """The registered frames with the refined cameras, in ZipMap's gauge (first frame at the
    origin, ZipMap's scale by the median depth ratio), and each frame's depth fitted to its points."""
    keep = sparse.frames
    sparse = to_first_frame(sparse)
    frame, z, predicted = observed_depths(sparse.tracks, sparse.extrinsics, recon.depth[keep])
    scale = float(np.median(predicted / z)) if len(z) else 1.0
    sparse = to_first_frame(sparse, scale)
    z = z * scale
    depth = recon.depth[keep].astype(np.float32).copy()
    fits = []
    for i in range(len(keep)):
        s, b = robust_scale_shift(predicted[frame == i], z[frame == i])
        depth[i] = depth[i] * s + b
        fits.append([s, b])
    out = Reconstruction(
        names=[recon.names[i] for i in keep],
        images=recon.images[keep],
        extrinsics=sparse.extrinsics.astype(np.float32),
        intrinsics=sparse.intrinsics.astype(np.float32),
        depth=np.maximum(depth, 1e-6),
        depth_conf=recon.depth_conf[keep],
        **DERIVED_LATER,
        original_wh=recon.original_wh[keep],
        state=recon.state,
        state_scale=recon.state_scale,
        metadata=dict(recon.metadata),
        timings=dict(recon.timings),
        tracks=sparse.tracks,
    )
    out.metadata["depth_fit"] = fits
    return out


def robust_scale_shift(x: np.ndarray, y: np.ndarray, iterations: int = 4) -> tuple[float, float]:
    """(s, b) with s x + b ~ y, least squares on the points within 3 MADs of the last fit; a frame
    with too few points, or a fit that would flip depth, keeps its depth (1, 0)."""
    if len(x) < MIN_DEPTH_POINTS:
        return 1.0, 0.0
    keep = np.ones(len(x), bool)
    s, b = 1.0, 0.0
    for _ in range(iterations):
        a = np.stack((x[keep], np.ones(keep.sum())), 1)
        (s, b), *_ = np.linalg.lstsq(a, y[keep], rcond=None)
        r = np.abs(s * x + b - y)
        mad = np.median(r) * 1.4826 + 1e-9
        keep = r <= 3 * mad
        if keep.sum() < MIN_DEPTH_POINTS:
            break
    if not np.isfinite([s, b]).all() or s <= 0:
        return 1.0, 0.0
    return float(s), float(b)
