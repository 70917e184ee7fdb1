"""Headless use of the app from the command line: load inputs, reconstruct, frame the scene,
save a screenshot and quit. Drives the same window slots a user would click."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from zipmap_core.io.inputs import VideoSampling


class ScriptedRun:
    def __init__(
        self,
        window,
        inputs: list[str],
        sampling: VideoSampling,
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
        w.loader.load(self.inputs, sampling=self.sampling)  # this load only: File > Open still asks
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
