"""From what the user dropped (files, folders, videos) to a list of decoded frames.

Unreadable items are reported by name and skipped so the rest still reconstruct; only when
nothing usable remains is it an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..cancel import Cancelled
from .preprocess import ImageReadError, open_image

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm",
    ".tga", ".jp2", ".ico", ".dib", ".pcx", ".sgi", ".im", ".heic", ".avif",
}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


class NoUsableImagesError(ValueError):
    """Nothing among the inputs could be used."""


@dataclass
class VideoSampling:
    """How frames are taken from a video: at `fps` frames per second, or `max_frames` evenly."""

    fps: float | None = 1.0
    max_frames: int | None = None


@dataclass
class Frame:
    name: str  # file name, or "video.mp4#t=12.50s"
    image: Image.Image
    source: Path


@dataclass
class InputSet:
    frames: list[Frame] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def names(self) -> list[str]:
        return [f.name for f in self.frames]


def natural_key(path: Path) -> list:
    """frame2 before frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_paths(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files stay as given; folders contribute their images and videos in natural order."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                (c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES),
                key=natural_key,
            )
            if not found:
                skipped.append((p.name or str(p), "folder contains no images or videos"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            skipped.append((p.name or str(p), "no such file or folder"))
    return files, skipped


def video_frame_indices(total: int, native_fps: float, sampling: VideoSampling) -> list[int]:
    if total <= 0:
        return []
    if sampling.max_frames:
        count = min(sampling.max_frames, total)
        return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})
    step = max(1, int(round((native_fps or 30.0) / (sampling.fps or 1.0))))
    return list(range(0, total, step))


def read_video(path: Path, sampling: VideoSampling, should_stop: Callable[[], bool] | None = None) -> list[Frame]:
    import cv2  # headless OpenCV: decoding only

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageReadError(f"{path.name}: not a readable video")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        wanted = set(video_frame_indices(total, fps, sampling))
        frames: list[Frame] = []
        index = 0
        while wanted and index <= max(wanted):
            if should_stop is not None and should_stop():
                break
            ok = cap.grab()
            if not ok:
                break
            if index in wanted:
                ok, bgr = cap.retrieve()
                if ok:
                    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    t = index / fps if fps else index
                    frames.append(Frame(f"{path.name}#t={t:.2f}s", rgb, path))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise ImageReadError(f"{path.name}: no frames could be decoded")
    return frames


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    """A stop asked for while loading is a cancel, not "no usable images"."""
    if should_stop is not None and should_stop():
        raise Cancelled("loading cancelled")


def load_inputs(
    paths: list[str | Path],
    sampling: VideoSampling | None = None,
    max_frames: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> InputSet:
    """Decodes every usable input; the rest are listed in `skipped` with the reason."""
    files, skipped = expand_paths(paths)
    result = InputSet(skipped=skipped)
    sampling = sampling or VideoSampling()
    for path in files:
        _check_stop(should_stop)
        try:
            if is_video(path):
                result.frames.extend(read_video(path, sampling, should_stop))
            else:
                result.frames.append(Frame(path.name, open_image(path), path))
        except ImageReadError as exc:
            result.skipped.append((path.name, str(exc).split(": ", 1)[-1]))
        _check_stop(should_stop)
    if max_frames and len(result.frames) > max_frames:
        keep = np.linspace(0, len(result.frames) - 1, max_frames).round().astype(int)
        result.frames = [result.frames[i] for i in sorted(set(keep.tolist()))]
    if not result.frames:
        detail = "; ".join(f"{n}: {r}" for n, r in result.skipped[:10]) or "no inputs given"
        raise NoUsableImagesError(f"no usable images among the inputs ({detail})")
    return result
