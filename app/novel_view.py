"""The novel-view panel: virtual cameras, and the RGB, depth and confidence seen from the selected
one (pyqtgraph), from the source chosen here (the scene state, the photos or the points: those
the scene has are enabled), rendered on a worker where the newest request wins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from zipmap_core.options import MAX_RENDER_SIDE, PATCH

if TYPE_CHECKING:
    from zipmap_core.io.novel_views import NovelViews

SOURCE_LABELS = {"state": "From scene state", "photos": "From photos", "points": "From points"}  # zipmap_core.options.NOVEL_VIEW_SOURCES


class ImagePane(pg.GraphicsLayoutWidget):
    """One image with a title, optionally colour-mapped with a scale bar."""

    def __init__(self, title: str, colormap: str | None = None) -> None:
        super().__init__()
        self.plot = self.addPlot(title=title)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.item)
        self.bar = None
        if colormap:
            self.item.setColorMap(pg.colormap.get(colormap))
            self.bar = pg.ColorBarItem(colorMap=pg.colormap.get(colormap), interactive=False, width=12)
            self.bar.setImageItem(self.item, insert_in=self.plot)
        self.data: np.ndarray | None = None

    def clear_image(self) -> None:
        """Empty, and a scale bar back to 0..1: the previous scene's range would read as this one's."""
        self.data = None
        self.item.clear()
        if self.bar is not None:
            self.bar.setLevels((0.0, 1.0))

    def show_array(self, data: np.ndarray) -> None:
        self.data = data
        if data.ndim == 3:
            self.item.setImage((np.clip(data, 0, 1) * 255).astype(np.uint8), levels=(0, 255))
        else:
            finite = data[np.isfinite(data)]
            lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
            hi = hi if hi > lo else lo + 1e-6
            self.item.setImage(data, levels=(lo, hi))
            if self.bar is not None:
                self.bar.setLevels((lo, hi))


class NovelViewPanel(QGroupBox):
    """Lists virtual cameras and shows what the scene state renders from the selected one."""

    add_from_view = Signal()
    selection_changed = Signal(int)
    settings_changed = Signal()
    remove_requested = Signal(int)
    save_requested = Signal()
    path_requested = Signal()
    source_chosen = Signal(str)

    def __init__(self) -> None:
        super().__init__()  # the dock around it carries the title
        self.cameras = QListWidget()
        self.cameras.setMaximumHeight(90)
        self.cameras.setMinimumHeight(40)  # the dock may shrink to the buttons beside the list
        self.cameras.currentRowChanged.connect(self.selection_changed.emit)
        self.add_button = QPushButton("Camera from view (V)")
        self.add_button.clicked.connect(self.add_from_view.emit)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self.cameras.currentRow()))
        self.fov = QDoubleSpinBox()
        self.fov.setRange(10, 120)
        self.fov.setValue(60)
        self.fov.setSuffix("°")
        self.width_px = QSpinBox()
        self.height_px = QSpinBox()
        for box, value in ((self.width_px, 112), (self.height_px, 84)):
            box.setRange(PATCH, MAX_RENDER_SIDE)
            box.setSingleStep(PATCH)
            box.setValue(value)
        for w in (self.fov, self.width_px, self.height_px):
            w.valueChanged.connect(lambda *_: self.settings_changed.emit())
        self.source = QComboBox()
        for key, label in SOURCE_LABELS.items():
            self.source.addItem(label, key)
        self.source.setToolTip(
            "View from: ZipMap's scene state (a model with a novel-view head), the photos\n"
            "warped by their dense depth (the real pixels), or the scene's points. Those this scene has are enabled."
        )
        self.source.currentIndexChanged.connect(lambda index: self.source_chosen.emit(self.source.itemData(index)))
        self.source.setEnabled(False)  # until a scene offers its sources
        self.live = QCheckBox("Live")
        self.live.setChecked(True)
        self.save_button = QPushButton("Save view…")
        self.save_button.clicked.connect(self.save_requested.emit)
        self.path_button = QPushButton("Render path…")
        self.path_button.clicked.connect(self.path_requested.emit)
        self.status = QLabel("Click a point in the 3D view (Ctrl+click) or press V to place a virtual camera.")
        self.status.setWordWrap(True)
        self.rgb = ImagePane("RGB")
        self.depth = ImagePane("Depth", "viridis")
        self.confidence = ImagePane("Confidence", "inferno")

        # camera actions stack beside the list; the render settings sit above the images: the
        # panel stays narrow enough for a 1000-px-wide window beside the scene column
        controls = QHBoxLayout()
        for widget in (QLabel("FoV"), self.fov, QLabel("Size"), self.width_px, QLabel("×"), self.height_px, self.live):
            controls.addWidget(widget)
        controls.addStretch(1)
        images = QHBoxLayout()
        for pane in (self.rgb, self.depth, self.confidence):
            images.addWidget(pane)
        side = QWidget()
        left = QVBoxLayout(side)
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.cameras)
        actions = QGridLayout()
        actions.addWidget(self.add_button, 0, 0, 1, 2)
        actions.addWidget(self.remove_button, 1, 0)
        actions.addWidget(self.save_button, 1, 1)
        actions.addWidget(self.source, 2, 0)  # beside the cameras: the settings' row stays narrow
        actions.addWidget(self.path_button, 2, 1)
        left.addLayout(actions)
        left.addStretch(1)
        side.setMaximumWidth(250)  # the From field beside Render path… shows its whole source
        right = QVBoxLayout()
        right.addLayout(controls)
        right.addLayout(images, 1)
        row = QHBoxLayout()
        row.addWidget(side)
        row.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row, 1)
        layout.addWidget(self.status)
        self.last: NovelViews | None = None

    def set_camera_names(self, names: list[str], selected: int) -> None:
        self.cameras.blockSignals(True)
        self.cameras.clear()
        self.cameras.addItems(names)
        self.cameras.setCurrentRow(selected)
        self.cameras.blockSignals(False)

    def show_views(self, views: NovelViews, label: str) -> None:
        self.last = views
        self.rgb.show_array(views.rgb[0])
        self.depth.show_array(views.depth[0])
        self.confidence.show_array(views.confidence[0])
        self.status.setText(label)

    def clear_views(self, label: str = "") -> None:
        """Empties the panes: views of a scene that was replaced must not stay on screen."""
        self.last = None
        for pane in (self.rgb, self.depth, self.confidence):
            pane.clear_image()
        self.status.setText(label)

    def set_depth_units(self, units: str) -> None:
        """The depth pane says what its numbers are: metres once the scene has a scale."""
        self.depth.plot.setTitle(f"Depth ({units})")

    def set_camera_settings(self, image_hw: tuple[int, int], fov_y_deg: float) -> None:
        """What a new virtual camera takes (a new scene's own size and field of view); no
        `settings_changed`: no camera is changed by it."""
        for box, value in ((self.height_px, image_hw[0]), (self.width_px, image_hw[1]), (self.fov, fov_y_deg)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def show_sources(self, chosen: str, available: list[str]) -> None:
        """The source shown, and which the scene offers (the others are greyed)."""
        self.source.setEnabled(True)
        model = self.source.model()
        for index in range(self.source.count()):
            model.item(index).setEnabled(self.source.itemData(index) in available)  # type: ignore[attr-defined]
        self.source.blockSignals(True)  # the state chose: nothing to tell it
        self.source.setCurrentIndex(self.source.findData(chosen))
        self.source.blockSignals(False)

    def size(self) -> tuple[int, int]:  # type: ignore[override]
        return int(self.height_px.value()), int(self.width_px.value())
