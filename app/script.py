"""Headless use of the app from the command line: load inputs, reconstruct, frame the scene,
save a screenshot and quit, driving the same window slots a user would click; and the startup's
timings (`--startup-report`, read by `zipmap bench startup`)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from .engine_notes import build_engine

if TYPE_CHECKING:
    from .jobs import Job


class ScriptedRun:
    def __init__(
        self,
        window,
        inputs: list[str],
        sampling: tuple[float | None, int | None],
        status: dict,
        screenshot: str | None = None,
        scale: float = 1.0,
        capture: str = "view",
        quit_after: bool = False,
    ) -> None:
        self.window, self.inputs, self.sampling = window, inputs, sampling
        self.screenshot, self.scale, self.capture = screenshot, scale, capture
        self.quit_after, self.status = quit_after, status

    def start(self) -> None:
        """Opens the scene, or loads the inputs and then reconstructs; each step follows the job
        the window's controller returns (None: it did not start, and the window said why)."""
        w = self.window
        if len(self.inputs) == 1 and self.inputs[0].endswith(".zipmap"):
            job = w.scenes.open_scene(self.inputs[0])
            if self.follow(job, "the scene could not be opened"):
                job.succeeded.connect(lambda *_: QTimer.singleShot(200, self.finish))
            return
        from zipmap_core.io.inputs import VideoSampling  # torch: imported once the window is up

        fps, frames = self.sampling  # --fps, --video-frames
        job = w.loader.load(self.inputs, sampling=VideoSampling(fps=fps, max_frames=frames))  # this load only: File > Open still asks
        if self.follow(job, "the inputs could not be loaded"):
            job.succeeded.connect(lambda *_: QTimer.singleShot(0, self.reconstruct))

    def reconstruct(self) -> None:
        w = self.window
        needs_model = build_engine(w.state).capabilities.network_first  # as Reconstruct decides it
        if w.rec is None and w.models.loading and needs_model:  # a model still loading (or downloading): wait for it
            w.models.load_ended.connect(self.after_load)
            return
        if w.rec is None and needs_model:
            self.fail("no model could be loaded")
            return
        job = w.reconstruct()
        if self.follow(job, "the reconstruction did not start"):
            job.succeeded.connect(lambda *_: QTimer.singleShot(200, self.finish))

    def after_load(self, loaded: bool) -> None:
        self.window.models.load_ended.disconnect(self.after_load)
        QTimer.singleShot(0, self.reconstruct)

    def follow(self, job: Job | None, what: str) -> bool:
        """Fails the run with `job`'s failure or cancel; without a job, with the window's word."""
        if job is None:
            said = self.window.messages[-1].splitlines()[0] if self.window.messages else ""
            self.fail(f"{what}: {said}" if said else what)
            return False
        job.failed.connect(self.fail)
        job.cancelled.connect(lambda: self.fail("cancelled"))
        return True

    def finish(self) -> None:
        w = self.window
        w.view.reset_view()
        QApplication.processEvents()
        if self.screenshot:
            if self.capture == "window":
                path = w.exports.save_window_screenshot(self.screenshot, self.scale)
            else:
                path = w.exports.save_screenshot(self.screenshot, self.scale)
            print(f"saved {path}")
        if self.quit_after:
            QApplication.instance().quit()

    def fail(self, message: str) -> None:
        print(f"zipmap-studio: error: {message}", file=sys.stderr)
        self.status["code"] = 2
        if self.quit_after:
            QApplication.instance().quit()


class StartupReport:
    """Notes when the window is first on screen (its native window exposed) and when the model
    loaded in the background is ready; prints them as one JSON line of wall-clock times if asked,
    and quits once the model is ready if asked (`zipmap-studio --exit` without inputs)."""

    POLL_MS = 5

    def __init__(self, window, started: float, print_report: bool, quit_when_ready: bool) -> None:
        self.window, self.print_report, self.quit_when_ready = window, print_report, quit_when_ready
        self.times: dict[str, float | bool] = {"started": started}
        self._poll = QTimer()
        self._poll.setInterval(self.POLL_MS)
        self._poll.timeout.connect(self._check_window)
        self._poll.start()
        window.models.load_ended.connect(self._model_ended)
        if not window.models.loading and window.rec is not None:
            QTimer.singleShot(0, lambda: self._model_ended(True))

    def _check_window(self) -> None:
        handle = self.window.windowHandle()
        if handle is not None and handle.isExposed():
            self.times["window_on_screen"] = time.time()
            self._poll.stop()
            self._finish()

    def _model_ended(self, loaded: bool) -> None:
        self.times.update(model_ready=time.time(), model_loaded=bool(loaded))
        self._finish()

    def _finish(self) -> None:
        if "window_on_screen" not in self.times or "model_ready" not in self.times:
            return
        if self.print_report:
            print(json.dumps(self.times), flush=True)
        if self.quit_when_ready:
            QApplication.instance().quit()
