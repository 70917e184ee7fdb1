"""ZipMap's cameras refined by bundle adjustment (`--refine`).

The network's cameras initialise COLMAP: frames are matched with the ones ZipMap says overlap
(linear in N), points are triangulated from the predicted cameras, and cameras, points and
(unless known) focal lengths are bundle-adjusted once, then points are triangulated again from
the adjusted cameras. Each depth map is then brought onto the refined cameras by a robust scale
and shift against the points its frame saw. When the predictions are too far off for that (too
few points triangulate, or the adjustment does not end near a pixel), the scene takes the
classical engine's own run on the same inputs (the same matching, feature resolution and camera
settings), so refinement never ends worse than COLMAP alone, and the scene says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cancel import CancelToken, Progress, reporter
from ..errors import InputError
from ..io.colmap_model import SparseModel, colmap, read_sparse
from ..io.inputs import Frame, InputSet
from ..io.preprocess import Crop, detail_image, pixel_map
from ..io.reconstruction import Reconstruction
from ..io.similarity import fit_similarity
from ..pipeline.engine import Capabilities, Inputs, Say
from ..pipeline.network_engine import NetworkEngine
from ..pipeline.recipe import input_set
from ..pipeline.reconstruct_options import ReconstructOptions
from ..pipeline.reconstructor import Reconstructor
from .engine import classical_frames, classical_masks, registration
from .mapping import map_incremental, match_pairs, seeded_model, triangulate
from .models import at_scale, in_pixels, observed_depths, scaled_intrinsics, to_first_frame
from .pairs import EXHAUSTIVE_UP_TO, NEIGHBOURS, exhaustive_pairs, overlap_pairs, sequential_pairs
from .workspace import Workspace

MIN_OBSERVATIONS = 15  # a frame seeing fewer triangulated points is not held by the adjustment
MAX_ERROR_PX = 2.0  # a refinement that ends above this mean reprojection error did not converge
MIN_AGREEMENT = 0.95  # ... nor one whose cameras explain fewer of COLMAP's verified pairs than this
# ... nor one that triangulates fewer than this share of the points its start did: a twisted pair
# (a camera turned half a turn about its baseline) keeps every epipolar line, and with it the
# agreement, but puts points behind the cameras (seen once on the generated drift video: 911 of 1850)
MIN_POINTS_KEPT = 0.8
MIN_PAIR_INLIERS = 30  # a verified pair with at least this many inlier matches is a witness
MAX_EPIPOLAR_PX = 1.0  # a pair agrees when its matches' median Sampson distance is within this (right cameras: 0.2)
MIN_DEPTH_POINTS = 8  # a frame's depth is fitted on its own above this many points
DETAIL_WIDTH = 640  # COLMAP sees the frames about this wide (at most their own size)
FALLBACK = "the classical engine's own run (ZipMap's cameras were too far off to adjust)"

Fallback = Callable[[], SparseModel]  # the classical engine's run, in the scene's pixels


class RefineEngine:
    """The network, its cameras then bundle-adjusted by COLMAP: an engine around the network."""

    name = "refine"
    capabilities = Capabilities(keeps_state=True, runs_network=True, network_first=True, streams=False, splits=False)
    why: str | None = None  # named by the user

    def __init__(self, network: NetworkEngine) -> None:
        self.inner = network

    def network(self) -> Reconstructor:
        return self.inner.rec

    def describe(self) -> str:
        return f"{self.inner.describe()}, its cameras refined by COLMAP's bundle adjustment"

    def refuse(self, options: ReconstructOptions) -> None:
        if options.network.window_size:
            raise InputError("--refine runs on a whole reconstruction; it does not combine with --window-size")
        if options.poses is not None:
            raise InputError("--poses gives the cameras; there is nothing for --refine to adjust")
        self.inner.refuse(options)

    def reconstruct(
        self,
        inputs: Inputs,
        options: ReconstructOptions,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Say | None = None,
    ) -> Reconstruction:
        """ZipMap's reconstruction of `inputs`, then `refine` on the frames at COLMAP's size."""
        self.refuse(options)
        cancel = cancel or CancelToken()
        report = reporter(progress, cancel)
        size = options.resolution or self.inner.rec.cfg.img_size
        loaded = input_set(inputs, options.sampling, options.max_frames, options.mode, size, report, cancel, options.masks)
        recon = self.inner.reconstruct(loaded, options, progress, cancel, say)
        t0 = time.perf_counter()
        crops = [f.model_input(options.mode, size)[1] for f in loaded.frames]
        fixed = options.intrinsics is not None and options.intrinsics.fixed

        keep = None
        if options.masks is not None:  # at the scene's pixels: no COLMAP feature on a masked one
            sizes = np.array([c.original_wh for c in crops])
            keep = options.masks.stack(loaded.names(), [f.source for f in loaded.frames], sizes, options.mode, recon.image_hw)

        def fallback() -> SparseModel:
            return classical_in_scene_pixels(loaded, crops, options, report, cancel)

        detail = detail_images(loaded.frames, crops, recon.image_hw)
        refined = refine(recon, detail, fixed, progress=progress, cancel=cancel, fallback=fallback, keep=keep)
        refined.timings["refine_s"] = time.perf_counter() - t0
        refined.timings["total_s"] = refined.timings.get("total_s", 0.0) + refined.timings["refine_s"]
        return refined


def classical_in_scene_pixels(
    inputs: InputSet, scene_crops: list[Crop], options: ReconstructOptions, report: Progress, cancel: CancelToken
) -> SparseModel:
    """The classical engine's run on `inputs`, its model expressed in the scene's pixels."""
    frames, crops = classical_frames(inputs, options, report)
    run, _ = registration(inputs, frames, crops, options, report, cancel, classical_masks(inputs, crops, frames, options))
    maps = np.stack([pixel_map(crops[i], scene_crops[i]) for i in run.model.frames])
    return in_pixels(run.model, maps)


@dataclass
class RefineReport:
    path: str  # "bundle adjustment", or the classical engine's run (predictions too far off)
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


def refine(
    recon: Reconstruction,
    detail: np.ndarray | None = None,
    fixed_intrinsics: bool = False,
    neighbours: int = NEIGHBOURS,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    pairs: list[tuple[int, int]] | None = None,
    fallback: Fallback | None = None,
    keep: np.ndarray | None = None,
) -> Reconstruction:
    """A new Reconstruction with `recon`'s cameras bundle-adjusted, its depth moved onto them, and
    COLMAP's tracks; `recon` is left as it was (a cancel or a failure keeps it). `detail`: the
    frames at a whole multiple of the scene's image size (`detail_images`) for COLMAP's features;
    `pairs`: the frame pairs to match instead of each frame's `neighbours` by predicted overlap;
    `fallback`: the classical engine's run, taken when the predictions are too far off (without
    one, COLMAP's incremental mapping on this workspace's matches); `keep`: the user's masks at
    the scene's pixels (bool [N, H, W]), where COLMAP finds no feature off them."""
    cancel = cancel or CancelToken()
    report = reporter(progress, cancel)
    if pairs is None:
        pairs = overlap_pairs(recon.extrinsics, recon.intrinsics, recon.depth, neighbours)
    shared = bool(np.all(recon.original_wh == recon.original_wh[0]))
    images = recon.images if detail is None else detail
    factor = images.shape[2] // recon.image_hw[1]
    with Workspace(images, cancel) as ws:
        ws.add_cameras(scaled_intrinsics(recon.intrinsics, factor), shared, fixed_intrinsics)
        # the detail pixel (x, y) is the scene's (x / f, y / f)
        ws.add_masks(None if keep is None else keep.repeat(factor, 1).repeat(factor, 2))
        match_pairs(ws, pairs, report, recon.num_frames)
        model, before, points_before = _adjust(ws, recon, fixed_intrinsics, report, factor)
        cancel.check()
        path = "bundle adjustment"
        weak = _weak_frames(model)
        if weak and len(weak) <= recon.num_frames // 2:
            model = _register_weak(ws, model, weak, fixed_intrinsics, report)
            path = f"bundle adjustment ({len(weak)} frames too far off re-registered by COLMAP)"
        sparse = None
        kept = model.num_points3D() >= MIN_POINTS_KEPT * points_before
        if kept and _converged(model, recon.num_frames) and epipolar_agreement(ws, model) >= MIN_AGREEMENT:
            sparse = at_scale(read_sparse(model, ws.frame_of), 1 / factor)
        elif fallback is None:
            sparse = _remapped(ws, recon.num_frames, pairs, fixed_intrinsics, report, factor)
            path = "incremental mapping (ZipMap's cameras were too far off to adjust)"
    if sparse is None:
        assert fallback is not None
        sparse, path = fallback(), FALLBACK
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


