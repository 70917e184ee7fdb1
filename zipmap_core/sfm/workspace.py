"""A COLMAP run's working folder: the frames as pictures, a database of cameras, features and
matches, and the bridge between our progress-and-cancel protocol and pycolmap's.

pycolmap's calls block and report only through its log; they take a cancellation token. A
watcher thread passes our `CancelToken` on to that token, and the work is cut into chunks (images
for features, pairs for matching, one registered image for mapping) so that progress moves and a
cancel lands within a chunk. Everything lives in a temporary folder removed on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cancel import CancelToken, Progress
from ..io.colmap_model import colmap

FEATURE_CHUNK = 8  # images per extraction call (a progress step)
PAIR_CHUNK = 64  # pairs per matching call


@contextlib.contextmanager
def colmap_token(cancel: CancelToken) -> Iterator[Any]:
    """A pycolmap CancellationToken that is cancelled when `cancel` is."""
    pycolmap = colmap()
    token = pycolmap.CancellationToken()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                token.cancel()
                return

    watcher = threading.Thread(target=watch, name="colmap-cancel", daemon=True)
    watcher.start()
    try:
        yield token
    finally:
        done.set()
        watcher.join()


@contextlib.contextmanager
def native_log(path: Path) -> Iterator[None]:
    """The process's stderr (file descriptor 2) into `path` while COLMAP runs: COLMAP and the
    Ceres solver it links log per image and per iteration from C++, past Python's reach."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _params(k: np.ndarray, fixed: bool) -> str:
    """COLMAP's parameters of the median of intrinsics [N, 3, 3]: PINHOLE "fx, fy, cx, cy" when
    `fixed`, else SIMPLE_PINHOLE "f, cx, cy"; COLMAP's pixel convention (0 at the left edge of the
    first pixel) is ours."""
    k = np.median(k.reshape(-1, 3, 3), axis=0)
    values = (k[0, 0], k[1, 1], k[0, 2], k[1, 2]) if fixed else (np.sqrt(k[0, 0] * k[1, 1]), k[0, 2], k[1, 2])
    return ", ".join(f"{v:.10g}" for v in values)


