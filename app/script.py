"""Headless use of the app from the command line: load inputs, reconstruct, frame the scene,
save a screenshot and quit, driving the same window slots a user would click; and the startup's
timings (`--startup-report`, read by `zipmap bench startup`)."""

from __future__ import annotations

import json
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication


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
        w = self.window
        if len(self.inputs) == 1 and self.inputs[0].endswith(".zipmap"):
            w.scenes.open_scene(self.inputs[0])
            w.jobs.current.succeeded.connect(lambda *_: QTimer.singleShot(200, self.finish))
            w.jobs.current.failed.connect(self.fail)
            return
        from zipmap_core.io.inputs import VideoSampling  # torch: imported once the window is up

        fps, frames = self.sampling  # --fps, --video-frames
        w.loader.load(self.inputs, sampling=VideoSampling(fps=fps, max_frames=frames))  # this load only: File > Open still asks
        w.jobs.current.succeeded.connect(lambda *_: QTimer.singleShot(0, self.reconstruct))
        w.jobs.current.failed.connect(self.fail)

    def reconstruct(self) -> None:
        w = self.window
        classical = w.state.engine == "colmap"  # needs no model
        if w.rec is None and w.models.loading and not classical:  # a model still loading (or downloading): wait for it
            w.models.load_ended.connect(lambda *_: QTimer.singleShot(0, self.reconstruct), check_nargs=False)
            return
        if w.rec is None and not classical:
            self.fail("no model could be loaded")
            return
        w.reconstruct()
        w.jobs.current.succeeded.connect(lambda *_: QTimer.singleShot(200, self.finish))
        w.jobs.current.failed.connect(self.fail)
        w.jobs.current.cancelled.connect(lambda: self.fail("cancelled"))

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
