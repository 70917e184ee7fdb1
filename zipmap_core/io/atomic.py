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
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError

MARKER = ".zipmap-output"  # in every folder we write: the files ZipMap wrote there
MARKER_MAX_BYTES = 64 << 20  # a marker larger than this is not ours
LEGACY_LOCK = ".zipmap.lock"  # the lock file of earlier versions, removed when met


class WriteError(OutputError):
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


FULL = "the disk is full or the file is larger than allowed"


def _error(target: Path, exc: OSError) -> WriteError:
    """One line on why `target` could not be written, in the user's words: a full disk however a
    library says it (numpy's "N requested and M written" carries no errno), a file where a folder
    is needed named."""
    reason = exc.strerror or str(exc)
    said = str(exc)  # libraries without an errno: numpy's "N requested and M written", safetensors' IoError
    if exc.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT) or (
        exc.errno is None and ("requested and" in said or "No space left" in said)
    ):
        reason = FULL
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_prefix(name: str) -> str:
    """Temporaries carry the writing process's id: `clear_stale` knows a killed run's by it."""
    return f".{name}.{os.getpid()}."


def clear_stale(folder: Path, name: str | None = None) -> None:
    """Removes the temporaries a killed run left beside `folder/name` (any name when None); an
    old output that such a run had moved aside (and not yet replaced) is put back instead."""
    names = re.escape(name) if name is not None else ".+"
    pattern = re.compile(rf"^\.(?P<name>{names})\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.(?P<kind>part.*|old)$")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or _pid_alive(int(m.group("pid"))):
            continue
        target = folder / m.group("name")
        if m.group("kind") == "old" and not (target.exists() or target.is_symlink()):
            os.replace(entry, target)
        else:
            _remove(entry)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` if the block succeeds."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        clear_stale(folder, target.name)
        # the temporary keeps the real suffix: some writers (OpenCV video) pick the format by it
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=f".part{target.suffix}", dir=folder)
    except OSError as exc:
        raise _error(target, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    with _discarded_on_failure(target, lambda: tmp.unlink(missing_ok=True)):
        yield tmp
        os.chmod(tmp, _mode_for(target, 0o666))  # mkstemp makes 0600 files
        os.replace(tmp, target)


# ---- what ZipMap wrote ----------------------------------------------------------------------------
def mark(folder: Path, names: Iterable[str] | None = None) -> None:
    """Writes `folder`'s marker: `names` (top-level names a publication put there, added to those
    of earlier runs), or else every file now under `folder`."""
    if names is None:
        listed = sorted(p.relative_to(folder).as_posix() for p in _files(folder))
    else:
        listed = sorted(set(names) | (owned(folder) or set()))
    body = {"written_by": "ZipMap Studio", "note": "a later run may replace what is listed here, nothing else", "files": listed}
    (folder / MARKER).write_text(json.dumps(body, indent=1) + "\n")


def _files(folder: Path) -> Iterator[Path]:
    """Every file and link under `folder` (links not followed), less the marker."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            if here == folder and name == MARKER:
                continue
            yield here / name


def owned(folder: Path) -> set[str] | None:
    """The names `folder`'s marker lists; None without a readable marker. A marker of earlier
    versions (plain text, no list) owned its folder whole: it lists everything there."""
    marker = folder / MARKER
    try:
        if not marker.is_file() or marker.stat().st_size > MARKER_MAX_BYTES:
            return None
        text = marker.read_text(errors="replace")
    except OSError:
        return None
    try:
        files = json.loads(text)["files"]
        return {str(f) for f in files} if isinstance(files, list) else None
    except (ValueError, KeyError, TypeError):
        if text.startswith("written by ZipMap Studio"):
            return {p.relative_to(folder).as_posix() for p in _files(folder)}
        return None


def foreign(target: Path) -> list[str]:
    """What in an existing `target` folder ZipMap did not write (its marker does not list it)."""
    mine = owned(target) or set()
    return sorted(p.relative_to(target).as_posix() for p in _files(target) if p.relative_to(target).as_posix() not in mine)


def _refusal(target: Path, found: list[str]) -> WriteError:
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return WriteError(
        f"cannot write {target}: it holds files ZipMap did not write ({shown}); "
        f"nothing was changed: choose a new or empty folder, or move them"
    )


def check_folder_replaceable(target: Path) -> None:
    """A folder output may replace `target` only if it is absent, empty, or all ZipMap's."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise WriteError(f"cannot write {target}: a file of that name is in the way; nothing was changed")
    if target.is_dir():
        found = foreign(target)
        if found:
            raise _refusal(target, found)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `target`, swapped into place only when the block succeeds and
    marked with what it holds. An existing `target` is replaced only if ZipMap wrote all of it."""
    target = Path(target)
    check_folder_replaceable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clear_stale(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name), suffix=".part", dir=target.parent))
        os.chmod(tmp, _mode_for(target, 0o777))  # mkdtemp makes 0700 folders
    except OSError as exc:
        raise _error(target, exc) from exc
    with _discarded_on_failure(target, lambda: _remove(tmp)):
        yield tmp
        mark(tmp)
        check_folder_replaceable(target)  # again: the user may have added files meanwhile
        old = _put(tmp, target, tmp.with_suffix(".old"))  # an old export waits beside it until the new one is in
        if old is not None:
            _remove(old)


class OutputLock:
    """One writer per output folder: a second run into the same folder fails at once with a
    clear message instead of mixing its outputs with the first one's. The lock is held on the
    folder itself (flock of its descriptor), so no lock file is left behind."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        self.created = False  # the folder did not exist before: a failed run takes it away again

    def __enter__(self) -> OutputLock:
        try:
            self.created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _error(self.folder, exc) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise WriteError(
                f"cannot write {self.folder}: another zipmap run is writing into it; wait for it or choose another folder"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class Publication:
    """Stages a run's outputs in a hidden folder inside `folder` and publishes them together:
    each staged name replaces its namesake, and if one replacement fails the ones done are
    rolled back, so the folder holds one run's outputs, never two runs' mixed. A namesake is
    replaced only if ZipMap wrote it (the folder's marker lists it); `names`, when given, are
    checked before any work is done."""

    def __init__(self, folder: str | os.PathLike, names: Iterable[str] = ()) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        self.lock = OutputLock(self.folder)
        self.staging: Path | None = None

    def __enter__(self) -> Publication:
        self.lock.__enter__()
        try:
            self._clear_stale()
            self._check(self.names)
            self.staging = Path(tempfile.mkdtemp(prefix=f".staging.{os.getpid()}.", dir=self.folder))
        except BaseException as exc:
            self.lock.__exit__(None, None, None)
            if isinstance(exc, OSError) and not isinstance(exc, WriteError):
                raise _error(self.folder, exc) from exc
            raise
        return self

    def _clear_stale(self) -> None:
        """Under the lock, every staging folder here is a killed run's; earlier versions' lock
        files go too."""
        for entry in self.folder.iterdir():
            if entry.name.startswith(".staging.") or entry.name == LEGACY_LOCK:
                _remove(entry)
        clear_stale(self.folder)

    def _check(self, names: Iterable[str]) -> None:
        """Refuses, by name, any namesake of `names` that ZipMap did not write."""
        mine = owned(self.folder) or set()
        for name in names:
            target = self.folder / name
            if not (target.exists() or target.is_symlink()):
                continue
            if target.is_dir() and not target.is_symlink():
                check_folder_replaceable(target)  # a folder: by its own marker
            elif name not in mine:
                raise WriteError(
                    f"cannot write {target}: it exists and ZipMap did not write it; nothing was changed: "
                    f"choose a new or empty folder, or move it"
                )

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
            if exc is not None and self.lock.created:
                with contextlib.suppress(OSError):  # still empty: the failed run leaves no trace
                    self.folder.rmdir()

    def _publish(self) -> None:
        """Each staged name onto its namesake; on a failure the ones done are rolled back."""
        assert self.staging is not None
        items = sorted(self.staging.iterdir())
        self._check([item.name for item in items])
        for item in items:
            if item.is_dir() and owned(item) is None:
                mark(item)
        done: list[tuple[Path, Path | None]] = []  # (target, where its old version waits)
        try:
            for item in items:
                target = self.folder / item.name
                done.append((target, _put(item, target, self.staging / f".old.{item.name}")))
            mark(self.folder, [item.name for item in items])
        except OSError:
            for target, old in reversed(done):
                _remove(target)
                if old is not None:
                    os.replace(old, target)
            raise
