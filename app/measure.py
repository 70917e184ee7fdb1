"""Measuring in the 3D view and giving the scene a metric scale.

Shift+click picks the ends of a segment: an input camera when the click is on its frustum (its
centre), else the drawn point under the cursor. The segment is drawn in the view with its
length; a true length entered for it (or for the distance between two cameras given by number)
scales the whole scene to metres through the engine's `metric.apply_metric_scale`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)
from superqt import QElidingLabel
from vispy import scene

from zipmap_core.errors import InputError
from zipmap_core.io.metric import Endpoint, apply_metric_scale, camera_endpoint, distance, format_length

from .picking import is_click

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction

    from .job_runner import JobRunner
    from .state import AppState
    from .viewer3d import SceneView

MEASURE_COLOR = (0.2, 0.85, 1.0, 1.0)
CAMERA_PICK_PX = 14  # a click this close to a frustum's centre picks the camera, not a point behind it


class MeasurePanel(QGroupBox):
    """The measurement's ends and length, the true length to scale by, and cameras by number."""

    set_scale = Signal(float)
    measure_cameras = Signal(int, int)  # 0-based
    clear = Signal()

    def __init__(self) -> None:
        super().__init__()  # a tab of the scene column carries the title
        self.help = QLabel("Shift+click two points or cameras in the 3D view to measure between them.")
        self.help.setWordWrap(True)
        self.ends = [QElidingLabel(""), QElidingLabel("")]  # one line each: A and B
        self.length = QLabel("no measurement")
        self.length.setStyleSheet("font-weight: bold;")
        self.true_length = QDoubleSpinBox()
        self.true_length.setRange(0.001, 1e6)
        self.true_length.setDecimals(3)
        self.true_length.setValue(1.0)
        self.true_length.setSuffix(" m")
        self.scale_button = QPushButton("Set scale")
        self.scale_button.setToolTip("Scale the whole scene so that this segment is the true length: it is then in metres")
        self.scale_button.setEnabled(False)
        self.scale_button.clicked.connect(lambda: self.set_scale.emit(float(self.true_length.value())))
        self.camera_a, self.camera_b = QSpinBox(), QSpinBox()
        for box, value in ((self.camera_a, 1), (self.camera_b, 2)):
            box.setRange(1, 1)
            box.setValue(value)
        self.cameras_button = QPushButton("Between cameras")
        self.cameras_button.clicked.connect(lambda: self.measure_cameras.emit(self.camera_a.value() - 1, self.camera_b.value() - 1))
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear.emit)
        truth = QHBoxLayout()
        truth.addWidget(QLabel("True length"))
        truth.addWidget(self.true_length, 1)
        truth.addWidget(self.scale_button)
        cameras = QGridLayout()
        cameras.addWidget(QLabel("Cameras"), 0, 0)
        cameras.addWidget(self.camera_a, 0, 1)
        cameras.addWidget(self.camera_b, 0, 2)
        cameras.addWidget(self.cameras_button, 1, 0, 1, 2)
        cameras.addWidget(self.clear_button, 1, 2)
        layout = QVBoxLayout(self)
        for widget in (self.help, *self.ends, self.length):
            layout.addWidget(widget)
        layout.addLayout(truth)
        layout.addLayout(cameras)
        layout.addStretch(1)

    def set_camera_count(self, count: int) -> None:
        for box in (self.camera_a, self.camera_b):
            box.setRange(1, max(1, count))
        self.camera_b.setValue(min(count, max(2, self.camera_b.value())))
        self.cameras_button.setEnabled(count >= 2)

    def show_measurement(self, ends: list[Endpoint], recon: Reconstruction | None) -> None:
        names = recon.names if recon is not None else None
        for i, label in enumerate(self.ends):
            label.setText(f"{'AB'[i]}: {ends[i].label(names)}" if i < len(ends) else "")
        if len(ends) == 2 and recon is not None:
            self.length.setText(f"Distance: {format_length(distance(*ends), recon)}")
        else:
            self.length.setText("Shift+click the second end" if ends else "no measurement")
        self.scale_button.setEnabled(len(ends) == 2)


