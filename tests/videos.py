"""Small test videos written with OpenCV, whose frames say which frame they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, frames: int, fps: float = 30.0, size: tuple[int, int] = (96, 64)) -> Path:
    """Frame i has a white bar at x = 2i on black, so a decoded frame tells which one it was."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, 2 * i : 2 * i + 2] = 255
        writer.write(frame)
    writer.release()
    return path
