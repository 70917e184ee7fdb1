"""Quitting cleanly, always (issue 37): the app asked to quit while each kind of background job
runs (a window close, Ctrl+C, SIGTERM, `--exit`) cancels it or waits for it, and ends with its
return code and no traceback; the official weights offline fall back to the bundled model in
headless runs too. Each case is a real child process under the test's X server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from gui import ROOT, SAMPLES
from PIL import Image

from zipmap_core.resources import BUNDLED_MODEL

CHILD = Path(__file__).resolve().parent / "app_exit_child.py"


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings, caches and outputs of the child's own, on the test's X server."""
    return {
        **os.environ,
        "QT_API": "pyside6",
        "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "EXPORT_TO": str(tmp_path / "export.ply"),
        **extra,
    }


def run_child(
    tmp_path: Path, kind: str, how: str, args: list[str], send: Sequence[tuple[str, int]] = (), **env: str
) -> tuple[int, str, str]:
    """Runs the child; `send`: (a line's start, a signal), each signal sent once the child has
    printed such a line. Returns (return code, stdout, stderr)."""
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), kind, how, *args],
            cwd=ROOT,
            env=child_env(tmp_path, **env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    lines: list[str] = []
    seen = threading.Condition()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with seen:
                lines.append(line)
                seen.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for start, sig in send:
            with seen:
                printed = seen.wait_for(lambda start=start: any(line.startswith(start) for line in lines), 120)
                assert printed, f"the child never printed {start!r}: {''.join(lines)}"
            proc.send_signal(sig)
        proc.wait(timeout=180)
    finally:
        proc.kill()
    reader.join(10)
    return proc.returncode, "".join(lines), errors.read_text()


def assert_clean(rc: int, out: str, err: str, kind: str, code: int) -> None:
    """The exit code asked for, no traceback, and the held job ended before the process did."""
    assert rc == code, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert "Traceback" not in err and "RuntimeError" not in err, err[-3000:]
    assert f"held {kind}" in out, out
    assert out.index(f"held {kind}") < out.index(f"{kind} ended") < out.index(f"exit code {code}"), out


@pytest.fixture
def tiny(tiny_checkpoint) -> list[str]:
    return ["--checkpoint", str(tiny_checkpoint)]


def test_closing_the_window_while_the_model_loads_waits_for_the_load(tmp_path, tiny):
    rc, out, err = run_child(tmp_path, "load", "close", tiny)
    assert_clean(rc, out, err, "load", 0)
    assert out.index("quitting") < out.index("load ended"), "the load was still being read when the window closed"
    conf = (tmp_path / "config" / "ZipMap" / "ZipMap Studio.conf").read_text()
    assert "window_geometry" in conf  # the close saved the layout as usual


def test_a_headless_run_that_fails_before_its_model_has_loaded_waits_for_the_load(tmp_path, tiny):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run_child(tmp_path, "load", "exit", [str(empty), "--exit", *tiny])
    assert_clean(rc, out, err, "load", 2)
    assert "zipmap-studio: error: " in err and "no usable images" in err


def test_sigterm_during_a_download_cancels_it_and_quits_like_the_close_button(tmp_path, tiny):
    rc, out, err = run_child(tmp_path, "download", "parent", tiny, send=[("held", signal.SIGTERM)])
    assert_clean(rc, out, err, "download", 128 + signal.SIGTERM)
    assert "window_geometry" in (tmp_path / "config" / "ZipMap" / "ZipMap Studio.conf").read_text()


def test_ctrl_c_during_a_reconstruction_cancels_it(tmp_path, tiny):
    rc, out, err = run_child(tmp_path, "reconstruct", "parent", [*map(str, SAMPLES[:2]), *tiny], send=[("held", signal.SIGINT)])
    assert_clean(rc, out, err, "reconstruct", 128 + signal.SIGINT)
    assert "KeyboardInterrupt" not in err


def test_closing_the_window_during_live_mode_cancels_the_stream(tmp_path, tiny):
    rc, out, err = run_child(tmp_path, "live", "close", tiny)
    assert_clean(rc, out, err, "live", 0)


def test_ctrl_c_during_a_novel_view_render_cancels_it_and_waits_for_it(tmp_path, tiny, scene):
    rc, out, err = run_child(tmp_path, "render", "parent", [str(scene), *tiny], send=[("held", signal.SIGINT)])
    assert_clean(rc, out, err, "render", 128 + signal.SIGINT)


def test_sigterm_during_an_export_cancels_it_and_writes_nothing(tmp_path, tiny, scene):
    rc, out, err = run_child(tmp_path, "export", "parent", [str(scene), *tiny], send=[("held", signal.SIGTERM)])
    assert_clean(rc, out, err, "export", 128 + signal.SIGTERM)
    assert not (tmp_path / "export.ply").exists()


@pytest.mark.skipif(not BUNDLED_MODEL.exists(), reason="the bundled model is not in this checkout")
def test_official_weights_offline_fall_back_to_the_bundled_model_headless(tmp_path):
    """`zipmap-studio INPUT --checkpoint official --screenshot s.png --exit`, offline with an
    empty cache: the scene made by the bundled model, exit 0, and one line saying why."""
    shot = tmp_path / "s.png"
    command = [sys.executable, "-m", "app", *map(str, SAMPLES[:2]), "--checkpoint", "official", "--screenshot", str(shot), "--exit"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "RuntimeError" not in done.stderr, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and "offline" in said[0] and "using the bundled demonstration model" in said[0], said
    image = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert image.std() > 10, "the screenshot shows no scene"


def test_a_second_ctrl_c_ends_at_once_while_the_first_waits_for_a_model_being_read(tmp_path, tiny):
    send = [("held", signal.SIGINT), ("saw the quit", signal.SIGINT)]
    rc, out, err = run_child(tmp_path, "load", "parent", tiny, send=send, HOLD_AFTER_QUIT_S="60")
    assert rc == 128 + signal.SIGINT, f"rc {rc}\n{out}\n{err[-3000:]}"
    assert "load ended" not in out and "exit code" not in out, "the second Ctrl+C must not wait for the load"
    assert "Traceback" not in err, err[-3000:]
