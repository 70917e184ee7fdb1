"""`python -m app.soak VIDEO --json OUT`: the studio driven as a long session drives it, for
`zipmap bench soak` (which makes the video, runs this under the display it has, and reads OUT).

A live stream of every frame of VIDEO, window by window, then RENDERS novel views from a virtual
camera that keeps moving (each render asked once the previous one is shown), with the process's
resident memory sampled throughout, the scene's own bytes beside it, the threads alive, and
every message the window shows. What a user would see go wrong, counted: an error message, a
thread left behind, memory that grows while nothing new is held."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from zipmap_core.bench.micro import rss_mb

from .main_window import MainWindow

SAMPLE_MS = 250
FAILURE_WORDS = ("failed", "error", "bug", "could not", "stopped")


def python_threads() -> int:
    """Threads Python started (a pool's Qt worker that once ran Python shows up as a "dummy"
    thread, alive as long as the pool keeps it: not ours to count)."""
    return sum(type(t).__name__ != "_DummyThread" for t in threading.enumerate())


def scene_mb(window: MainWindow) -> float:
    """The bytes the current scene itself holds (pictures, depth, cameras, point maps, state)."""
    recon = window.state.recon
    return 0.0 if recon is None else recon.held_bytes() / 2**20


class Soak:
    """Drives one window through the stream and the renders, sampling as it goes."""

    def __init__(self, window: MainWindow, video: str, window_frames: int, renders: int, resolution: int) -> None:
        self.window, self.video, self.window_frames, self.renders = window, video, window_frames, renders
        self.resolution = resolution
        self.samples: list[dict] = []
        self.phase = "loading"
        self.rendered = 0
        self.threads: dict[str, int] = {}
        self.started = time.monotonic()
        self.sampler = QTimer()
        self.sampler.setInterval(SAMPLE_MS)
        self.sampler.timeout.connect(self.sample)
        self.sampler.start()

    def sample(self) -> None:
        recon = self.window.state.recon
        self.samples.append(
            {
                "t": round(time.monotonic() - self.started, 3),
                "phase": self.phase,
                "rss_mb": round(rss_mb(), 2),
                "scene_mb": round(scene_mb(self.window), 2),
                "frames": 0 if recon is None else recon.num_frames,
                "renders": self.rendered,
                "threads": python_threads(),
            }
        )

    def start(self) -> None:
        """The stream, once the model has loaded."""
        w = self.window
        if w.state.rec is None:
            QTimer.singleShot(100, self.start)
            return
        from zipmap_core.io.inputs import VideoSampling

        self.threads["before"] = python_threads()
        w.state.set_model_input("crop", self.resolution)
        self.phase = "stream"
        job = w.live.start(self.video, self.window_frames, VideoSampling(fps=None))
        if job is None:
            self.finish("the live stream did not start")
            return
        job.ended.connect(lambda *_: QTimer.singleShot(500, self.render_phase))

    def render_phase(self) -> None:
        """A virtual camera where the eye is, moved and rendered RENDERS times."""
        w = self.window
        self.phase = "renders"
        self.threads["stream_done"] = python_threads()
        w.state.views_changed.connect(self.rendered_one)
        w.cameras.add_from_view()

    def rendered_one(self, views) -> None:
        if views is None or self.phase != "renders":
            return
        self.rendered += 1
        if self.rendered >= self.renders:
            QTimer.singleShot(500, lambda: self.finish(None))
            return
        step = self.rendered % 40
        QTimer.singleShot(0, lambda: self.move(0.2 if step < 20 else -0.2))

    def move(self, forward: float) -> None:
        """The camera turns and steps as a user's would, and its view is asked for."""
        self.window.cameras.move(forward=forward, yaw_deg=3.0)
        self.window.cameras.request_render()

    def finish(self, problem: str | None) -> None:
        self.phase = "done"
        self.sample()
        self.sampler.stop()
        self.threads["end"] = python_threads()
        self.threads["pool_active"] = self.window.jobs.pool.activeThreadCount() + QThreadPool.globalInstance().activeThreadCount()
        self.problem = problem
        QApplication.instance().quit()

    def report(self) -> dict:
        messages = list(self.window.state.messages)
        return {
            "samples": self.samples,
            "renders": self.rendered,
            "frames": self.window.state.recon.num_frames if self.window.state.recon is not None else 0,
            "threads": self.threads,
            "messages": messages,
            "errors": [m for m in messages if any(word in m.lower() for word in FAILURE_WORDS)],
            "problem": getattr(self, "problem", "the session did not finish"),
            "seconds": round(time.monotonic() - self.started, 1),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("--json", required=True)
    p.add_argument("--window", type=int, default=8, help="frames per live window")
    p.add_argument("--renders", type=int, default=300)
    p.add_argument("--resolution", type=int, default=56, help="model image width of the stream")
    p.add_argument("--settings", help="a settings file of its own (default: beside --json)")
    args = p.parse_args(argv)
    import vispy

    vispy.use("pyside6")
    app = QApplication.instance() or QApplication([])
    settings = QSettings(args.settings or str(Path(args.json).with_suffix(".ini")), QSettings.Format.IniFormat)
    settings.setValue("demo_notice_shown", True)  # the first start's box is no part of a soak
    window = MainWindow(None, settings=settings)
    window.loader.ask_video_sampling = False
    window.resize(1280, 800)
    window.show()
    soak = Soak(window, args.video, args.window, args.renders, args.resolution)
    QTimer.singleShot(0, soak.start)
    app.exec()
    report = soak.report()
    window.close()
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    rss = np.array([s["rss_mb"] for s in soak.samples]) if soak.samples else np.zeros(1)
    print(f"soak: {report['frames']} frames, {report['renders']} renders in {report['seconds']} s, peak {rss.max():.0f} MB")
    return 0 if report["problem"] is None and not report["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
