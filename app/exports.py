"""Everything the window writes for the user to take elsewhere: exports (PLY, GLB, mesh, COLMAP,
nerfstudio) and screenshots. The writing is the engine's (atomic, verified); this is the asking."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtWidgets import QInputDialog

from zipmap_core.io.atomic import atomic_path

from . import dialogs
from .jobs import Job

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from .job_runner import JobRunner
    from .state import AppState
    from .viewer3d import SceneView


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """PNG through the engine's atomic writer (8-bit RGB(A) or 16-bit grey)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


def qimage_to_array(image) -> np.ndarray:
    """QImage -> uint8 RGB [H, W, 3] (copied)."""
    from PySide6.QtGui import QImage

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = rgb.height(), rgb.width(), rgb.bytesPerLine()
    return np.frombuffer(rgb.constBits(), np.uint8, count=h * stride).reshape(h, stride)[:, : 3 * w].reshape(h, w, 3).copy()


def export_scene(*args, **kwargs) -> Path:
    """The engine's `export`, imported where an export runs: trimesh and torch would otherwise
    load before the window is on screen."""
    from zipmap_core.io.exporters import export

    return export(*args, **kwargs)


class ExportController:
    def __init__(self, state: AppState, jobs: JobRunner, view: SceneView, parent: QWidget) -> None:
        self.state, self.jobs, self.view, self.parent = state, jobs, view, parent

    def export_dialog(self, fmt: str) -> None:
        if self.state.recon is None:
            self.state.notify("There is no scene to export yet.")
            return
        if fmt in ("colmap", "nerfstudio"):
            path = dialogs.folder(self.parent, f"Export {fmt} into a new folder")
            path = str(Path(path) / f"{fmt}_export") if path else ""
        else:
            suffix = {"ply": "ply", "glb": "glb", "mesh": "ply"}[fmt]
            path = dialogs.save_file(self.parent, f"Export {fmt}", f"scene.{suffix}")
        if path:
            self.export_to(fmt, path)

    def export_to(self, fmt: str, path: str) -> Job | None:
        recon, pct = self.state.recon, float(self.state.view.confidence_percentile)
        job = Job(export_scene, recon, fmt, path, percentile=pct)
        job.succeeded.connect(lambda p: self.state.say(f"exported {fmt}: {p}"))
        job.failed.connect(lambda msg: self.state.notify(f"Export failed; nothing was written.\n{msg}"))
        job.cancelled.connect(lambda: self.state.say("export cancelled; nothing was written"))
        return job if self.jobs.run(job, f"export {fmt}") else None

    def screenshot_dialog(self) -> None:
        scale, ok = QInputDialog.getItem(self.parent, "Save screenshot", "Size:", ["1x (window)", "2x", "4x"], 0, False)
        if not ok:
            return
        path = dialogs.save_file(self.parent, "Save screenshot", "screenshot.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path, float(scale[0]))

    def save_screenshot(self, path: str | Path, scale: float = 1.0) -> Path:
        image = self.view.render_image(scale)
        return save_png(image[..., :3].copy(), path)

    def save_window_screenshot(self, path: str | Path, scale: float = 1.0) -> Path:
        """The whole window (panels, novel views, status bar) as the user sees it; Qt composes the
        GL view into the grab. `scale` > 1 is a smooth enlargement, not a re-render."""
        from PySide6.QtCore import Qt

        image = self.parent.grab().toImage()
        if scale != 1.0:
            image = image.scaled(
                round(image.width() * scale),
                round(image.height() * scale),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        return save_png(qimage_to_array(image), path)
