"""One error base (issue 26): every problem a user can cause is a `ZipMapError` of some kind and
reaches them as one line; anything else is a bug and says so, with its traceback. The command line
parses and answers `--help` without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zipmap_core import errors

ROOT = Path(__file__).resolve().parents[1]


def test_every_kind_is_a_zipmap_error_and_the_builtin_it_refines():
    from zipmap_core.io.atomic import WriteError
    from zipmap_core.io.inputs import NoUsableImagesError
    from zipmap_core.io.preprocess import ImageReadError
    from zipmap_core.io.video import VideoReadError
    from zipmap_core.pipeline.assembly import NonFiniteOutputError

    kinds = {
        errors.InputError: ValueError,
        errors.SceneFileError: ValueError,
        errors.CheckpointError: RuntimeError,
        errors.DownloadError: RuntimeError,
        errors.ModelOutputError: ValueError,
        errors.OutputError: OSError,
        errors.DistributedError: RuntimeError,
        WriteError: OSError,
        NoUsableImagesError: ValueError,
        ImageReadError: ValueError,
        VideoReadError: ValueError,
        NonFiniteOutputError: ValueError,
    }
    for kind, builtin in kinds.items():
        assert issubclass(kind, errors.ZipMapError) and issubclass(kind, builtin), kind
    full = WriteError(28, "No space left on device")
    assert full.errno == 28 and isinstance(full, errors.USER_ERRORS)


def test_the_app_shows_user_errors_as_they_are_and_bugs_as_bugs(capsys):
    from app.jobs import error_text

    assert error_text(errors.InputError("photo.png: not a readable image")) == "photo.png: not a readable image"
    assert error_text(PermissionError(13, "Permission denied")) == "[Errno 13] Permission denied"
    try:
        [][1]
    except IndexError as exc:
        text = error_text(exc)
    assert text.startswith("Internal error: this is a bug in ZipMap Studio (IndexError")
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["reconstruct", "--help"], ["render", "s", "-o", "o", "--orbit", "0"]])
def test_the_command_line_answers_without_importing_torch(argv):
    script = (
        "import sys\nfrom zipmap_core import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    child = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr


def test_exit_codes_tell_a_lost_peer_from_a_users_error_and_a_bug(capsys):
    from zipmap_core.cli.terminal import report_failure

    assert report_failure(errors.InputError("bad option")) == 2
    assert report_failure(errors.PeerLostError("process 1 stopped answering")) == errors.PEER_LOST_EXIT != 2
    assert report_failure(SystemExit(None)) == 0 and report_failure(SystemExit(5)) == 5
    assert report_failure(SystemExit("stopped: no room")) == 1 and "stopped: no room" in capsys.readouterr().err


def test_a_split_runs_own_failure_is_not_called_a_dead_peer():
    from zipmap_core.pipeline.distributed import Launch, failure_line, peers_answering

    launch = Launch(rank=1, world=2, local_rank=1, local_world=2)
    with pytest.raises(errors.DownloadError, match="socket timed out"), peers_answering(launch):
        raise errors.DownloadError("the official weights: socket timed out")  # a RuntimeError that reads like a peer's
    with pytest.raises(errors.PeerLostError, match="process 0 of the split run died"), peers_answering(launch):
        raise RuntimeError("[gloo] Connection closed by peer")
    assert "process 1 of 2 failed (exit code 2)" in failure_line([errors.PEER_LOST_EXIT, 2])  # refused by its own plan
    assert "process 1 of 2 failed (stopped answering)" in failure_line([errors.PEER_LOST_EXIT, None])
