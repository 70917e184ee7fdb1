"""Running the command line in tests: in this process (exit code and stderr) or in a child with
limits, and the shape every user error must have."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from zipmap_core import cli


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("zipmap: error: "), err
    assert "Traceback" not in err


def run_limited(args: list[str], file_size_limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a child process that cannot write a file larger than `file_size_limit`: every
    write past it fails with EFBIG, as on a full disk, in Python and in C libraries alike."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "zipmap_core.cli", *args], cwd=cwd, env=env, preexec_fn=limit, capture_output=True, text=True, timeout=600
    )
