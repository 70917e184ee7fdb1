"""Headless use of the app from the command line: load inputs, reconstruct, frame the scene,
save a screenshot and quit. Drives the same window slots a user would click."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication


class ScriptedRun:
    def __init__(self, window, inputs: list[str], screenshot: str | None, scale: float, quit_after: bool, status: dict) -> None:
        self.window, self.inputs = window, inputs
        self.screenshot, self.scale, self.quit_after, self.status = screenshot, scale, quit_after, status
        window.loader.ask_video_sampling = False

    def start(self) -> None:
        w = self.window
        if len(self.inputs) == 1 and self.inputs[0].endswith(".zipmap"):
            w.scenes.open_scene(self.inputs[0])
            w.jobs.current.succeeded.connect(lambda *_: QTimer.singleShot(200, self.finish))
            w.jobs.current.failed.connect(self.fail)
            return
        w.loader.add_inputs(self.inputs)
        w.jobs.current.succeeded.connect(lambda *_: QTimer.singleShot(0, self.reconstruct))
        w.jobs.current.failed.connect(self.fail)

    def reconstruct(self) -> None:
        w = self.window
        if w.rec is None:
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
            path = w.exports.save_screenshot(self.screenshot, self.scale)
            print(f"saved {path}")
        if self.quit_after:
            QApplication.instance().quit()

    def fail(self, message: str) -> None:
        print(f"zipmap-studio: error: {message}", file=sys.stderr)
        self.status["code"] = 2
        if self.quit_after:
            QApplication.instance().quit()