class MeasureController:
    """Picks the ends, draws the segment, and scales the scene (through the state)."""

    def __init__(self, state: AppState, jobs: JobRunner, view: SceneView, panel: MeasurePanel) -> None:
        self.state, self.jobs, self.view, self.panel = state, jobs, view, panel
        self.line = scene.visuals.Line(parent=view.world, color=MEASURE_COLOR, width=3)
        self.ends = scene.visuals.Markers(parent=view.world)
        self.text = scene.visuals.Text("", color=MEASURE_COLOR, font_size=14, parent=view.world, anchor_x="left")
        for visual in (self.line, self.ends, self.text):
            visual.set_gl_state("translucent", depth_test=False)  # seen through the cloud
            visual.order = 10
            visual.visible = False
        state.measure_changed.connect(self._show)
        state.scene_changed.connect(lambda recon, keep: self._new_scene(recon))
        state.scene_rescaled.connect(lambda recon, factor: self._show(state.measure))
        panel.set_scale.connect(self.set_scale)
        panel.measure_cameras.connect(self.between_cameras)
        panel.clear.connect(lambda: state.set_measure([]))
        view.canvas.events.mouse_release.connect(self._on_mouse_release)

    # ---- picking ------------------------------------------------------------------------------------
    def pick(self, canvas_xy: tuple[float, float]) -> Endpoint | None:
        """The camera whose frustum is under the cursor (its centre), else the point."""
        recon = self.state.recon
        if recon is None:
            return None
        frame = self.view.frame_at(canvas_xy, CAMERA_PICK_PX)
        if frame is not None:
            return camera_endpoint(recon, frame)
        point = self.view.pick_point(canvas_xy)
        return None if point is None else Endpoint(np.asarray(point, np.float64))

    def add_end(self, end: Endpoint) -> None:
        """A third pick starts a new measurement."""
        ends = self.state.measure if len(self.state.measure) < 2 else []
        self.state.set_measure([*ends, end])

    def between_cameras(self, a: int, b: int) -> None:
        recon = self.state.recon
        if recon is None:
            return
        try:
            self.state.set_measure([camera_endpoint(recon, a), camera_endpoint(recon, b)])
        except InputError as exc:
            self.state.notify(str(exc))

    def set_scale(self, true_metres: float) -> None:
        """Scales the scene so that the measured segment is `true_metres` long."""
        recon, ends = self.state.recon, self.state.measure
        if recon is None or len(ends) != 2:
            self.state.notify("Measure a segment first: Shift+click its two ends in the 3D view.")
            return
        if self.jobs.running:  # live mode's next window, or a run, would replace the scaled scene
            self.state.notify("The scale was not set: a task is running. Set it once it has ended (or cancel it).")
            return
        try:
            scaled, factor = apply_metric_scale(recon, ends[0], ends[1], true_metres)
        except InputError as exc:
            self.state.notify(f"The scale was not set; the scene is unchanged.\n{exc}")
            return
        self.state.rescale_scene(scaled, factor)

    def _on_mouse_release(self, event) -> None:
        if event.button != 1 or [k.name for k in event.modifiers] != ["Shift"] or not is_click(event):
            return  # a Shift+drag pans the view
        end = self.pick(tuple(event.pos[:2]))
        if end is None:
            self.state.say("nothing to measure there: Shift+click a point or a camera")
        else:
            self.add_end(end)

    # ---- drawing ------------------------------------------------------------------------------------
    def _new_scene(self, recon: Reconstruction | None) -> None:
        self.panel.set_camera_count(recon.num_frames if recon is not None else 0)
        self.state.set_measure([])

    def _show(self, ends: list[Endpoint]) -> None:
        recon = self.state.recon
        self.panel.show_measurement(ends, recon)
        pos = np.array([e.xyz for e in ends], np.float32).reshape(-1, 3)
        self.ends.visible = bool(len(pos))
        if len(pos):
            self.ends.set_data(pos, face_color=MEASURE_COLOR, edge_color="white", size=10)
        self.line.visible = self.text.visible = len(pos) == 2 and recon is not None
        if self.line.visible and recon is not None:
            length = format_length(distance(*ends), recon)
            self.line.set_data(pos=pos)
            self.text.text = " " + length
            self.text.pos = pos.mean(0)
            self.state.say(f"measured {length}: {ends[0].label(recon.names)} to {ends[1].label(recon.names)}")
        self.view.canvas.update()


def scale_view(view: SceneView, factor: float) -> None:
    """Keeps the picture when the scene's units change: the eye and its target scale with the
    scene about the origin (the view's fixed axis turn commutes with a uniform scale)."""
    cam = view.view.camera
    cam.center = tuple(float(c) * factor for c in cam.center)
    for attr in ("distance", "scale_factor"):
        value = getattr(cam, attr, None)
        if value:
            setattr(cam, attr, value * factor)
    view.canvas.update()
