"""Scene files in the window: open and save `.zipmap` (in background jobs) and the Recent menu."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from . import dialogs
from .jobs import Job

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QWidget

    from .job_runner import JobRunner
    from .state import AppState

SCENE_FILTER = "ZipMap scene (*.zipmap)"
RECENT_MAX = 8


class SceneFileController:
    def __init__(self, state: AppState, jobs: JobRunner, settings: QSettings, recent_menu: QMenu, parent: QWidget) -> None:
        self.state, self.jobs, self.settings, self.recent_menu, self.parent = state, jobs, settings, recent_menu, parent
        self._refresh_recent()

    def open_scene_dialog(self) -> None:
        path = dialogs.open_file(self.parent, "Open scene", SCENE_FILTER)
        if path:
            self.open_scene(path)

    def open_scene(self, path: str) -> Job | None:
        """Reads `path` in the background; None when another task runs."""
        from zipmap_core.io.reconstruction import Reconstruction  # torch: imported where a scene is read

        job = Job(lambda progress, cancel: Reconstruction.load(path).ensure_points())
        job.succeeded.connect(lambda recon: (self.state.set_scene(recon), self._add_recent(path)))
        job.failed.connect(lambda msg: self.state.notify(f"Could not open {Path(path).name}:\n{msg}"))
        return job if self.jobs.run(job, "open") else None

    def save_scene_dialog(self) -> None:
        if self.state.recon is None:
            self.state.notify("There is no scene to save yet.")
            return
        path = dialogs.save_file(self.parent, "Save scene", "scene.zipmap", SCENE_FILTER)
        if path:
            recon = self.state.recon
            job = Job(lambda progress, cancel: recon.save(path))
            job.succeeded.connect(lambda p: (self._add_recent(str(p)), self.state.say(f"saved {p}")))
            job.failed.connect(lambda msg: self.state.notify(f"Could not save the scene:\n{msg}"))
            self.jobs.run(job, "save")

    def _add_recent(self, path: str) -> None:
        settings = self.settings
        recent = [p for p in (settings.value("recent", []) or []) if p != path]
        settings.setValue("recent", [path, *recent][:RECENT_MAX])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.value("recent", []) or []:
            act = QAction(path, self.parent)
            act.triggered.connect(lambda *_, p=path: self.open_scene(p))
            self.recent_menu.addAction(act)