def _remapped(
    ws: Workspace, frames: int, tried: list[tuple[int, int]], fixed_intrinsics: bool, report: Progress, factor: int
) -> SparseModel:
    """Without the inputs (a scene refined on its own): COLMAP's incremental mapping from scratch
    on this workspace, every pair of the frames matched (sequential ones past EXHAUSTIVE_UP_TO),
    with COLMAP's own camera guess unless the intrinsics are known."""
    more = exhaustive_pairs(frames) if frames <= EXHAUSTIVE_UP_TO else sequential_pairs(frames)
    done = set(tried)
    ws.match([p for p in more if p not in done], report)
    if not fixed_intrinsics:
        ws.forget_cameras()
    mapped = map_incremental(ws, frames, fixed_intrinsics, report)
    return at_scale(read_sparse(mapped.best, ws.frame_of), 1 / factor)


def _adjust(ws: Workspace, recon: Reconstruction, fixed_intrinsics: bool, report: Progress, factor: int) -> tuple[Any, float, int]:
    """Triangulation from ZipMap's cameras, bundle adjustment, and triangulation again from the
    adjusted cameras (which completes the tracks the predictions left short); (the model, the
    mean reprojection error with the predicted cameras in the scene's pixels, and how many points
    they triangulated). One adjustment: a second, after the retriangulation, cost 12x the first at
    N = 128 (`zipmap bench refine`) and moved no camera by a measurable amount."""
    pycolmap = colmap()
    report("adjustment", 0, 3)
    model = triangulate(ws, seeded_model(ws, recon.extrinsics), fresh=True)
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
    model = triangulate(ws, model, fresh=False)
    report("adjustment", 3, 3)
    return model, before, points_before


