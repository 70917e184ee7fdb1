"""ZipMap Studio's main window: inputs, model, the 3D view, novel views, menus and status."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from zipmap_core.io.atomic import atomic_path
from zipmap_core.io.checkpoints import load_checkpoint
from zipmap_core.io.exporters import FORMATS, export
from zipmap_core.io.inputs import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    InputSet,
    VideoSampling,
    is_video,
    load_inputs,
)
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.pipeline.camera_path import (
    look_at,
    orbit_path,
    path_through,
    render_path,
)
from zipmap_core.pipeline.reconstructor import Reconstructor
from zipmap_core.pipeline.splat import splat_render
from zipmap_core.resources import BUNDLED_MODEL, RESOURCES

from .jobs import Job, LatestOnly
from .novel_view import NovelViewPanel
from .panels import InputPanel, ModelPanel, StageProgress, ViewPanel
from .viewer3d import SceneView, VirtualCamera

APP_NAME = "ZipMap Studio"
ICON = RESOURCES / "icons" / "zipmap-studio.svg"
SCENE_FILTER = "ZipMap scene (*.zipmap)"
# a press and release closer than this is a click, not an orbit drag
CLICK_SLOP_PX = 4
NOVEL_DOCK_MIN_PX = 240  # default height of the novel-view dock when no layout was saved


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """PNG through the engine's atomic writer (8-bit RGB(A) or 16-bit grey)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


def reserve_gui_core() -> None:
    """Leaves one core to the GUI thread: with every core in torch's pool the OS scheduler can
    starve the event loop for hundreds of milliseconds on small machines."""
    import os

    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


