"""Checks every reader makes before it trusts a path or a text: that the path is a regular file
(a folder, a FIFO or a device is named as such; a FIFO would block a reader for ever), and that
JSON parses without exhausting the interpreter's stack."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import InputError


def regular_file_problem(path: str | os.PathLike, what: str) -> str | None:
    """Why `path` cannot be read as `what` ("a checkpoint", "a scene file"), or None."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{what} not found: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return f"{path} is a folder, not {what}"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a pipe or a device), not {what}"
    return None


def parse_json(text: str | bytes) -> Any:
    """json.loads, with nesting too deep for the parser reported as the ValueError it is."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError("its JSON is nested too deeply") from None