class Workspace:
    """Frames [N, H, W, 3] uint8 written as PNG into a temporary folder beside a COLMAP database.
    `names` of the images in COLMAP are the frames' indices (`00003.png`), so a frame is found
    again by its number whatever its own name."""

    def __init__(self, images: np.ndarray, cancel: CancelToken) -> None:
        from PIL import Image

        self.cancel = cancel
        self.token: Any = None
        self._stack = contextlib.ExitStack()
        self.root = Path(tempfile.mkdtemp(prefix="zipmap-colmap-"))
        self.log = self.root / "colmap.log"
        self.image_dir = self.root / "images"
        self.image_dir.mkdir()
        self.database = self.root / "database.db"
        self.names = [f"{i:05d}.png" for i in range(len(images))]
        self.mask_dir: Path | None = None
        for name, image in zip(self.names, images):
            Image.fromarray(image).save(self.image_dir / name, compress_level=1)
        colmap().Database.open(self.database).close()  # created empty, as import_images needs

    def __enter__(self) -> Workspace:
        """Our cancel goes to COLMAP's token until the exit."""
        self.token = self._stack.enter_context(colmap_token(self.cancel))
        return self

    @contextlib.contextmanager
    def cancellable(self) -> Iterator[None]:
        """Around a pycolmap call: its "Operation cancelled" (our cancel, passed on to its token)
        becomes our `Cancelled`."""
        try:
            yield
        except InterruptedError:
            self.cancel.check()
            raise
        self.cancel.check()

    def quiet(self) -> contextlib.AbstractContextManager:
        """For the calls that log past `quiet_colmap` (triangulation's INFO lines, the solver's
        warnings): their output goes to the workspace's log. Kept short, as everything written to
        stderr meanwhile goes there too."""
        return native_log(self.log)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def frame_of(self, name: str) -> int:
        return int(Path(name).stem)

    def add_cameras(self, intrinsics: np.ndarray | None, shared: bool, fixed: bool = False) -> None:
        """One camera for all frames (`shared`: a video, or one known camera) or one per frame.
        With `intrinsics` [N, 3, 3]: PINHOLE when `fixed` (the user's), else SIMPLE_PINHOLE with
        their mean focal length as a prior (square pixels: a prior's fx and fy must not drift
        apart); without, COLMAP's guess from the image size."""
        pycolmap = colmap()
        options = pycolmap.ImageReaderOptions()
        mode = pycolmap.CameraMode.SINGLE if shared else pycolmap.CameraMode.PER_IMAGE
        options.camera_model = "PINHOLE" if fixed else "SIMPLE_PINHOLE"
        pycolmap.import_images(self.database, self.image_dir, mode, self.names, options)
        if intrinsics is None:
            return

        def known(camera: Any, frames: list[int]) -> None:
            camera.set_params_from_string(_params(intrinsics[frames], fixed))
            camera.has_prior_focal_length = True

        self._set_cameras(known)

    def forget_cameras(self) -> None:
        """Every camera back to COLMAP's own guess (focal 1.2 x the larger side, no prior): for a
        fresh start when the predicted intrinsics are not to be trusted."""
        pycolmap = colmap()
        factor = pycolmap.ImageReaderOptions().default_focal_length_factor

        def guess(camera: Any, frames: list[int]) -> None:
            camera.model = pycolmap.CameraModelId.SIMPLE_PINHOLE
            camera.params = [factor * max(camera.width, camera.height), camera.width / 2, camera.height / 2]
            camera.has_prior_focal_length = False

        self._set_cameras(guess)

    def _set_cameras(self, update: Callable[[Any, list[int]], None]) -> None:
        """`update(camera, frames that use it)` on each camera of the database."""
        with self.database_open() as db:
            users: dict[int, list[int]] = {}
            for image in db.read_all_images():
                users.setdefault(image.camera_id, []).append(self.frame_of(image.name))
            for camera_id, frames in users.items():
                camera = db.read_camera(camera_id)
                update(camera, frames)
                db.update_camera(camera)

    @contextlib.contextmanager
    def database_open(self) -> Iterator[Any]:
        """The workspace's COLMAP database, closed on the way out."""
        db = colmap().Database.open(self.database)
        try:
            yield db
        finally:
            db.close()

    def add_masks(self, keep: np.ndarray | None) -> None:
        """The user's masks (bool [N, H, W], False = ignore) where COLMAP's feature extraction reads
        them: a PNG per picture named after it, black where no feature may be found."""
        if keep is None:
            return
        from PIL import Image

        self.mask_dir = self.root / "masks"
        self.mask_dir.mkdir()
        for name, kept in zip(self.names, keep):
            Image.fromarray(np.where(kept, 255, 0).astype(np.uint8)).save(self.mask_dir / f"{name}.png", compress_level=1)

    def extract(self, report: Progress) -> None:
        """SIFT features of every frame, a chunk at a time (none on masked pixels)."""
        pycolmap = colmap()
        options = pycolmap.FeatureExtractionOptions()
        reader = pycolmap.ImageReaderOptions()
        if self.mask_dir is not None:
            reader.mask_path = str(self.mask_dir)
        for start in range(0, len(self.names), FEATURE_CHUNK):
            chunk = self.names[start : start + FEATURE_CHUNK]
            with self.cancellable():
                pycolmap.extract_features(
                    self.database,
                    self.image_dir,
                    chunk,
                    reader_options=reader,
                    extraction_options=options,
                    device=pycolmap.Device.cpu,
                    cancellation_token=self.token,
                )
            report("features", start + len(chunk), len(self.names))

    def match(self, pairs: Sequence[tuple[int, int]], report: Progress) -> None:
        """Matches and two-view geometry of the frame pairs `pairs`, a chunk of pairs at a time."""
        pycolmap = colmap()
        listing = self.root / "pairs.txt"
        pairs = list(pairs)
        for start in range(0, len(pairs), PAIR_CHUNK):
            chunk = pairs[start : start + PAIR_CHUNK]
            listing.write_text("".join(f"{self.names[i]} {self.names[j]}\n" for i, j in chunk))
            options = pycolmap.ImportedPairingOptions()
            options.match_list_path = str(listing)
            with self.cancellable():
                pycolmap.match_image_pairs(
                    self.database, pairing_options=options, device=pycolmap.Device.cpu, cancellation_token=self.token
                )
            report("matching", start + len(chunk), len(pairs))
        if not pairs:
            report("matching", 1, 1)

    def verified_pairs(self) -> int:
        """How many pairs of frames share geometrically verified matches."""
        with self.database_open() as db:
            return int(db.num_verified_image_pairs())