class MainWindow(QMainWindow):
    def __init__(self, checkpoint: str | None = None, settings: QSettings | None = None) -> None:
        super().__init__()
        reserve_gui_core()
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(QIcon(str(ICON)))
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("ZipMap", "ZipMap Studio")
        self._layout_restored = False
        self.frames: list[Frame] = []
        self.recon: Reconstruction | None = None
        self.rec: Reconstructor | None = None
        self.job: Job | None = None
        self.messages: list[str] = []  # every user-facing message, newest last (tests read it)
        self.ask_video_sampling = True
        self.virtual_cameras: list[VirtualCamera] = []
        self.selected_virtual = -1

        self.view = SceneView()
        self.inputs = InputPanel()
        self.model_panel = ModelPanel()
        self.view_panel = ViewPanel()
        self.novel = NovelViewPanel()
        self.progress = StageProgress()
        self.status_device = QLabel("")
        self.status_info = QLabel("")
        self.renderer = LatestOnly(self._render_virtual)
        self.renderer.result.connect(self._show_render)
        self.renderer.failed.connect(lambda msg: self.notify(f"Rendering failed: {msg}"))

        self._build_layout()
        self._build_menus()
        self._connect()
        self.view.canvas.events.mouse_double_click.connect(self._on_double_click)
        self.view.canvas.events.mouse_press.connect(self._on_mouse_press)
        self.view.canvas.events.mouse_release.connect(self._on_mouse_release)
        QTimer.singleShot(0, lambda: self.load_model(checkpoint or self._remembered_checkpoint(), background=False))

    # ---- layout -----------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        self.setCentralWidget(self.view.widget)
        left = QWidget()
        col = QVBoxLayout(left)
        col.addWidget(self.inputs, 1)
        col.addWidget(self.model_panel)
        col.addWidget(self.view_panel)
        dock = QDockWidget("Scene", self)
        dock.setObjectName("scene_dock")  # saveState() names docks by objectName
        dock.setWidget(left)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.novel_dock = QDockWidget("Novel views", self)
        self.novel_dock.setObjectName("novel_dock")
        self.novel_dock.setWidget(self.novel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.novel_dock)
        # the scene column runs the full height, so the novel views share only the 3D view's
        # height and can grow (the column's own minimum height would cap them otherwise)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        bar = self.statusBar()
        bar.addWidget(self.status_info, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.status_device)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(lambda *_: slot())
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open images…", self.open_images_dialog, QKeySequence.StandardKey.Open)
        self._action(f, "Open folder…", self.open_folder_dialog, "Ctrl+Shift+O")
        self._action(f, "Open video…", self.open_video_dialog)
        f.addSeparator()
        self._action(f, "Open scene…", self.open_scene_dialog, "Ctrl+Alt+O")
        self._action(f, "Save scene…", self.save_scene_dialog, QKeySequence.StandardKey.Save)
        self.recent_menu = f.addMenu("Recent")
        self._refresh_recent()
        f.addSeparator()
        exp = f.addMenu("Export")
        for fmt in FORMATS:
            self._action(exp, f"{fmt.upper() if len(fmt) == 3 else fmt.capitalize()}…", lambda fmt=fmt: self.export_dialog(fmt))
        self._action(f, "Save screenshot…", self.screenshot_dialog, "Ctrl+Shift+S")
        f.addSeparator()
        self._action(f, "Load checkpoint…", self.load_checkpoint_dialog)
        self._action(f, "Get official weights…", self.download_dialog)
        f.addSeparator()
        self._action(f, "Quit", self.close, QKeySequence.StandardKey.Quit)
        r = bar.addMenu("&Reconstruct")
        self._action(r, "Reconstruct", self.reconstruct, "Ctrl+R")
        self._action(r, "Cancel", self.cancel, "Esc")
        v = bar.addMenu("&View")
        self._action(v, "Reset view", self.view.reset_view, "R")
        self._action(v, "Virtual camera from view", self.add_virtual_from_view, "V")
        self._action(v, "Next input camera", self._next_camera, "N")
        h = bar.addMenu("&Help")
        self._action(h, "About", self.about)

    def _connect(self) -> None:
        mp, vp = self.model_panel, self.view_panel
        mp.reconstruct_button.clicked.connect(self.reconstruct)
        mp.cancel_button.clicked.connect(self.cancel)
        mp.load_button.clicked.connect(self.load_checkpoint_dialog)
        mp.fast_bf16.setChecked(self.settings.value("fast_cpu_bf16", False, type=bool))
        mp.fast_bf16.toggled.connect(lambda on: self.settings.setValue("fast_cpu_bf16", on))
        vp.confidence.valueChanged.connect(self.view.set_confidence_percentile)
        vp.confidence.valueChanged.connect(lambda *_: self._update_status())
        vp.point_size.valueChanged.connect(self.view.set_point_size)
        vp.color_mode.currentTextChanged.connect(self.view.set_color_mode)
        vp.show_images.toggled.connect(self.view.set_show_images)
        vp.show_guides.toggled.connect(self.view.set_show_guides)
        vp.fly.toggled.connect(self.view.set_fly_mode)
        vp.reset.clicked.connect(self.view.reset_view)
        self.inputs.removed.connect(self.remove_frames)
        self.inputs.visibility_changed.connect(self.view.set_frame_visible)
        self.novel.add_from_view.connect(self.add_virtual_from_view)
        self.novel.selection_changed.connect(self.select_virtual)
        self.novel.settings_changed.connect(self._virtual_settings_changed)
        self.novel.remove_requested.connect(self.remove_virtual)
        self.novel.save_requested.connect(self.save_novel_view_dialog)
        self.novel.path_requested.connect(self.render_path_dialog)
        self.view.canvas.events.mouse_move.connect(self._on_mouse_drag)

    # ---- messages ---------------------------------------------------------------------------------
    def notify(self, text: str, modal: bool = False) -> None:
        """Status-bar line plus a non-modal message box (modal only where the user must decide)."""
        self.messages.append(text)
        self.status_info.setText(text.splitlines()[0])
        box = QMessageBox(QMessageBox.Icon.Information, APP_NAME, text, parent=self)
        box.setModal(modal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show() if not modal else box.exec()

    def _update_status(self) -> None:
        if self.recon is None:
            self.status_info.setText("drop photos, a folder or a video to start")
            return
        t = self.recon.timings.get("total_s")
        last = f"last run {t:.2f} s · " if t else ""
        self.status_info.setText(f"{self.recon.num_frames} frames · {last}{self.view.drawn_points:,} points shown")

    # ---- model ------------------------------------------------------------------------------------
    def _remembered_checkpoint(self) -> str | None:
        """The checkpoint last chosen in the app, unless it has since been moved or deleted."""
        path = str(self.settings.value("checkpoint", "") or "")
        if path and not Path(path).is_file():
            self.notify(f"The last used checkpoint {path} is gone; using the bundled model.")
            self.settings.remove("checkpoint")
            return None
        return path or None

    def load_model(self, path: str | None, background: bool = True, remember: bool = False) -> None:
        """Load a checkpoint; `remember` (choices made in the app, not on the command line) keeps it
        as the default of the next start."""
        path = path or (str(BUNDLED_MODEL) if BUNDLED_MODEL.exists() else None)
        if path is None:
            self.notify("No model: the bundled model is missing. Use File ▸ Load checkpoint…")
            return
        device = self.model_panel.device.currentText()

        def work(progress, cancel):
            loaded = load_checkpoint(path)
            rec = Reconstructor(loaded.model, device, loaded.description, loaded.variant)
            rec.warm_up()
            return rec

        if not background:
            try:
                self._model_loaded(work(None, None), path, remember)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.notify(f"Could not load {Path(path).name}:\n{exc}")
            return
        job = Job(work)
        job.succeeded.connect(lambda rec: self._model_loaded(rec, path, remember))
        job.failed.connect(lambda msg: self.notify(f"Could not load {Path(path).name}:\n{msg}"))
        self.status_info.setText(f"loading {Path(path).name}…")
        self._keep = job.start()

    def _model_loaded(self, rec: Reconstructor, path: str, remember: bool) -> None:
        self.rec = rec
        cfg = rec.cfg
        self.model_panel.show_model(rec.description, rec.variant, cfg.img_size, rec.model.can_render)
        self.status_device.setText(f"device: {rec.device.type}")
        if remember:
            self.settings.setValue("checkpoint", str(path))
        self.novel.width_px.setValue(cfg.img_size)
        self.novel.height_px.setValue(max(14, round(cfg.img_size * 0.75 / 14) * 14))
        can = "renders novel views from its scene state" if rec.model.can_render else (
            "has no novel-view head: virtual cameras show the point-cloud fallback; load "
            "checkpoint_state_query.pt or the bundled model for scene-state renders")
        self.status_info.setText(f"model: {rec.description} ({rec.variant}) — {can}")

    def load_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.pt *.pth *.safetensors);;All files (*)")
        if path:
            self.load_model(path, remember=True)

    def download_dialog(self) -> None:
        from zipmap_core.io.download import download_official

        variant, ok = QInputDialog.getItem(self, "Get official weights", "Checkpoint (≈5.5 GB each):",
                                           ["state_query", "aff_inv", "with_ref_view", "online"], 0, False)
        if not ok:
            return
        job = Job(lambda progress, cancel: download_official(variant))
        job.succeeded.connect(lambda path: self.load_model(str(path), remember=True))
        job.failed.connect(lambda msg: self.notify(f"Download failed:\n{msg}"))
        job.cancelled.connect(lambda: self.notify("Download cancelled."))
        self._run_job(job, "download")

    # ---- inputs ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        scenes = [p for p in paths if p.endswith(".zipmap")]
        if scenes:
            self.open_scene(scenes[0])
        others = [p for p in paths if not p.endswith(".zipmap")]
        if others:
            self.add_inputs(others)
        event.acceptProposedAction()

    def open_images_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", f"Images ({pattern});;All files (*)")
        if paths:
            self.add_inputs(paths)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder")
        if path:
            self.add_inputs([path])

    def open_video_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(VIDEO_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", f"Videos ({pattern})")
        if path:
            self.add_inputs([path])

    def video_sampling(self, paths: list[str]) -> VideoSampling | None:
        """Asks how to sample videos; without asking (tests, scripts) one frame per second."""
        if not any(is_video(Path(p)) for p in paths) or not self.ask_video_sampling:
            return VideoSampling(fps=1.0)
        choice, ok = QInputDialog.getItem(self, "Video sampling", "Take frames:",
                                          ["1 per second", "2 per second", "32 evenly spaced", "64 evenly spaced"], 0, False)
        if not ok:
            return None
        number = float(choice.split()[0])
        return VideoSampling(fps=number) if "second" in choice else VideoSampling(fps=None, max_frames=int(number))

    def add_inputs(self, paths: list[str]) -> None:
        sampling = self.video_sampling(paths)
        if sampling is None:
            return
        job = Job(lambda progress, cancel: load_inputs(paths, sampling, should_stop=lambda: cancel.cancelled))
        job.succeeded.connect(self._inputs_loaded)
        job.failed.connect(lambda msg: self.notify(f"Nothing could be loaded.\n{msg}"))
        self._run_job(job, "load")

    def _inputs_loaded(self, loaded: InputSet) -> None:
        self.frames += loaded.frames
        self.inputs.set_frames(self.frames)
        if loaded.skipped:
            listing = "\n".join(f"• {name}: {reason}" for name, reason in loaded.skipped)
            self.notify(f"{len(loaded.skipped)} file(s) could not be used and were skipped:\n{listing}")
        self.status_info.setText(f"{len(self.frames)} images loaded — press Reconstruct (Ctrl+R)")

    def remove_frames(self, rows: list[int]) -> None:
        self.frames = [f for i, f in enumerate(self.frames) if i not in set(rows)]
        self.inputs.set_frames(self.frames)

    # ---- reconstruction --------------------------------------------------------------------------
    def _run_job(self, job: Job, name: str) -> None:
        if self.job is not None and self.job.running:
            self.notify("Another task is running; cancel it first.")
            return
        self.job = job
        job.progress.connect(self.progress.update_stage)
        job.ended.connect(self._job_ended)
        self.model_panel.cancel_button.setEnabled(True)
        self.model_panel.reconstruct_button.setEnabled(False)
        self.progress.update_stage(name, 0, 0)
        job.start()

    def _job_ended(self) -> None:
        self.model_panel.cancel_button.setEnabled(False)
        self.model_panel.reconstruct_button.setEnabled(True)
        self.progress.idle()

    def reconstruct(self) -> None:
        if self.rec is None:
            self.notify("No model is loaded.")
            return
        if not self.frames:
            self.notify("Add photos, a folder or a video first (drag them onto the window).")
            return
        rec, frames = self.rec, list(self.frames)
        rec.fast_cpu_bf16 = self.model_panel.fast_bf16.isChecked()
        mode = self.model_panel.mode.currentText()
        resolution = int(self.model_panel.resolution.value()) // 14 * 14

        def work(progress, cancel):
            return rec.reconstruct(InputSet(frames), mode=mode, resolution=resolution, progress=progress, cancel=cancel)

        job = Job(work)
        job.succeeded.connect(self.set_reconstruction)
        job.failed.connect(lambda msg: self.notify(f"Reconstruction failed; the previous scene is kept.\n{msg}"))
        job.cancelled.connect(lambda: self.notify("Reconstruction cancelled; the previous scene is kept."))
        self._run_job(job, "reconstruct")

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    def set_reconstruction(self, recon: Reconstruction) -> None:
        self.recon = recon
        self.view.set_reconstruction(recon)
        self.view.set_show_guides(self.view_panel.show_guides.isChecked())
        self.view.set_confidence_percentile(self.view_panel.confidence.value())
        self.virtual_cameras, self.selected_virtual = [], -1
        self._refresh_virtual()
        self._update_status()

    # ---- scene files -----------------------------------------------------------------------------
    def open_scene_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scene", "", SCENE_FILTER)
        if path:
            self.open_scene(path)

    def open_scene(self, path: str) -> None:
        job = Job(lambda progress, cancel: Reconstruction.load(path))
        job.succeeded.connect(lambda recon: (self.set_reconstruction(recon), self._add_recent(path)))
        job.failed.connect(lambda msg: self.notify(f"Could not open {Path(path).name}:\n{msg}"))
        self._run_job(job, "open")

    def save_scene_dialog(self) -> None:
        if self.recon is None:
            self.notify("There is no scene to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save scene", "scene.zipmap", SCENE_FILTER)
        if path:
            recon = self.recon
            job = Job(lambda progress, cancel: recon.save(path))
            job.succeeded.connect(lambda p: (self._add_recent(str(p)), self.status_info.setText(f"saved {p}")))
            job.failed.connect(lambda msg: self.notify(f"Could not save the scene:\n{msg}"))
            self._run_job(job, "save")

    def _add_recent(self, path: str) -> None:
        recent = [p for p in (self.settings.value("recent", []) or []) if p != path]
        self.settings.setValue("recent", [path, *recent][:8])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.value("recent", []) or []:
            act = QAction(path, self)
            act.triggered.connect(lambda *_, p=path: self.open_scene(p))
            self.recent_menu.addAction(act)

    # ---- exports and screenshots -----------------------------------------------------------------
    def export_dialog(self, fmt: str) -> None:
        if self.recon is None:
            self.notify("There is no scene to export yet.")
            return
        if fmt in ("colmap", "nerfstudio"):
            path = QFileDialog.getExistingDirectory(self, f"Export {fmt} into a new folder")
            path = str(Path(path) / f"{fmt}_export") if path else ""
        else:
            suffix = {"ply": "ply", "glb": "glb", "mesh": "ply"}[fmt]
            path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt}", f"scene.{suffix}")
        if path:
            self.export_to(fmt, path)

    def export_to(self, fmt: str, path: str) -> Job:
        recon, pct = self.recon, float(self.view_panel.confidence.value())
        job = Job(export, recon, fmt, path, percentile=pct)
        job.succeeded.connect(lambda p: self.status_info.setText(f"exported {fmt}: {p}"))
        job.failed.connect(lambda msg: self.notify(f"Export failed; nothing was written.\n{msg}"))
        job.cancelled.connect(lambda: self.notify("Export cancelled; nothing was written."))
        self._run_job(job, f"export {fmt}")
        return job

    def screenshot_dialog(self) -> None:
        scale, ok = QInputDialog.getItem(self, "Save screenshot", "Size:", ["1x (window)", "2x", "4x"], 0, False)
        if not ok:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "screenshot.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path, float(scale[0]))

    def save_screenshot(self, path: str | Path, scale: float = 1.0) -> Path:
        image = self.view.render_image(scale)
        return save_png(image[..., :3].copy(), path)

    # ---- virtual cameras and novel views ---------------------------------------------------------
    def add_virtual_camera(self, c2w: np.ndarray) -> None:
        h, w = self.novel.size()
        cam = VirtualCamera(np.asarray(c2w, np.float32)[:3, :4], float(self.novel.fov.value()), w, h,
                            f"virtual {len(self.virtual_cameras) + 1}")
        self.virtual_cameras.append(cam)
        self.selected_virtual = len(self.virtual_cameras) - 1
        self._refresh_virtual()
        self.request_render()

    def add_virtual_from_view(self) -> None:
        if self.recon is None:
            return
        self.add_virtual_camera(self.view.view_c2w())

    def place_virtual_at(self, canvas_xy: tuple[float, float]) -> bool:
        """Camera at the current viewpoint looking at the point under the cursor."""
        point = self.view.pick_point(canvas_xy)
        if point is None:
            return False
        eye, _ = self.view.camera_pose()
        self.add_virtual_camera(look_at(eye, point))
        return True

    def select_virtual(self, index: int, from_list: bool = True) -> None:
        self.selected_virtual = index
        self._refresh_virtual(names=not from_list)
        self.request_render()

    def select_virtual_at(self, canvas_xy: tuple[float, float]) -> bool:
        """Selects the virtual camera whose frustum was clicked (the list follows)."""
        index = self.view.virtual_at(canvas_xy)
        if index is None:
            return False
        if index != self.selected_virtual:
            self.select_virtual(index, from_list=False)
        return True

    def remove_virtual(self, index: int) -> None:
        if 0 <= index < len(self.virtual_cameras):
            del self.virtual_cameras[index]
            self.selected_virtual = min(self.selected_virtual, len(self.virtual_cameras) - 1)
            self._refresh_virtual()

    def move_virtual(self, forward: float = 0, right: float = 0, down: float = 0, yaw_deg: float = 0) -> None:
        """Moves the selected virtual camera in its own frame (steps of 5% of the scene depth)."""
        if not (0 <= self.selected_virtual < len(self.virtual_cameras)):
            return
        cam = self.virtual_cameras[self.selected_virtual]
        step = 0.05 * self.view._scale
        c2w = cam.c2w.copy()
        c2w[:, 3] += step * (forward * c2w[:, 2] + right * c2w[:, 0] + down * c2w[:, 1])
        if yaw_deg:
            a = math.radians(yaw_deg)
            rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], np.float32)
            c2w[:, :3] = c2w[:, :3] @ rot
        cam.c2w = c2w
        self._refresh_virtual(names=False)
        if self.novel.live.isChecked():
            self.request_render()

    def _virtual_settings_changed(self) -> None:
        if 0 <= self.selected_virtual < len(self.virtual_cameras):
            cam = self.virtual_cameras[self.selected_virtual]
            cam.fov_y_deg = float(self.novel.fov.value())
            cam.height, cam.width = self.novel.size()
            self._refresh_virtual(names=False)
            self.request_render()

    def _refresh_virtual(self, names: bool = True) -> None:
        if names:
            self.novel.set_camera_names([c.name for c in self.virtual_cameras], self.selected_virtual)
        self.view.set_virtual_cameras(self.virtual_cameras, self.selected_virtual)

    def request_render(self) -> None:
        if self.recon is None or not (0 <= self.selected_virtual < len(self.virtual_cameras)):
            return
        cam = self.virtual_cameras[self.selected_virtual]
        key = (self.selected_virtual, time.monotonic())
        self.renderer.request(key, self.rec, self.recon, cam.c2w.copy(), cam.intrinsics(), (cam.height, cam.width))

    @staticmethod
    def _render_virtual(rec, recon, c2w, k, size):
        """Scene-state render when the model can be queried, else the labelled point-cloud fallback."""
        if rec is not None and rec.model.can_render and recon.state is not None:
            return "scene state", rec.render_views(recon, c2w[None], k[None], size)
        return "point-cloud fallback (this model has no novel-view head)", splat_render(recon, c2w[None], k[None], size)

    def _show_render(self, key, value) -> None:
        label, views = value
        self.novel.show_views(views, f"{label}: {views.rgb.shape[2]}x{views.rgb.shape[1]}")

    def save_novel_view_dialog(self) -> None:
        if self.novel.last is None:
            self.notify("Place a virtual camera first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save novel view", "novel_view.png", "PNG (*.png)")
        if path:
            self.save_novel_view(path)

    def save_novel_view(self, path: str | Path) -> list[Path]:
        """RGB PNG, depth as 16-bit PNG (millimetres of scene units, scale in a JSON) and .npy."""
        views = self.novel.last
        assert views is not None
        path = Path(path)
        stem = path.with_suffix("")
        rgb = (np.clip(views.rgb[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        depth = views.depth[0]
        scale = 1000.0 if np.nanmax(depth) * 1000 < 65535 else 65535 / float(np.nanmax(depth))
        out = [save_png(rgb, path), save_png((np.clip(depth * scale, 0, 65535) + 0.5).astype(np.uint16), f"{stem}_depth.png")]
        with atomic_path(f"{stem}_depth.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, depth.astype(np.float32))
        with atomic_path(f"{stem}_depth.json") as tmp:
            tmp.write_text(json.dumps({"depth_png_units_per_scene_unit": scale}))
        return out + [Path(f"{stem}_depth.npy")]

    def render_path_dialog(self) -> None:
        if self.recon is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Render camera path into folder")
        if not folder:
            return
        cams = self.virtual_cameras
        poses = path_through([c.c2w for c in cams], 60) if len(cams) >= 2 else orbit_path(self.recon, 60)
        h, w = self.novel.size()
        k = VirtualCamera(np.eye(4)[:3], float(self.novel.fov.value()), w, h).intrinsics()
        job = Job(render_path, self.rec, self.recon, poses, k, (h, w), folder)
        job.succeeded.connect(lambda p: self.status_info.setText(f"rendered path to {p}"))
        job.failed.connect(lambda msg: self.notify(f"Path rendering failed:\n{msg}"))
        self._run_job(job, "render path")

    # ---- mouse and keys ---------------------------------------------------------------------------
    def _on_double_click(self, event) -> None:
        index = self.view.frame_at(tuple(event.pos[:2]))
        if index is not None:
            self.view.look_through(index)

    def _on_mouse_press(self, event) -> None:
        if event.button == 1 and "Control" in [k.name for k in event.modifiers]:
            self.place_virtual_at(tuple(event.pos[:2]))

    def _on_mouse_release(self, event) -> None:
        """A plain left click (no drag) on a virtual camera's frustum selects it; a drag orbits."""
        press = getattr(event, "press_event", None)
        if event.button != 1 or press is None or event.modifiers:
            return
        if np.linalg.norm(np.asarray(event.pos[:2], float) - np.asarray(press.pos[:2], float)) <= CLICK_SLOP_PX:
            self.select_virtual_at(tuple(event.pos[:2]))

    def _on_mouse_drag(self, event) -> None:
        """Alt+left drag moves the selected virtual camera across its image plane, Alt+right drag
        forward and back; the turntable ignores modified left and right drags, so the view stays."""
        last = getattr(event, "last_event", None)
        buttons = getattr(event, "buttons", None) or []
        if last is None or not buttons or "Alt" not in [k.name for k in event.modifiers]:
            return
        dx, dy = (np.asarray(event.pos[:2], float) - np.asarray(last.pos[:2], float)) / max(self.view.canvas.size[0], 1)
        # a drag across the whole canvas moves the camera by the scene's scale (20 steps of 5 %)
        if 1 in buttons:
            self.move_virtual(right=20 * dx, down=20 * dy)
        elif 2 in buttons:
            self.move_virtual(forward=-20 * dy)

    def _next_camera(self) -> None:
        if self.recon is not None:
            self._camera_index = (getattr(self, "_camera_index", -1) + 1) % self.recon.num_frames
            self.view.look_through(self._camera_index)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        moves = {Qt.Key.Key_I: dict(forward=1), Qt.Key.Key_K: dict(forward=-1), Qt.Key.Key_J: dict(right=-1),
                 Qt.Key.Key_L: dict(right=1), Qt.Key.Key_U: dict(down=-1), Qt.Key.Key_O: dict(down=1),
                 Qt.Key.Key_Comma: dict(yaw_deg=-5), Qt.Key.Key_Period: dict(yaw_deg=5)}
        if event.key() in moves:
            self.move_virtual(**moves[event.key()])
        else:
            super().keyPressEvent(event)

    # ---- help ---------------------------------------------------------------------------------------
    def about_text(self) -> str:
        import PySide6
        import torch
        import vispy

        import zipmap_core

        return (f"{APP_NAME} {zipmap_core.__version__}\nZipMap (CVPR 2026) reconstruction: photos in, 3D scene and "
                f"queryable scene state out.\n\nPython {platform.python_version()} · PyTorch {torch.__version__} · "
                f"PySide6 {PySide6.__version__} · VisPy {vispy.__version__}")

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", self.about_text())

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        """The first show restores the last session's window and docks; without one the novel
        views get a third of the height, enough to read RGB, depth and confidence side by side."""
        super().showEvent(event)
        if self._layout_restored:
            return
        self._layout_restored = True
        geometry, state = self.settings.value("window_geometry"), self.settings.value("window_state")
        if geometry is not None and state is not None:
            self.restoreGeometry(geometry)
            self.restoreState(state)
        else:
            # deferred: the dock area has its size only once the first layout pass has run
            QTimer.singleShot(0, self._size_novel_dock)

    def _size_novel_dock(self) -> None:
        self.resizeDocks([self.novel_dock], [max(NOVEL_DOCK_MIN_PX, self.height() // 3)], Qt.Orientation.Vertical)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.cancel()
        self.settings.setValue("window_geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        super().closeEvent(event)


def main_window_app() -> QApplication:
    return QApplication.instance() or QApplication([])
