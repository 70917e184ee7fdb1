"""Which engine makes a scene: the network (a `Reconstructor`), the network refined by bundle
adjustment (`refine`), or COLMAP alone (`ClassicalEngine`). The CLI and the app both call
`reconstruct_scene`, so an option means the same in each and is refused the same way where it
does not apply."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cancel import CancelToken, Progress
from .errors import InputError
from .io.reconstruction import Reconstruction

if TYPE_CHECKING:
    from .io.intrinsics import KnownIntrinsics
    from .pipeline.reconstructor import Reconstructor
    from .sfm.engine import ClassicalEngine

NETWORK_ONLY = ("window_size", "keep_state", "points_from", "say_memory")  # options the classical engine has no use for


def classical_engine() -> ClassicalEngine:
    from .sfm.engine import ClassicalEngine

    return ClassicalEngine()


def check_engine_options(classical: bool, refine: bool, **options: Any) -> None:
    """Contradictions said before any work."""
    if classical and refine:
        raise InputError("--refine adjusts ZipMap's cameras with COLMAP; the classical engine's are COLMAP's already")
    if classical and options.get("window_size"):
        raise InputError("--window-size is the network's streaming order; the classical engine has none")
    if classical and options.get("points_from", "depth") != "depth":
        raise InputError("--points-from point_head is the network's; the classical engine's points are COLMAP's")
    if refine and options.get("window_size"):
        raise InputError("--refine runs on a whole reconstruction; it does not combine with --window-size")


def reconstruct_scene(
    engine: Reconstructor | ClassicalEngine,
    inputs: Sequence[str | Path],
    *,
    refine: bool = False,
    intrinsics: KnownIntrinsics | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Reconstruction:
    """A scene from `inputs` by `engine`; `options` are `Reconstructor.reconstruct`'s (mode,
    resolution, max_frames, sampling, window_size, keep_state, points_from, say_memory)."""
    from .sfm.engine import ClassicalEngine
    from .sfm.refine import reconstruct_refined

    classical = isinstance(engine, ClassicalEngine)
    check_engine_options(classical, refine, **options)
    if classical:
        common = {k: v for k, v in options.items() if k not in NETWORK_ONLY}
        return engine.reconstruct(inputs, intrinsics=intrinsics, progress=progress, cancel=cancel, **common)
    if refine:
        assert not isinstance(engine, ClassicalEngine)
        return reconstruct_refined(engine, inputs, intrinsics=intrinsics, progress=progress, cancel=cancel, **options)
    return engine.reconstruct(inputs, intrinsics=intrinsics, progress=progress, cancel=cancel, **options)


def scene_notes(recon: Reconstruction) -> list[str]:
    """What COLMAP did to a scene, in a line each (frames left out named), for the CLI and the app."""
    from .sfm.engine import engine_summary

    notes = []
    if "colmap" in recon.metadata:
        notes.append(engine_summary(recon))
    if "refine" in recon.metadata:
        notes.append(str(recon.metadata["refine"].get("line", "")))
    return notes
