"""`zipmap bench soak`: the studio over a long session (`python -m app.soak`, run as a child on
the display this runs on): a live stream of every frame of a generated video, then novel views
rendered from a virtual camera that keeps moving, resident memory sampled throughout.

The stream's memory grows with what the scene holds (its frames' pictures, depth and points, in
the 3D view's buffers too); what must not grow is the rest. So the summary's `rss_growth_ratio`
is taken where the scene stands still, over the renders (the mean of their last tenth against
their first tenth, after the first tenth as a warm-up), and the stream's growth is given beside
the scene's own (MB a frame)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path

TIMEOUT_S = 3 * 3600
SIZE = (160, 120)  # the generated video's frames (w, h)


def make_video(path: Path, frames: int, size: tuple[int, int] = SIZE) -> Path:
    """A textured pattern panning sideways: every frame differs, and overlaps the last."""
    import cv2

    rng = np.random.default_rng(0)
    w, h = size
    noise = (rng.random((h, w * 4, 3)) * 255).astype(np.uint8)
    strip = cv2.GaussianBlur(noise, (5, 5), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, size)
    if not writer.isOpened():
        raise InputError("OpenCV cannot write an mp4v video here")
    for i in range(frames):
        x = int(i * 1.3) % (w * 3)
        writer.write(np.ascontiguousarray(strip[:, x : x + w]))
    writer.release()
    return path


def growth_ratio(values: list[float]) -> float:
    """The mean of the last tenth against the mean of the first tenth, after the first tenth."""
    v = np.asarray(values, np.float64)[len(values) // 10 :]
    tenth = max(1, len(v) // 10)
    return float(v[-tenth:].mean() / v[:tenth].mean()) if len(v) else float("nan")


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    samples = raw["samples"]
    renders = [s for s in samples if s["phase"] == "renders"]
    stream = [s for s in samples if s["phase"] == "stream" and s["frames"] > 0]
    per_frame = {}
    if len(stream) > 2:
        frames = np.array([s["frames"] for s in stream], np.float64)
        for key in ("rss_mb", "scene_mb"):
            per_frame[key] = float(np.polyfit(frames, [s[key] for s in stream], 1)[0])
    threads = raw["threads"]
    return {
        "frames": raw["frames"],
        "renders": raw["renders"],
        "seconds": raw["seconds"],
        "rss_growth_ratio": growth_ratio([s["rss_mb"] for s in renders]),
        "peak_rss_mb": max((s["rss_mb"] for s in samples), default=0.0),
        "stream_rss_mb_per_frame": per_frame.get("rss_mb"),
        "stream_scene_mb_per_frame": per_frame.get("scene_mb"),
        "errors": len(raw["errors"]),
        "threads_left": threads.get("end", 0) - threads.get("before", 0) + threads.get("pool_active", 0),
        "problem": raw["problem"],
    }


def soak(frames: int, renders: int, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        raise InputError("the soak drives the studio's window: run it on a desktop, or under xvfb-run")
    with tempfile.TemporaryDirectory(prefix="zipmap-soak-") as tmp:
        video = make_video(Path(tmp) / "soak.mp4", frames)
        raw_path = Path(tmp) / "soak_raw.json"
        cmd = [sys.executable, "-m", "app.soak", str(video), "--json", str(raw_path), "--renders", str(renders)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "QT_API": "pyside6"})
        if not raw_path.exists():
            raise RuntimeError(f"the soak ended without a report (exit {done.returncode}):\n{done.stderr[-2000:]}")
        raw = json.loads(raw_path.read_text())
    summary = summarise(raw)
    summary["traceback"] = "Traceback" in done.stderr
    log(done.stdout.strip())
    result = {
        "what": "the studio for a long session: a live stream of a generated video, then novel views from a moving camera; "
        "rss_growth_ratio over the renders (last tenth against first, after a tenth of warm-up)",
        "machine": {"cpus": os.cpu_count(), "platform": os.environ.get("QT_QPA_PLATFORM", "default")},
        "summary": summary,
        "samples": raw["samples"],
        "messages": raw["messages"],
        "threads": raw["threads"],
    }
    plot(result, Path(out_dir) / "soak.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] for s in samples]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [s["rss_mb"] for s in samples], label="resident memory")
    ax.plot(t, [s["scene_mb"] for s in samples], label="the scene's own arrays")
    starts = [s["t"] for s in samples if s["phase"] == "renders"]
    if starts:
        ax.axvline(starts[0], color="grey", linestyle=":", label="renders begin")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MB")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
