"""From frames to COLMAP's model, one way: features, matches of the chosen pairs, and mapping,
with one rule for which of several models is kept. The classical engine runs all of it
(`register`); refinement matches the pairs the network chose on the same workspace, and when the
predictions are too far off it takes the classical engine's own run, so that its cameras are
never worse than COLMAP alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import Cancelled, CancelToken, Progress
from ..errors import ZipMapError
from ..io.colmap_model import FrameEntry, SparseModel, build_model, colmap, read_sparse
from ..io.intrinsics import KnownIntrinsics
from .pairs import pairs_for
from .workspace import Workspace

MIN_REGISTERED = 2  # a model of fewer frames is no reconstruction
# a video of at least this many frames is mapped globally (GLOMAP's method): on the shipped video it
# registered as many frames as incremental mapping at 24 to 192 frames, with time growing as
# N^1.2 against N^1.5 (`zipmap bench classical`, docs/classical.json); below it, incremental is quicker
GLOBAL_FROM = 48
MAPPERS = ("incremental", "global")


class NoOverlapError(ZipMapError, ValueError):
    """COLMAP cannot register the inputs: fewer than two pictures, or no two that see the same things."""


class MappingError(ZipMapError, RuntimeError):
    """COLMAP's mapping itself ended abnormally (killed, out of memory, a crash): not a finding
    about the inputs, so `auto` does not take it for one."""


def largest_model(models: Iterable[Any]) -> Any | None:
    """The model kept when COLMAP finds several (a moving subject or a cut splits the frames):
    the most registered frames, then the most points; None when none holds two frames."""
    usable = [m for m in models if m.num_reg_images() >= MIN_REGISTERED]
    return max(usable, key=lambda m: (m.num_reg_images(), m.num_points3D())) if usable else None


def match_pairs(ws: Workspace, pairs: Sequence[tuple[int, int]], report: Progress, frames: int) -> None:
    """Features of every frame (once per workspace) and matches of `pairs`; no verified pair at
    all is said as such."""
    ws.extract(report)
    ws.cancel.check()
    ws.match(pairs, report)
    ws.cancel.check()
    if ws.verified_pairs() == 0:
        raise NoOverlapError(
            f"COLMAP found no two of the {frames} frames that see the same things (0 verified pairs of "
            f"{len(pairs)} tried): are they photos of one scene, with overlap between them?"
        )


@dataclass
class Mapped:
    best: Any  # the kept pycolmap model
    groups: list[list[int]]  # the frames of every usable model, the largest model first


def map_incremental(ws: Workspace, frames: int, fixed_intrinsics: bool, report: Progress, start: Path | None = None) -> Mapped:
    """COLMAP's incremental mapping on the workspace's matches, from scratch or continuing the
    model in `start`; the largest model (`largest_model`)."""
    pycolmap = colmap()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = -1
    options.ba_refine_focal_length = not fixed_intrinsics
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = not fixed_intrinsics
    registered = [0]

    def next_image() -> None:  # called from C++: it reports, and a cancel reaches COLMAP by its token
        registered[0] += 1
        with contextlib.suppress(Cancelled):
            report("mapping", min(registered[0], frames), frames)

    out = ws.root / ("continued" if start else "sparse")
    out.mkdir(exist_ok=True)
    report("mapping", 0, frames)
    with ws.cancellable():
        models = pycolmap.incremental_mapping(
            ws.database, ws.image_dir, out, options, input_path=start or "", next_image_callback=next_image, cancellation_token=ws.token
        )
    report("mapping", frames, frames)
    ws.cancel.check()
    best = largest_model(models.values())
    if best is None:
        raise NoOverlapError(f"COLMAP could not register two of the {frames} frames together: too little overlap or texture")
    return Mapped(best, frame_groups(models.values(), ws))


def frame_groups(models: Iterable[Any], ws: Workspace) -> list[list[int]]:
    """The frames each model registered (of those holding at least two), the largest first:
    where a dynamic scene or a cut split the frames."""
    groups = [sorted(ws.frame_of(m.image(i).name) for i in m.reg_image_ids()) for m in models if m.num_reg_images() >= MIN_REGISTERED]
    return sorted(groups, key=len, reverse=True)


# global mapping has no cancellation token: it runs in a child that a cancel stops, and writes
# the models it finds into the workspace (ours, so they are read back in this process)
_GLOBAL_CHILD = """
import json, sys
from pathlib import Path
import pycolmap
pycolmap.logging.minloglevel = 3
database, images, out, fixed, listing = sys.argv[1:6]
options = pycolmap.GlobalPipelineOptions()
options.mapper.bundle_adjustment.refine_focal_length = fixed != "1"
options.mapper.bundle_adjustment.refine_extra_params = fixed != "1"
try:
    models = pycolmap.global_mapping(database, images, out, options)
except Exception as exc:  # COLMAP refusing these matches (no view graph to map): no model, said in the log
    print(f"global mapping found no model: {exc}", file=sys.stderr)
    models = {}
folders = []
for i, model in models.items():
    folder = Path(out) / f"model{i}"
    folder.mkdir(exist_ok=True)
    model.write(str(folder))
    folders.append(str(folder))
