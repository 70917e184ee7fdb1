"""Atomic writing shared by every writer (scenes, exports, renders, screenshots, weights).

Files go to a temporary beside the target and folders to a temporary sibling folder; each is
renamed onto its target only when it was written completely (and, for writers that do not report
errors, re-read and verified by the caller inside the block), so a full disk, a cancel or a
crash never leaves a half-written output, and the previous good output stays until then. A run
that produces several outputs stages them all and publishes them together (`Publication`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

MARKER = ".zipmap-output"  # in every folder we write, so a re-run may replace it as a whole


class WriteError(OSError):
    """A file could not be written; the message names the file and the reason."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(target: Path, default: int) -> int:
    """The mode a replaced output keeps, or the user's usual mode for a new one."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return default & ~_umask()


def _error(target: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        reason = "the disk is full or the file is larger than allowed"
    return WriteError(f"cannot write {target}: {reason}")


@contextlib.contextmanager
def _discarded_on_failure(target: Path, discard) -> Iterator[None]:
    """Runs `discard` if the block fails; an OSError leaves as one `WriteError` naming `target`."""
    try:
        yield
    except BaseException as exc:
        discard()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _error(target, exc) from exc
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _put(new: Path, target: Path, aside: Path) -> Path | None:
    """Moves `new` onto `target`. An old `target` is first moved to `aside` and returned, so the
    caller decides to delete it or to put it back; if the move fails it is put back at once."""
    old = None
    if target.exists() or target.is_symlink():
        os.replace(target, aside)
        old = aside
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    return old


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` if the block succeeds."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # the temporary keeps the real suffix: some writers (OpenCV video) pick the format by it
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{target.suffix}", dir=folder)
    except OSError as exc:
        raise _error(target, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    with _discarded_on_failure(target, lambda: tmp.unlink(missing_ok=True)):
        yield tmp
        os.chmod(tmp, _mode_for(target, 0o666))  # mkstemp makes 0600 files
        os.replace(tmp, target)


def replaceable(folder: Path, expected: set[str]) -> bool:
    """Whether an existing folder is ours to replace: empty, marked by us, or holding nothing but
    what this kind of export writes (exports made before the marker existed)."""
    names = {p.name for p in folder.iterdir()}
    return not names or MARKER in names or names <= expected


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, expected: set[str] = frozenset()) -> Iterator[Path]:
    """A temporary folder beside `target`, swapped into place only when the block succeeds.
    An existing `target` is replaced only if `replaceable`; a user's folder is never removed."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or not replaceable(target, set(expected))):
        raise WriteError(f"cannot write {target}: the folder exists, is not empty and holds files that are not a ZipMap export; "
                         f"choose a new or empty folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        os.chmod(tmp, _mode_for(target, 0o777))  # mkdtemp makes 0700 folders
        (tmp / MARKER).write_text("written by ZipMap Studio; a re-run replaces this folder\n")
    except OSError as exc:
        raise _error(target, exc) from exc
    with _discarded_on_failure(target, lambda: _remove(tmp)):
        yield tmp
        old = _put(tmp, target, tmp.with_suffix(".old"))  # an old export waits beside it until the new one is in
        if old is not None:
            _remove(old)


class OutputLock:
    """One writer per output folder: a second run into the same folder fails at once with a
    clear message instead of mixing its outputs with the first one's."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._fh = None

    def __enter__(self) -> "OutputLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.folder / ".zipmap.lock", "a+")
        except OSError as exc:
            raise _error(self.folder, exc) from exc
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise WriteError(f"cannot write {self.folder}: another zipmap run is writing into it; "
                             f"wait for it or choose another folder") from None
        return self

    def __exit__(self, *exc) -> None:
        assert self._fh is not None
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


class Publication:
    """Stages a run's outputs in a hidden folder inside `folder` and publishes them together:
    each staged name replaces its namesake, and if one replacement fails the ones done are
    rolled back, so the folder holds one run's outputs, never two runs' mixed."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.lock = OutputLock(self.folder)
        self.staging: Path | None = None

    def __enter__(self) -> "Publication":
        self.lock.__enter__()
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=self.folder))
        except OSError as exc:
            self.lock.__exit__(None, None, None)
            raise _error(self.folder, exc) from exc
        return self

    def path(self, name: str) -> Path:
        assert self.staging is not None
        return self.staging / name

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.staging is not None
        staging = self.staging
        try:
            with _discarded_on_failure(self.folder, lambda: None):  # OSErrors become one WriteError
                if exc is not None:
                    raise exc  # the block's own failure: nothing is published
                self._publish()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.lock.__exit__(None, None, None)

    def _publish(self) -> None:
        """Each staged name onto its namesake; on a failure the ones done are rolled back."""
        assert self.staging is not None
        done: list[tuple[Path, Path | None]] = []  # (target, where its old version waits)
        try:
            for item in sorted(self.staging.iterdir()):
                target = self.folder / item.name
                done.append((target, _put(item, target, self.staging / f".old.{item.name}")))
        except OSError:
            for target, old in reversed(done):
                _remove(target)
                if old is not None:
                    os.replace(old, target)
            raise
