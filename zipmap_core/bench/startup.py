"""`zipmap bench startup`: how long ZipMap Studio takes from launch to a window on screen, and to
a model ready to reconstruct (loaded in the background while the window is usable).

Each run launches `zipmap-studio --exit --startup-report` as a fresh process (so nothing is
imported or cached in memory beforehand) on the display the benchmark runs on, and reads the
wall-clock times the studio reports: its window first exposed, its model ready."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import InputError

TIMEOUT_S = 300


def launch_once(checkpoint: str | None, env: dict[str, str]) -> dict[str, float]:
    """Seconds from launching the studio to its window on screen and to its model ready."""
    command = [sys.executable, "-m", "app", "--exit", "--startup-report"] + (["--checkpoint", checkpoint] if checkpoint else [])
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"zipmap-studio exited with {done.returncode} without a report:\n{done.stderr[-2000:]}")
    report = json.loads(lines[-1])
    if not report.get("model_loaded"):
        raise RuntimeError(f"the model did not load:\n{done.stderr[-2000:]}")
    return {
        "window_on_screen_s": report["window_on_screen"] - launched,
        "model_ready_s": report["model_ready"] - launched,
        "python_started_s": report["started"] - launched,
    }


def startup(repeats: int, checkpoint: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """`repeats` launches; the summary holds the medians."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise InputError("the startup benchmark opens the studio's window: run it on a desktop, or under xvfb-run")
    env = {**os.environ, "QT_API": "pyside6"}
    runs = []
    for i in range(repeats):
        runs.append(launch_once(checkpoint, env))
        last = runs[-1]
        log(f"run {i + 1}: window on screen after {last['window_on_screen_s']:.2f} s, model ready after {last['model_ready_s']:.2f} s")
    summary = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
    return {
        "what": "seconds from launching zipmap-studio to its window on screen and to its model ready (medians)",
        "checkpoint": checkpoint or "the bundled model",
        "platform": os.environ.get("QT_QPA_PLATFORM", "default"),
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "summary": summary,
    }
