"""ZipMap Studio's main window: inputs, model, the 3D view, novel views, menus and status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from zipmap_core.io.metric import scale_note, units
from zipmap_core.options import EXPORT_FORMATS, STUDIO_WINDOW
from zipmap_core.resources import RESOURCES

from .about import about_text
from .engine_notes import EngineNotes, scene_summary
from .exports import ExportController
from .input_controller import InputController
from .job_runner import JobRunner, show_tasks
from .live import LiveController
from .masks import MaskController
from .measure import MeasureController, MeasurePanel, scale_view
from .model_controller import ModelController
from .novel_view import NovelViewPanel
from .panels import InputPanel, ModelPanel, StageProgress, ViewPanel
from .reconstruct_controller import ReconstructController
from .scene_files import SceneFileController
from .state import AppState
from .viewer3d import SceneView
from .virtual_cameras import VirtualCameraController

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction
    from zipmap_core.pipeline.reconstructor import Reconstructor

    from .jobs import Job

APP_NAME = "ZipMap Studio"
ICON = RESOURCES / "icons" / "zipmap-studio.svg"
NOVEL_DOCK_MIN_PX = 240  # default height of the novel-view dock when no layout was saved


class MainWindow(QMainWindow):
    def __init__(self, checkpoint: str | None = None, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(QIcon(str(ICON)))
        self.resize(*STUDIO_WINDOW)
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("ZipMap", "ZipMap Studio")
        self._layout_restored = False
        self.state = AppState()  # the scene, the model, messages: views subscribe to it
        self.message_box: QMessageBox | None = None  # made at the first message, then reused

        self.view = SceneView()
        self.inputs = InputPanel()
        self.model_panel = ModelPanel()
        self.view_panel = ViewPanel()
        self.novel = NovelViewPanel()
        self.progress = StageProgress()
        self.status_device = QLabel("")
        self.status_info = QElidingLabel("")  # gives way first when the status bar is short of room
        self.status_scale = QLabel("")  # the scene's units: metres once a scale is set
        self.measure_panel = MeasurePanel()
        # the window's parts, one job each; every background job starts through the one runner
        self.jobs = JobRunner(self.state)
        show_tasks(self.jobs, self.progress, self.model_panel)
        self.loader = InputController(self.state, self.jobs, self.inputs, self)
        self.live = LiveController(self.state, self.jobs, self)
        self.cameras = VirtualCameraController(self.state, self.jobs, self.view, self.novel, self)
        self.exports = ExportController(self.state, self.jobs, self.view, self)
        self.scenes = SceneFileController(self.state, self.jobs, self.settings, QMenu("Recent", self), self)
        self.models = ModelController(self.state, self.jobs, self.model_panel, self.settings, self)
        self.measure = MeasureController(self.state, self.jobs, self.view, self.measure_panel)
        self.reconstructs = ReconstructController(self.state, self.jobs, self.models, self.model_panel)
        self.engine_notes = EngineNotes(self.state, self.model_panel, self.settings)
        self.masks = MaskController(self.state, self.jobs, self.inputs, self)

        self._build_layout()
        self._build_menus()
        self._connect()
        self.view.canvas.events.mouse_double_click.connect(self._on_double_click)
        # in the background: the window is on screen and usable while the model loads
        QTimer.singleShot(0, lambda: self.models.load(checkpoint or self.models.remembered()))

    # ---- layout -----------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        self.setCentralWidget(self.view.widget)
        left = QWidget()
        col = QVBoxLayout(left)
        col.addWidget(self.inputs, 1)
        col.addWidget(self.model_panel.run_row)
        # the model's, the view's and the measuring controls share one place: all three stacked
        # needed scrolling at the default window size
        self.tabs = QTabWidget()
        for panel, title in ((self.model_panel, "Model"), (self.view_panel, "View"), (self.measure_panel, "Measure")):
            self.tabs.addTab(panel, title)
        col.addWidget(self.tabs)
        # scrolls rather than growing the window when a notice or a small screen leaves no room
        self.scene_column = column = QScrollArea()
        column.setWidget(left)
        column.setWidgetResizable(True)
        column.setFrameShape(QFrame.Shape.NoFrame)
        column.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        column.setMinimumWidth(left.sizeHint().width())
        dock = QDockWidget("Scene", self)
        dock.setObjectName("scene_dock")  # saveState() names docks by objectName
        dock.setWidget(column)
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
        bar.addPermanentWidget(self.status_scale)
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
        self._action(f, "Open images…", self.loader.images_dialog, QKeySequence.StandardKey.Open)
        self._action(f, "Open folder…", self.loader.folder_dialog, "Ctrl+Shift+O")
        self._action(f, "Open video…", self.loader.video_dialog)
        self._action(f, "Live from video…", self.live.video_dialog, "Ctrl+L")
        self._action(f, "Live from camera…", self.live.camera_dialog)
        self.live_pause = self._action(f, "Pause / resume live", self.live.toggle_pause, "P")
        self.live_pause.setEnabled(False)
        self.live.running_changed.connect(self.live_pause.setEnabled, check_nargs=False)
        add = f.addMenu("Add to inputs")
        self._action(add, "Images…", lambda: self.loader.images_dialog(add=True))
        self._action(add, "Folder…", lambda: self.loader.folder_dialog(add=True))
        self._action(add, "Video…", lambda: self.loader.video_dialog(add=True))
        self._action(f, "Add masks…", self.masks.folder_dialog)
        f.addSeparator()
        self._action(f, "Open scene…", self.scenes.open_scene_dialog, "Ctrl+Alt+O")
        self._action(f, "Save scene…", self.scenes.save_scene_dialog, QKeySequence.StandardKey.Save)
        f.addMenu(self.scenes.recent_menu)
        f.addSeparator()
        exp = f.addMenu("Export")
        for fmt in EXPORT_FORMATS:
            self._action(exp, f"{fmt.upper() if len(fmt) == 3 else fmt.capitalize()}…", lambda fmt=fmt: self.exports.export_dialog(fmt))
        self._action(f, "Save screenshot…", self.exports.screenshot_dialog, "Ctrl+Shift+S")
        f.addSeparator()
        self._action(f, "Load checkpoint…", self.models.load_dialog)
        self._action(f, "Get official weights…", self.models.download_dialog)
        f.addSeparator()
        self._action(f, "Quit", self.close, QKeySequence.StandardKey.Quit)
        r = bar.addMenu("&Reconstruct")
        self._action(r, "Reconstruct", self.reconstructs.start, "Ctrl+R")
        self._action(r, "Cancel", self.jobs.cancel, "Esc")
        v = bar.addMenu("&View")
        self._action(v, "Reset view", self.view.reset_view, "R")
        self._action(v, "Virtual camera from view", self.cameras.add_from_view, "V")
        self._action(v, "Next input camera", self._next_camera, "N")
        h = bar.addMenu("&Help")
        self._action(h, "About", self.about)

    def _connect(self) -> None:
        mp, vp = self.model_panel, self.view_panel
        self.state.message.connect(self._show_message)
        self.state.status.connect(self.status_info.setText, check_nargs=False)
        self.state.scene_changed.connect(self._show_scene)
        self.state.scene_rescaled.connect(self._show_rescaled)
        self.state.model_changed.connect(self._show_model)
        self.state.set_model_input(mp.mode.currentText(), mp.resolution.value())
        mp.mode.currentTextChanged.connect(lambda *_: self.state.set_model_input(mp.mode.currentText(), mp.resolution.value()))
        mp.resolution.valueChanged.connect(lambda *_: self.state.set_model_input(mp.mode.currentText(), mp.resolution.value()))
        mp.engine.currentIndexChanged.connect(lambda *_: self.state.set_engine(mp.engine.currentData(), mp.refine.isChecked()))
        mp.refine.toggled.connect(lambda *_: self.state.set_engine(mp.engine.currentData(), mp.refine.isChecked()))
        mp.reconstruct_button.clicked.connect(lambda *_: self.reconstructs.start())
        mp.cancel_button.clicked.connect(lambda *_: self.jobs.cancel())
        mp.load_button.clicked.connect(self.models.load_dialog)
        mp.official_button.clicked.connect(self.models.download_dialog)
        mp.fast_bf16.setChecked(self.settings.value("fast_cpu_bf16", False, type=bool))
        mp.fast_bf16.toggled.connect(lambda on: self.settings.setValue("fast_cpu_bf16", on))
        # the view panel writes the state's view settings; the 3D view draws from them
        apply = {
            "confidence_percentile": self.view.set_confidence_percentile,
            "point_size": self.view.set_point_size,
            "color_mode": self.view.set_color_mode,
            "show_images": self.view.set_show_images,
            "show_guides": self.view.set_show_guides,
            "fly": self.view.set_fly_mode,
        }
        self.state.view_changed.connect(lambda setting, value: apply[setting](value))
        self.state.view_changed.connect(lambda setting, _: setting == "confidence_percentile" and self._update_status())
        for setting, signal, read in (
            ("confidence_percentile", vp.confidence.valueChanged, vp.confidence.value),
            ("point_size", vp.point_size.valueChanged, vp.point_size.value),
            ("color_mode", vp.color_mode.currentTextChanged, vp.color_mode.currentText),
            ("show_images", vp.show_images.toggled, vp.show_images.isChecked),
            ("show_guides", vp.show_guides.toggled, vp.show_guides.isChecked),
            ("fly", vp.fly.toggled, vp.fly.isChecked),
        ):
            self.state.set_view(setting, read())
            signal.connect(lambda *_, setting=setting, read=read: self.state.set_view(setting, read()))
        vp.reset.clicked.connect(self.view.reset_view)
        self.inputs.visibility_changed.connect(self.view.set_frame_visible)

    # ---- messages ---------------------------------------------------------------------------------
    # the app's state, read through the window (scripts and tests)
    recon = property(lambda self: self.state.recon)
    rec = property(lambda self: self.state.rec)
    messages = property(lambda self: self.state.messages)

    def notify(self, text: str) -> None:
        self.state.notify(text)

    def _show_message(self, text: str) -> None:
        """Status-bar line plus one non-modal message box. The box is reused, so a burst of
        messages is one box showing the newest rather than a stack of them, and it takes the
        keyboard so that Return or Esc closes it. A deliberate cancel is not a message: it is
        said in the status bar (`AppState.say`)."""
        self.status_info.setText(text.splitlines()[0])
        if self.message_box is None:
            self.message_box = QMessageBox(QMessageBox.Icon.Information, APP_NAME, "", QMessageBox.StandardButton.Ok, self)
            self.message_box.setWindowModality(Qt.WindowModality.NonModal)
            self.message_box.setDefaultButton(QMessageBox.StandardButton.Ok)
        self.message_box.setText(text)
        self.message_box.show()
        self.message_box.raise_()
        self.message_box.activateWindow()

    def _update_status(self) -> None:
        self.status_scale.setText(scale_note(self.recon))
        self.novel.set_depth_units(units(self.recon) if self.recon is not None else "units")
        if self.recon is None:
            self.status_info.setText("drop photos, a folder or a video to start")
            return
        t = self.recon.timings.get("total_s")
        # what made the scene comes early: the line is cut where the window is narrow (all of it is the tooltip)
        parts = [f"{self.recon.num_frames} frames", f"{self.view.drawn_points:,} points shown", *scene_summary(self.recon)]
        line = " · ".join(parts + ([f"last run {t:.2f} s"] if t else []))
        self.status_info.setText(line)
        self.status_info.setToolTip(line)

    # ---- inputs ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        """A drop opens a new input set; with Ctrl held it adds to the current one."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        scenes = [p for p in paths if p.endswith(".zipmap")]
        if scenes:
            self.scenes.open_scene(scenes[0])
        others = [p for p in paths if not p.endswith(".zipmap")]
        if others:
            add = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
            self.loader.load(others, add=add)
        event.acceptProposedAction()

    # ---- reconstruction: the controller's, named here for scripts and tests --------------------------
    def reconstruct(self) -> Job | None:
        return self.reconstructs.start()

    def cancel(self) -> None:
        self.jobs.cancel()

    def set_reconstruction(self, recon: Reconstruction | None, keep_view: bool = False) -> None:
        self.reconstructs.show(recon, keep_view)

    def load_model(self, path: str | None, remember: bool = False) -> None:
        self.models.load(path, remember)

    def _show_model(self, rec: Reconstructor) -> None:
        self.status_device.setText(f"device: {rec.device.type}")

    def _show_scene(self, recon: Reconstruction | None, keep_view: bool) -> None:
        """Shows `recon` (None: no scene); `keep_view` (a live scene growing) leaves the camera
        where the user put it. What belonged to the previous scene goes with it (the virtual
        cameras' controller listens to the state itself)."""
        self.view_panel.flat_confidence.setVisible(recon is not None and recon.confidence_is_flat())
        self.view.set_reconstruction(recon, reset_camera=not keep_view)
        self.view.set_show_guides(self.state.view.show_guides)
        self.view.set_confidence_percentile(self.state.view.confidence_percentile)
        self._update_status()

    def _show_rescaled(self, recon: Reconstruction, factor: float) -> None:
        """The same scene in metres: redrawn from the same place in the picture."""
        self.view.set_reconstruction(recon, reset_camera=False)
        scale_view(self.view, factor)
        self._update_status()

    # ---- mouse and keys ---------------------------------------------------------------------------
    def _on_double_click(self, event) -> None:
        index = self.view.frame_at(tuple(event.pos[:2]))
        if index is not None:
            self.view.look_through(index)

    def _next_camera(self) -> None:
        """N: looks through the next input camera, names it, and dims the others (R resets)."""
        if self.recon is not None:
            self._camera_index = (getattr(self, "_camera_index", -1) + 1) % self.recon.num_frames
            self.view.look_through(self._camera_index)
            name = self.recon.names[self._camera_index]
            self.state.say(f"looking through camera {self._camera_index + 1} of {self.recon.num_frames}: {name} (R resets the view)")

    def keyPressEvent(self, event) -> None:
        if not self.cameras.handle_key(event.key()):
            super().keyPressEvent(event)

    # ---- help ---------------------------------------------------------------------------------------
    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", about_text(APP_NAME))

    def showEvent(self, event) -> None:
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

    def closeEvent(self, event) -> None:
        self.settings.setValue("window_geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.hide()  # gone from the screen at once, while the background work winds down
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Quitting (the window closed, the application told to quit, a signal): every background
        job is cancelled and waited for, so none reports into a window that is gone."""
        self.jobs.shutdown()
