"""What the GUI tests share: a real X server (Xvfb + Mesa, so VisPy really renders), drops,
waiting for jobs, and the rendered pixels. The `window` and `tiny_checkpoint` fixtures are in
conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM", "") != "offscreen":
    pytest.skip("the GUI tests need an X server: run them as the README says (xvfb-run)", allow_module_level=True)

import vispy

vispy.use("pyside6")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "resources" / "samples" / "images").glob("*.png"))


def drop(window, paths, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, modifiers)
    window.dropEvent(event)


def wait_idle(qtbot, window, timeout: int = 20000) -> None:
    qtbot.waitUntil(lambda: window.jobs.current is not None and not window.jobs.current.running, timeout=timeout)


def load_and_reconstruct(qtbot, window, paths) -> None:
    drop(window, paths)
    qtbot.waitUntil(lambda: len(window.loader.frames) > 0 and not window.jobs.current.running, timeout=20000)
    window.reconstruct()
    qtbot.waitUntil(lambda: window.recon is not None and not window.jobs.current.running, timeout=120000)


def frame(window) -> np.ndarray:
    window.view.canvas.update()
    return window.view.canvas.render(alpha=False)[..., :3].astype(np.int16)
