"""Checks every reader makes before it trusts a path or a text: that the path is a regular file
(a folder, a FIFO or a device is named as such; a FIFO would block a reader for ever), and that
JSON parses without exhausting the interpreter's stack; and the one rule for what a picture is
called in a folder we write (and how a camera file is matched to it)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..options import IMAGE_SUFFIXES

UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')  # no file system or tool takes these (NUL, separators, ...)
MAX_STEM_BYTES = 200  # file systems take 255 bytes a name: room for a counter and a suffix


def regular_file_problem(path: str | os.PathLike, what: str) -> str | None:
    """Why `path` cannot be read as `what` ("a checkpoint", "a scene file"), or None."""
    path = Path(path)
    kind = path_kind(path)
    if kind == "missing":
        return f"{what} not found: {path}"
    if kind == "folder":
        return f"{path} is a folder, not {what}"
    if kind != "file":
        return f"{str(path)!r} is {kind}, not {what}"
    return None


def path_kind(path: Path) -> str:
    """ "file", "folder", "missing", or what else `path` is, in words: a named pipe (which would
    block a reader for ever), a device, a socket, a symbolic link that loops or leads nowhere, a
    path not allowed to read, a name no file system takes."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if path.is_symlink() else "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops"
        return f"not readable ({exc.strerror or exc})"
    except ValueError:  # a NUL character: no file system's name
        return "not a path (it holds a NUL character)"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


MAX_JSON_INT = 2**63 - 1  # a whole number in a file beyond 64 bits is no count, size or value of ours


def _json_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise InputError(f"its JSON holds a whole number of {len(text.lstrip('-'))} digits, beyond 64 bits")
    return value


def parse_json(text: str | bytes) -> Any:
    """json.loads, with nesting too deep for the parser and whole numbers beyond 64 bits (which
    numpy and float() cannot take) reported as the ValueError they are."""
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise InputError("its JSON is nested too deeply") from None


def picture_stem(name: str) -> str:
    """What the picture `name` (a file name or path, or a video frame's "clip.mp4#t=1.50s") is
    called in a folder we write, without a suffix: its picture suffix dropped, characters no file
    system takes replaced, no leading dot or space, at most MAX_STEM_BYTES bytes of UTF-8 (a
    longer one is cut and tagged with a hash of the whole, so two long names stay two). Names
    decoded from non-UTF-8 bytes carry surrogates, which C++ writers (pycolmap) refuse: replaced.
    '' when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    suffix = Path(base).suffix
    stem = base[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else base
    stem = stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    stem = UNSAFE_NAME_CHARS.sub("_", stem).lstrip(". ")
    raw = stem.encode("utf-8")
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    tag = hashlib.sha1(raw).hexdigest()[:10]
    return raw[: MAX_STEM_BYTES - 11].decode("utf-8", "ignore") + "~" + tag


def one_line(name: str) -> str:
    """A file name as a message shows it: its control characters (a line break in a name would
    split a one-line error in two) as `?`."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", name)
