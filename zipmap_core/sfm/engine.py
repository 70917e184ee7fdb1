"""The classical engine: COLMAP's incremental structure from motion alone, for machines without
the official weights. The frames go through the same recipe stages as the network's (inputs,
model images, a `Reconstruction`, the run's record), so the viewer, scene file and exporters take
its scenes as they take ZipMap's: cameras and intrinsics of the registered frames, depth where a
triangulated point was seen (0 elsewhere), and the points with colours and tracks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import Cancelled, CancelToken, Progress, reporter
from ..errors import InputError, ZipMapError
from ..io.inputs import InputSet, VideoSampling
from ..io.intrinsics import KnownIntrinsics, exif_prior
from ..io.reconstruction import DERIVED_LATER, Reconstruction
from ..options import CLASSICAL_WIDTH
from ..pipeline.assembly import max_translation, state_scale
from ..pipeline.recipe import StageClock, input_set, model_images, original_sizes, record_run
from .models import SparseModel, median_depth, read_model, to_first_frame
from .pairs import pairs_for
from .workspace import Workspace, quiet_colmap

MIN_REGISTERED = 2


class NoOverlapError(ZipMapError, ValueError):
    """COLMAP found no two frames that see the same things."""


class ClassicalEngine:
    """COLMAP's SfM with the interface of `Reconstructor.reconstruct` (no network, no scene state)."""

    description = "COLMAP structure from motion (classical engine)"
    device = "cpu"
    variant = "colmap"

    def model_metadata(self, image_hw: tuple[int, int]) -> dict:
        version = quiet_colmap().__version__
        return {
            "model": self.description,
            "variant": self.variant,
            "config": f"pycolmap {version}",
            "image_hw": [int(image_hw[0]), int(image_hw[1])],
            "can_render": False,
        }

    def reconstruct(
        self,
        inputs: Sequence[str | Path] | InputSet,
        mode: str = "crop",
        resolution: int | None = None,
        max_frames: int | None = None,
        sampling: VideoSampling | None = None,
        intrinsics: KnownIntrinsics | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> Reconstruction:
        cancel = cancel or CancelToken()
        report = reporter(progress, cancel)
        clock = StageClock()
        size = max(resolution or CLASSICAL_WIDTH, CLASSICAL_WIDTH)  # SIFT needs the pixels
        with clock.stage("preprocess"):
            inputs = input_set(inputs, sampling, max_frames, mode, size, report, cancel)
            cancel.check()
            images, crops = model_images(inputs.frames, mode, size, report)
        if len(inputs.frames) < MIN_REGISTERED:
            raise InputError("the classical engine needs at least two pictures of the same scene")
        frames = images.permute(0, 2, 3, 1).numpy()
        kind = "video" if all(f.time_s is not None for f in inputs.frames) and len({f.source for f in inputs.frames}) == 1 else "photos"
        known = intrinsics or _exif_prior(inputs, crops)
        k = None if known is None else np.stack([known.matrix_for(c) for c in crops])
        with clock.stage("model"):
            how, pairs = pairs_for(kind, frames)
            model, models, registered_by_model = _map(frames, k, known, kind == "video" or bool(intrinsics), pairs, report, cancel)
        with clock.stage("assemble"):
            recon = to_reconstruction(model, frames, inputs.names(), original_sizes(crops))
        unregistered = [n for i, n in enumerate(inputs.names()) if i not in set(model.frames.tolist())]
        colmap = {
            "matching": how,
            "pairs": len(pairs),
            "registered": len(model.frames),
            "frames": len(frames),
            "unregistered": unregistered,
            "models": models,
            "model_sizes": registered_by_model,
            "points": model.tracks.num_points,
            "mean_reprojection_error_px": model.mean_error,
            "intrinsics": None if known is None else known.describe(),
        }
        record_run(recon, self, clock, engine="colmap", mode=mode, colmap=colmap, **inputs.report())
        report("done", 1, 1)
        return recon


def _exif_prior(inputs: InputSet, crops: list) -> KnownIntrinsics | None:
    """A focal-length prior from the first photo's EXIF when every input is one camera's photo."""
    frames = inputs.frames
    if not frames or any(f.time_s is not None for f in frames) or len({c.original_wh for c in crops}) != 1:
        return None
    return exif_prior(frames[0].source, crops[0].original_wh)


def _map(
    frames: np.ndarray,
    k: np.ndarray | None,
    known: KnownIntrinsics | None,
    shared: bool,
    pairs: list[tuple[int, int]],
    report: Progress,
    cancel: CancelToken,
) -> tuple[SparseModel, int, list[int]]:
    """Features, matches and incremental mapping; the largest model found, the number of models
    and their sizes (a dynamic scene may split)."""
    pycolmap = quiet_colmap()
    with Workspace(frames, cancel) as ws:
        ws.add_cameras(k, shared, known is not None and known.fixed)
        ws.extract(report)
        cancel.check()
        ws.match(pairs, report)
        cancel.check()
        if ws.verified_pairs() == 0:
            raise NoOverlapError(
                f"COLMAP found no two of the {len(frames)} frames that see the same things (0 verified pairs of "
                f"{len(pairs)} tried): are they photos of one scene, with overlap between them?"
            )
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = -1
        if known is not None and known.fixed:
            options.ba_refine_focal_length = False
            options.ba_refine_principal_point = False
            options.ba_refine_extra_params = False
        registered = [0]

        def next_image() -> None:  # called from C++: it reports, and a cancel reaches COLMAP by its token
            registered[0] += 1
            with contextlib.suppress(Cancelled):
                report("mapping", min(registered[0], len(frames)), len(frames))

        report("mapping", 0, len(frames))
        with ws.cancellable():
            models = pycolmap.incremental_mapping(
                ws.database, ws.image_dir, ws.root / "sparse", options, next_image_callback=next_image, cancellation_token=ws.token
            )
        report("mapping", len(frames), len(frames))
        cancel.check()
        usable = [m for m in models.values() if m.num_reg_images() >= MIN_REGISTERED]
        if not usable:
            raise NoOverlapError(f"COLMAP could not register two of the {len(frames)} frames together: too little overlap or texture")
        sizes = sorted((m.num_reg_images() for m in usable), reverse=True)
        best = max(usable, key=lambda m: (m.num_reg_images(), m.num_points3D()))
        return read_model(best, ws.frame_of), len(usable), sizes


def to_reconstruction(model: SparseModel, frames: np.ndarray, names: list[str], original_wh: np.ndarray) -> Reconstruction:
    """The registered frames as a scene: the first at the origin, lengths in units of the median
    point depth, depth where points were seen (track length as confidence)."""
    model = to_first_frame(model)
    model = to_first_frame(model, 1.0 / median_depth(model))
    keep = model.frames
    ext = model.extrinsics.astype(np.float32)
    hw = frames.shape[1:3]
    depth, length = model.tracks.depth_maps(ext, hw)
    return Reconstruction(
        names=[names[i] for i in keep],
        images=np.ascontiguousarray(frames[keep]),
        extrinsics=ext,
        intrinsics=model.intrinsics.astype(np.float32),
        depth=depth,
        depth_conf=length,
        **DERIVED_LATER,
        original_wh=original_wh[keep],
        state=None,
        state_scale=state_scale(max_translation(ext), len(keep)),
        tracks=model.tracks,
    )


def engine_summary(recon: Reconstruction) -> str:
    """One line on what COLMAP did, with the frames it left out named."""
    info: dict[str, Any] = recon.metadata.get("colmap", {})
    line = (
        f"COLMAP registered {info.get('registered')} of {info.get('frames')} frames "
        f"({info.get('matching')} matching, {info.get('pairs')} pairs), {info.get('points')} points, "
        f"mean reprojection error {info.get('mean_reprojection_error_px', float('nan')):.2f} px"
    )
    if info.get("models", 1) > 1:
        line += (
            f"; the frames split into {info['models']} separate models (sizes {info.get('model_sizes')}), "
            f"as a moving subject or a cut can cause: the largest is kept"
        )
    if info.get("unregistered"):
        line += f"; left out (not registered): {', '.join(info['unregistered'])}"
    return line
