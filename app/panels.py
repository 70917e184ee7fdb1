"""Side panels: the loaded inputs (thumbnails), the model, and the view controls."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel, QLabeledDoubleSlider, QLabeledSlider

from zipmap_core.options import PATCH
from zipmap_core.resources import DEMO_NOTICE

if TYPE_CHECKING:
    from zipmap_core.io.inputs import Frame

THUMB = 96


def to_pixmap(image: np.ndarray, size: int | None = None) -> QPixmap:
    """uint8 [H, W, 3] -> QPixmap (copied, so the array may go away)."""
    arr = np.ascontiguousarray(image[..., :3])
    h, w = arr.shape[:2]
    qimg = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    pix = QPixmap.fromImage(qimg)
    return pix.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation) if size else pix


class InputPanel(QGroupBox):
    """Thumbnails of the loaded frames; each can be removed or hidden in the 3D view."""

    removed = Signal(list)  # indices
    visibility_changed = Signal(int, bool)
    clear_masks = Signal()

    def __init__(self) -> None:
        super().__init__("Inputs")
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.itemChanged.connect(
            lambda item: self.visibility_changed.emit(self.list.row(item), item.checkState() == Qt.CheckState.Checked)
        )
        self.count = QLabel("no images — drop photos, folders or videos here")
        self.count.setWordWrap(True)
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.clicked.connect(self._remove)
        # the masks Reconstruct passes (File ▸ Add masks…), and the way to drop them
        self.masks_label = QElidingLabel("")
        self.clear_masks_button = QPushButton("Clear masks")
        self.clear_masks_button.clicked.connect(self.clear_masks.emit)
        self.masks_row = QWidget()
        masks = QHBoxLayout(self.masks_row)
        masks.setContentsMargins(0, 0, 0, 0)
        masks.addWidget(self.masks_label, 1)
        masks.addWidget(self.clear_masks_button)
        self.masks_row.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.count)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.masks_row)
        layout.addWidget(self.remove_button)

    def set_frames(self, frames: list[Frame]) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for frame in frames:
            item = QListWidgetItem(QIcon(to_pixmap(np.asarray(frame.image.convert("RGB")), THUMB)), Path(frame.name).name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(frame.name)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.count.setText(
            f"{len(frames)} image{'s' if len(frames) != 1 else ''}" if frames else "no images — drop photos, folders or videos here"
        )

    def show_masks(self, line: str | None) -> None:
        """Says that masks are set (None: none are)."""
        self.masks_row.setVisible(line is not None)
        self.masks_label.setText(line or "")
        self.masks_label.setToolTip(line or "")

    def _remove(self) -> None:
        rows = sorted({self.list.row(i) for i in self.list.selectedItems()})
        if rows:
            self.removed.emit(rows)


ENGINE_LABELS = {"Auto (best available)": "auto", "ZipMap network": "zipmap", "COLMAP (classical)": "colmap"}


class ModelPanel(QGroupBox):
    """Which checkpoint, its variant and device, and the preprocessing."""

    def __init__(self) -> None:
        super().__init__()  # a tab of the scene column carries the title
        # one elided line: a wrapped label in a form row gets one line's height and is cut off;
        # the whole description is the tooltip (and the status bar's text)
        self.name = QElidingLabel("—")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.resolution = QSpinBox()
        self.resolution.setRange(56, 1036)
        self.resolution.setSingleStep(PATCH)
        self.mode = QComboBox()
        self.mode.addItems(["crop", "pad"])
        self.fast_bf16 = QCheckBox("Fast bf16 on CPU")
        self.fast_bf16.setToolTip(
            "Official checkpoints orthogonalise in bfloat16. CPUs without bf16 units run that ~65x slower;\n"
            "this computes the products in float32 instead: much faster, outputs within the parity\n"
            "tolerances but not bit-identical to the authors' code. No effect on GPUs or our models."
        )
        self.engine = QComboBox()
        for label, key in ENGINE_LABELS.items():
            self.engine.addItem(label, key)
        self.engine.setToolTip(
            "Auto: the network when you loaded a checkpoint or the official weights are on this machine;\n"
            "otherwise COLMAP with dense depth from the photos (the bundled model is a demonstration),\n"
            "and the bundled network where COLMAP cannot register the photos.\n"
            "ZipMap network: the loaded checkpoint, dense depth and novel views from its scene state.\n"
            "COLMAP (classical): real cameras from real photos on any machine, then dense depth from the photos."
        )
        # what Reconstruct runs now (auto's choice and why), kept true by `engine_notes.EngineNotes`
        self.engine_note = QLabel("")
        self.engine_note.setWordWrap(True)  # a row of its own: a wrapped label in a form's field is cut to one line
        self.refine = QCheckBox("Refine cameras with COLMAP")
        self.refine.setToolTip(
            "After the network: match features between the frames it says overlap, bundle-adjust its cameras\n"
            "and fit each depth map to the triangulated points (falls back to COLMAP's own mapping, and says so,\n"
            "when the predicted cameras are too far off)."
        )
        self.refine.setEnabled(False)  # the network's runs only
        self.engine.currentIndexChanged.connect(lambda *_: self.refine.setEnabled(self.engine.currentData() == "zipmap"))
        self.load_button = QPushButton("Load checkpoint…")
        # the bundled model is a demonstration: said where the user looks, with the way out
        self.demo_notice = QLabel("Demonstration model: coarse depth, grey novel views. Use an official checkpoint for real photos.")
        self.demo_notice.setWordWrap(True)
        self.demo_notice.setStyleSheet("color: #b26a00;")
        self.demo_notice.setToolTip(DEMO_NOTICE)
        self.official_button = QPushButton("Get official weights…")
        self.official_button.setToolTip("Download the official checkpoint once (5.5 GB): the network on real photos, and its novel views")
        self.classical_button = QPushButton("Use COLMAP for real photos")
        self.classical_button.setToolTip("Switch the engine to COLMAP (classical): real cameras and points without the official weights")
        self.classical_button.clicked.connect(lambda: self.engine.setCurrentIndex(self.engine.findData("colmap")))
        self.reconstruct_button = QPushButton("Reconstruct")
        self.reconstruct_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        form = QFormLayout(self)
        form.addRow("Engine", self.engine)  # first: what makes the scene, then the model it may run
        form.addRow(self.engine_note)
        form.addRow(self.refine)
        form.addRow("Checkpoint", self.name)
        form.addRow("Device", self.device)
        form.addRow("Resolution", self.resolution)
        form.addRow("Crop / pad", self.mode)
        form.addRow(self.fast_bf16)
        form.addRow(self.demo_notice)
        form.addRow(self.classical_button)
        checkpoints = QHBoxLayout()  # the two ways to another model share a row
        checkpoints.addWidget(self.official_button)
        checkpoints.addWidget(self.load_button)
        form.addRow(checkpoints)
        self.set_demo(False)
        # Reconstruct and Cancel are a row of their own, which the window keeps in sight above
        # the model's settings (these share a tab with the view's and the measurements)
        self.run_row = QWidget()
        row = QHBoxLayout(self.run_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.reconstruct_button)
        row.addWidget(self.cancel_button)

    def show_model(self, description: str, variant: str, img_size: int, can_render: bool) -> None:
        line = f"{description} ({variant}{' · novel views' if can_render else ''})"
        self.name.setText(line)
        self.name.setToolTip(line)
        self.resolution.setValue(img_size)

    def show_plan(self, line: str, demo: bool, bundled: bool) -> None:
        """What Reconstruct runs now; `demo`: the bundled network made the scene or will make the
        next; `bundled`: the bundled model is loaded (the official weights stay offered)."""
        self.engine_note.setText(f"Runs {line}")
        self.engine_note.setToolTip(f"Reconstruct runs {line}")
        self.set_demo(demo, offer_official=bundled)

    def set_demo(self, demo: bool, offer_official: bool = False) -> None:
        self.demo_notice.setVisible(demo)
        self.official_button.setVisible(demo or offer_official)
        self.classical_button.setVisible(demo)


class ViewPanel(QGroupBox):
    """Point-cloud display controls."""

    def __init__(self) -> None:
        super().__init__()  # a tab of the scene column carries the title
        self.confidence = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.confidence.setRange(0, 99)
        self.confidence.setValue(0)
        self.confidence.setToolTip(
            "Hides the points whose confidence ranks below this percentile of the points shown;\nat least one point always stays."
        )
        self.flat_confidence = QLabel(
            "This model's confidence is nearly the same everywhere: the filter ranks noise and may hide good points."
        )
        self.flat_confidence.setWordWrap(True)
        self.flat_confidence.setStyleSheet("color: #b26a00;")
        self.flat_confidence.setVisible(False)
        self.point_size = QLabeledSlider(Qt.Orientation.Horizontal)
        self.point_size.setRange(1, 15)
        self.point_size.setValue(3)
        self.color_mode = QComboBox()
        self.color_mode.addItems(["rgb", "depth", "confidence", "frame"])
        self.show_images = QCheckBox("Photos on frusta")
        self.show_images.setChecked(True)
        self.show_guides = QCheckBox("Axes and grid")
        self.show_guides.setChecked(True)
        self.fly = QCheckBox("Fly mode")
        self.reset = QPushButton("Reset view")
        form = QFormLayout(self)
        form.addRow("Confidence ≥ percentile", self.confidence)
        form.addRow(self.flat_confidence)
        form.addRow("Point size", self.point_size)
        form.addRow("Colour by", self.color_mode)
        form.addRow(self.show_images)
        form.addRow(self.show_guides)
        form.addRow(self.fly)
        form.addRow(self.reset)


WIDEST_STAGE = "download 5.50 of 5.50 GB, 100 MB/s"


class StageProgress(QWidget):
    """A progress bar per pipeline stage, in one row: stage name and a bar.

    Updates are throttled to ten a second: each repaint of the bar makes Qt re-compose the whole
    window, GL view included, which costs the GUI thread ~20 ms on software OpenGL; a burst of
    queued stage reports would otherwise freeze the window for half a second."""

    INTERVAL_MS = 100

    def __init__(self) -> None:
        from PySide6.QtWidgets import QProgressBar

        super().__init__()
        self.label = QLabel("")
        # as wide as the longest line it shows (a download's), so that no stage is cut off and
        # none re-lays out the status bar
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance(WIDEST_STAGE) + 8)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        self._pending: tuple[str, int, int] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        self.idle()

    def idle(self) -> None:
        """Stays shown (empty) between runs: showing a progress bar the first time costs the GUI
        thread a style and font set-up that would otherwise land in the middle of a run."""
        self.finish("ready", complete=False)

    def finish(self, text: str, complete: bool) -> None:
        """The end of a run: a full bar for work done; an empty one, without a percentage, when
        there is nothing to show (ready, cancelled, failed)."""
        self._timer.stop()
        self._pending = None
        self._show(text, int(complete), 1)
        self.bar.setTextVisible(complete)

    def update_stage(self, stage: str, done: int, total: int) -> None:
        """The first report shows at once; later ones within INTERVAL_MS are coalesced."""
        self._pending = (stage, done, total)
        if not self._timer.isActive():
            self._flush()

    def _flush(self) -> None:
        if self._pending is None:
            return
        self._show(*self._pending)
        self._pending = None
        self._timer.start()

    def _show(self, stage: str, done: int, total: int) -> None:
        self.bar.setTextVisible(True)
        self.label.setText(stage if total > 0 else f"{stage} ({done})")
        self.bar.setMaximum(max(total, 0))  # 0: a busy bar while the total is not known
        self.bar.setValue(done)
