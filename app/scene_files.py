"""Scene files in the window: open and save `.zipmap` (in background jobs) and the Recent menu."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMenu

from zipmap_core.io.reconstruction import Reconstruction

from .jobs import Job

if TYPE_CHECKING:
    from .main_window import MainWindow

SCENE_FILTER = "ZipMap scene (*.zipmap)"
RECENT_MAX = 8


class SceneFileController:
    def __init__(self, window: MainWindow, recent_menu: QMenu) -> None:
        self.w, self.recent_menu = window, recent_menu
        self._refresh_recent()

    def open_scene_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open scene", "", SCENE_FILTER)
        if path:
            self.open_scene(path)

    def open_scene(self, path: str) -> None:
        job = Job(lambda progress, cancel: Reconstruction.load(path).ensure_points())
        job.succeeded.connect(lambda recon: (self.w.set_reconstruction(recon), self._add_recent(path)))
        job.failed.connect(lambda msg: self.w.notify(f"Could not open {Path(path).name}:\n{msg}"))
        self.w.jobs.run(job, "open")

    def save_scene_dialog(self) -> None:
        if self.w.recon is None:
            self.w.notify("There is no scene to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self.w, "Save scene", "scene.zipmap", SCENE_FILTER)
        if path:
            recon = self.w.recon
            job = Job(lambda progress, cancel: recon.save(path))
            job.succeeded.connect(lambda p: (self._add_recent(str(p)), self.w.status_info.setText(f"saved {p}")))
            job.failed.connect(lambda msg: self.w.notify(f"Could not save the scene:\n{msg}"))
            self.w.jobs.run(job, "save")

    def _add_recent(self, path: str) -> None:
        settings = self.w.settings
        recent = [p for p in (settings.value("recent", []) or []) if p != path]
        settings.setValue("recent", [path, *recent][:RECENT_MAX])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.w.settings.value("recent", []) or []:
            act = QAction(path, self.w)
            act.triggered.connect(lambda *_, p=path: self.open_scene(p))
            self.recent_menu.addAction(act)
