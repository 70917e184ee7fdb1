"""The classical engine: COLMAP's incremental structure from motion alone, for machines without
the official weights. The frames go through the same recipe stages as the network's (inputs,
model images, a `Reconstruction`, the run's record), so the viewer, scene file and exporters take
its scenes as they take ZipMap's: cameras and intrinsics of the registered frames, depth where a
triangulated point was seen (0 elsewhere, until the dense stage fills it), and the points with
colours and tracks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cancel import CancelToken, Progress, reporter
from ..errors import InputError
from ..io.colmap_model import SparseModel, colmap
from ..io.inputs import InputSet
from ..io.intrinsics import KnownIntrinsics, exif_prior
from ..io.preprocess import Crop
from ..io.reconstruction import Reconstruction
from ..options import CLASSICAL_WIDTH
from ..pipeline.assembly import max_translation, state_scale
from ..pipeline.engine import Capabilities, Inputs, Say
from ..pipeline.masking import apply_masks
from ..pipeline.recipe import StageClock, input_set, model_images, original_sizes, record_run
from ..pipeline.reconstruct_options import ReconstructOptions
from .mapping import MIN_REGISTERED, NoOverlapError, Registration, register, triangulate_known
from .models import median_depth, to_first_frame

__all__ = ["ClassicalEngine", "NoOverlapError", "engine_summary"]


class ClassicalEngine:
    """COLMAP's SfM behind the engine protocol (no network, no scene state)."""

    name = "colmap"
    description = "COLMAP structure from motion (classical engine)"
    capabilities = Capabilities(keeps_state=False, runs_network=False, network_first=False, streams=False, splits=False)
    why: str | None = None  # named by the user
    variant = "colmap"

    def describe(self) -> str:
        return f"{self.description} on the CPU"

    def network(self) -> None:
        return None

    def model_metadata(self, image_hw: tuple[int, int]) -> dict:
        return {
            "model": self.description,
            "variant": self.variant,
            "config": f"pycolmap {colmap().__version__}",
            "image_hw": [int(image_hw[0]), int(image_hw[1])],
            "can_render": False,
        }

    def refuse(self, options: ReconstructOptions) -> None:
        said = options.network.differences()
        if said:
            raise InputError(f"{', '.join(said)}: the network's options; the classical engine runs no network")

    def reconstruct(
        self,
        inputs: Inputs,
        options: ReconstructOptions | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Say | None = None,
    ) -> Reconstruction:
        options = options or ReconstructOptions()
        self.refuse(options)
        cancel = cancel or CancelToken()
        report = reporter(progress, cancel)
        clock = StageClock()
        with clock.stage("preprocess"):
            width = classical_width(options)
            loaded = input_set(inputs, options.sampling, options.max_frames, options.mode, width, report, cancel, options.masks)
            cancel.check()
            frames, crops = classical_frames(loaded, options, report)
        given = None if options.poses is None else options.poses.for_frames(loaded.names(), crops)
        keep = classical_masks(loaded, crops, frames, options)
        with clock.stage("model"):
            if given is None:
                run, known = registration(loaded, frames, crops, options, report, cancel, keep)
            else:
                run, known = triangulate_known(frames, input_kind(loaded), *given, report, cancel, keep), None
        with clock.stage("assemble"):
            recon = to_reconstruction(run.model, frames, loaded.names(), original_sizes(crops), gauge=given is None)
            if keep is not None:
                recon = apply_masks(recon, keep[run.model.frames])
        colmap_info = describe_run(run, loaded.names(), known)
        extra: dict[str, Any] = {} if options.poses is None else {"poses": options.poses.describe()}
        cameras = "colmap" if given is None else "given"  # measured: the dense stage runs on them by default
        record_run(recon, self, clock, engine="colmap", cameras=cameras, mode=options.mode, colmap=colmap_info, **extra, **loaded.report())
        report("done", 1, 1)
        return recon


def classical_width(options: ReconstructOptions) -> int:
    """The width COLMAP sees frames at: at least CLASSICAL_WIDTH (SIFT needs the pixels)."""
    return max(options.resolution or CLASSICAL_WIDTH, CLASSICAL_WIDTH)