def _converged(model: Any, frames: int) -> bool:
    """Every frame held by enough points and the adjustment ended near a pixel (of the pictures
    COLMAP's features were found in)."""
    if model.num_points3D() == 0 or model.num_reg_images() < frames:
        return False
    seen = [model.image(i).num_points3D for i in model.reg_image_ids()]
    return min(seen) >= MIN_OBSERVATIONS and model.compute_mean_reprojection_error() <= MAX_ERROR_PX


def epipolar_agreement(ws: Workspace, model: Any) -> float:
    """The share of the pairs COLMAP verified (at least MIN_PAIR_INLIERS inlier matches) whose
    matches the adjusted cameras explain (median Sampson distance within MAX_EPIPOLAR_PX): a low
    reprojection error alone can hide cameras that are wrong, with only the few points that fit
    them triangulated (a far-off start adjusted into a wrong minimum)."""
    poses = {i: (model.image(i).cam_from_world().matrix(), model.image(i).camera.calibration_matrix()) for i in model.reg_image_ids()}
    agree, total = 0, 0
    pycolmap = colmap()
    with ws.database_open() as db:
        for pair, geometry in zip(*db.read_two_view_geometries()):
            id1, id2 = pycolmap.pair_id_to_image_pair(pair)
            inliers = np.asarray(geometry.inlier_matches)
            if id1 not in poses or id2 not in poses or len(inliers) < MIN_PAIR_INLIERS:
                continue
            x1 = db.read_keypoints(id1)[inliers[:, 0], :2]
            x2 = db.read_keypoints(id2)[inliers[:, 1], :2]
            total += 1
            agree += bool(np.median(sampson_px(fundamental(poses[id1], poses[id2]), x1, x2)) <= MAX_EPIPOLAR_PX)
    return agree / total if total else 0.0


def fundamental(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """F [3, 3] with x2^T F x1 = 0 of two cameras (world-to-camera [3, 4], K [3, 3])."""
    (p1, k1), (p2, k2) = first, second
    rot = p2[:, :3] @ p1[:, :3].T
    t = p2[:, 3] - rot @ p1[:, 3]
    cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(k2).T @ cross @ rot @ np.linalg.inv(k1)


def sampson_px(f: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """The Sampson distance in pixels of matches x1 [M, 2] <-> x2 [M, 2] to the epipolar geometry F."""
    a = np.c_[x1, np.ones(len(x1))]
    b = np.c_[x2, np.ones(len(x2))]
    fa, fb = a @ f.T, b @ f
    num = np.einsum("mi,mi->m", b, fa) ** 2
    den = fa[:, 0] ** 2 + fa[:, 1] ** 2 + fb[:, 0] ** 2 + fb[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-18))


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
    return map_incremental(ws, len(ws.names), fixed_intrinsics, report, start).best


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
    # a query of the scene state is asked in the network's frame: the similarity from the refined
    # cameras onto the predicted ones takes it there (its scale folded into the state's unit)
    to_network = fit_similarity(sparse.extrinsics, recon.extrinsics[keep])
    out = Reconstruction(
        names=[recon.names[i] for i in keep],
        images=recon.images[keep],
        extrinsics=sparse.extrinsics.astype(np.float32),
        intrinsics=sparse.intrinsics.astype(np.float32),
        depth=np.maximum(depth, 1e-6),
        depth_conf=recon.depth_conf[keep],
        original_wh=recon.original_wh[keep],
        state=recon.state,
        state_scale=recon.state_scale / to_network.scale,
        state_frame=None if recon.state is None else to_network.rigid(),
        metadata=dict(recon.metadata),
        timings=dict(recon.timings),
        tracks=sparse.tracks,
    )
    out.metadata["depth_fit"] = fits
    out.metadata["cameras"] = "colmap"  # measured: the dense stage runs on them by default
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