Path(listing).write_text(json.dumps(folders))
"""


def map_global(ws: Workspace, frames: int, fixed_intrinsics: bool, report: Progress) -> Mapped:
    """COLMAP's global mapping (rotation averaging, then global positioning and one bundle
    adjustment) on the workspace's matches, in a child a cancel stops; the largest model."""
    import json
    import subprocess
    import sys

    pycolmap = colmap()
    out = ws.root / "global"
    out.mkdir(exist_ok=True)
    report("mapping", 0, frames)
    listing = ws.root / "global_models.json"
    args = [str(ws.database), str(ws.image_dir), str(out), "1" if fixed_intrinsics else "0", str(listing)]
    with open(ws.log, "ab") as log:
        start = log.tell()
        child = subprocess.Popen([sys.executable, "-I", "-c", _GLOBAL_CHILD, *args], stdout=log, stderr=log)
        try:
            while child.poll() is None:
                if ws.cancel.wait(0.1):
                    child.kill()
                    child.wait()
                    ws.cancel.check()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if child.returncode != 0 or not listing.is_file():
        raise MappingError(f"COLMAP's global mapping of the {frames} frames ended abnormally ({_ended(child.returncode, ws.log, start)})")
    models = [pycolmap.Reconstruction(folder) for folder in json.loads(listing.read_text())]
    report("mapping", frames, frames)
    best = largest_model(models)
    if best is None:
        raise NoOverlapError(f"COLMAP could not register two of the {frames} frames together: too little overlap or texture")
    return Mapped(best, frame_groups(models, ws))


def _ended(code: int, log: Path, start: int) -> str:
    """How a child ended, in a few words: its signal or exit code and its last line in `log` (from `start`)."""
    import signal

    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    with open(log, "rb") as f:
        f.seek(start)
        lines = [line.strip() for line in f.read()[-4096:].decode("utf-8", "replace").splitlines() if line.strip()]
    return f"{how}: {lines[-1][:200]}" if lines else how


def default_mapper(kind: str, frames: int) -> str:
    """Global mapping for a long video (see GLOBAL_FROM), incremental otherwise."""
    return "global" if kind == "video" and frames >= GLOBAL_FROM else "incremental"


@dataclass
class Registration:
    """The classical engine's run: what COLMAP found (in the pixels of the frames it was given)
    and how it got there."""

    model: SparseModel
    matching: str  # sequential, exhaustive or look-alike
    pairs: int
    groups: list[list[int]]  # the frames of each model found, the largest first
    mapper: str = "incremental"


def register(
    frames: np.ndarray,
    kind: str,
    known: KnownIntrinsics | None,
    k: np.ndarray | None,
    report: Progress,
    cancel: CancelToken,
    keep: np.ndarray | None = None,
) -> Registration:
    """COLMAP's structure from motion on `frames` [N, H, W, 3] uint8 ("video" or "photos", which
    sets the pairs and one camera for a video or known intrinsics); `k` [N, 3, 3]: intrinsics for
    those pixels, a prior (or `known.fixed`: held); `keep`: the user's masks (no features off them)."""
    how, pairs = pairs_for(kind, frames)
    fixed = known is not None and known.fixed
    mapper = default_mapper(kind, len(frames))
    with Workspace(frames, cancel) as ws:
        ws.add_cameras(k, kind == "video" or fixed, fixed)  # one camera for a video or a camera the user knows
        ws.add_masks(keep)
        match_pairs(ws, pairs, report, len(frames))
        mapped = (map_global if mapper == "global" else map_incremental)(ws, len(frames), fixed, report)
        return Registration(read_sparse(mapped.best, ws.frame_of), how, len(pairs), mapped.groups, mapper)


def seeded_model(ws: Workspace, w2c: np.ndarray) -> Any:
    """A pycolmap model of the workspace database's cameras and images, each posed at `w2c[frame]`
    (the network's cameras, or the user's): what triangulation starts from."""
    with ws.database_open() as db:
        cameras = db.read_all_cameras()
        frames = [FrameEntry(im.name, im.image_id, im.camera_id, w2c[ws.frame_of(im.name)]) for im in db.read_all_images()]
    return build_model(cameras, frames)


def triangulate(ws: Workspace, model: Any, fresh: bool) -> Any:
    """The workspace's matches triangulated from `model`'s cameras (`fresh`: its points cleared
    first), its C++ log kept in the workspace's log."""
    pycolmap = colmap()
    with ws.quiet(), ws.cancellable():
        return pycolmap.triangulate_points(
            model,
            ws.database,
            ws.image_dir,
            ws.root / "tri",
            clear_points=fresh,
            options=pycolmap.IncrementalPipelineOptions(),
            cancellation_token=ws.token,
        )


def triangulate_known(
    frames: np.ndarray, kind: str, w2c: np.ndarray, k: np.ndarray, report: Progress, cancel: CancelToken, keep: np.ndarray | None = None
) -> Registration:
    """Known cameras (`w2c` [N, 3, 4], `k` [N, 3, 3] for `frames`' pixels): no registration, the
    features matched as the classical engine matches them and triangulated with the cameras as
    given, nothing adjusted (their frame and units are the user's)."""
    how, pairs = pairs_for(kind, frames)
    with Workspace(frames, cancel) as ws:
        ws.add_cameras(k, shared=False, fixed=True)
        ws.add_masks(keep)
        match_pairs(ws, pairs, report, len(frames))
        report("triangulation", 0, 1)
        model = triangulate(ws, seeded_model(ws, w2c), fresh=True)
        report("triangulation", 1, 1)
        return Registration(read_sparse(model, ws.frame_of), how, len(pairs), [list(range(len(frames)))])