def classical_frames(inputs: InputSet, options: ReconstructOptions, report: Progress) -> tuple[np.ndarray, list[Crop]]:
    """The frames as the classical engine sees them: uint8 [N, H, W, 3] at `classical_width`."""
    if len(inputs.frames) < MIN_REGISTERED:
        raise NoOverlapError("the classical engine needs at least two pictures of the same scene")
    images, crops = model_images(inputs.frames, options.mode, classical_width(options), report)
    return images.permute(0, 2, 3, 1).numpy(), crops


def input_kind(inputs: InputSet) -> str:
    """ "video" for the frames of one video, else "photos": it chooses the pairs and the cameras."""
    frames = inputs.frames
    return "video" if all(f.time_s is not None for f in frames) and len({f.source for f in frames}) == 1 else "photos"


def registration(
    inputs: InputSet,
    frames: np.ndarray,
    crops: list[Crop],
    options: ReconstructOptions,
    report: Progress,
    cancel: CancelToken,
    keep: np.ndarray | None = None,
) -> tuple[Registration, KnownIntrinsics | None]:
    """The classical engine's run on `frames` (from `classical_frames`), with the intrinsics the
    user gave (held fixed) or one photo set's EXIF prior, and the masks (`classical_masks`);
    refinement's fallback runs this too."""
    known = options.intrinsics or _exif_prior(inputs, crops)
    if options.intrinsics is not None:
        options.intrinsics.check_fits(crops, "the intrinsics given")
    k = None if known is None else np.stack([known.matrix_for(c) for c in crops])
    return register(frames, input_kind(inputs), known, k, report, cancel, keep), known


def classical_masks(inputs: InputSet, crops: list[Crop], frames: np.ndarray, options: ReconstructOptions) -> np.ndarray | None:
    """The user's masks at the classical engine's frames (bool [N, H, W]), or None."""
    if options.masks is None:
        return None
    sizes = np.array([c.original_wh for c in crops])
    return options.masks.stack(inputs.names(), [f.source for f in inputs.frames], sizes, options.mode, frames.shape[1:3])


def describe_run(run: Registration, names: list[str], known: KnownIntrinsics | None) -> dict[str, Any]:
    """What a scene records of COLMAP's run (`colmap` in its metadata)."""
    registered = set(run.model.frames.tolist())
    return {
        "matching": run.matching,
        "mapper": run.mapper,
        "pairs": run.pairs,
        "registered": len(run.model.frames),
        "frames": len(names),
        "unregistered": [n for i, n in enumerate(names) if i not in registered],
        "models": len(run.groups),
        "model_sizes": [len(g) for g in run.groups],
        "model_frames": [[names[i] for i in g] for g in run.groups],
        "points": run.model.tracks.num_points,
        "mean_reprojection_error_px": run.model.mean_error,
        "intrinsics": None if known is None else known.describe(),
    }


def _exif_prior(inputs: InputSet, crops: list) -> KnownIntrinsics | None:
    """A focal-length prior from the first photo's EXIF when every input is one camera's photo."""
    frames = inputs.frames
    if not frames or any(f.time_s is not None for f in frames) or len({c.original_wh for c in crops}) != 1:
        return None
    return exif_prior(frames[0].source, crops[0].original_wh)


def to_reconstruction(
    model: SparseModel, frames: np.ndarray, names: list[str], original_wh: np.ndarray, gauge: bool = True
) -> Reconstruction:
    """The registered frames as a scene: with `gauge`, the first at the origin and lengths in
    units of the median point depth (COLMAP's own frame and unit are arbitrary); without, the
    frame and units of the cameras as given. Depth where points were seen (track length as
    confidence)."""
    if gauge:
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
        f"({info.get('matching')} matching, {info.get('pairs')} pairs, {info.get('mapper', 'incremental')} mapping), "
        f"{info.get('points')} points, "
        f"mean reprojection error {info.get('mean_reprojection_error_px', float('nan')):.2f} px"
    )
    if info.get("models", 1) > 1:
        line += (
            f"; the frames split into {info['models']} separate models (sizes {info.get('model_sizes')}), "
            f"as a moving subject or a cut can cause: the largest is kept"
        )
        groups = info.get("model_frames") or []
        line += "".join(f"; model {i + 1}: {_span(g)}" for i, g in enumerate(groups))
    if info.get("unregistered"):
        line += f"; left out (not registered): {', '.join(info['unregistered'])}"
    return line


def _span(names: list[str], most: int = 6) -> str:
    """A model's frames, named (the first and last few when there are many)."""
    shown = names if len(names) <= most else [*names[: most // 2], "...", *names[-most // 2 :]]
    return ", ".join(shown)
