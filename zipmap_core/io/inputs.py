"""From what the user dropped (files, folders, videos) to a list of decoded frames.

Unreadable items are reported by name and skipped so the rest still reconstruct; only when
nothing usable remains is it an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..cancel import Cancelled, CancelToken
from ..errors import InputError
from ..options import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .files import one_line, path_kind
from .prefetch import prefetch
from .preprocess import (
    PATCH,
    Crop,
    ImageReadError,
    from_resized,
    open_image,
    preprocess,
    target_size,
    unit_float,
)
from .video import SamplingReport, VideoReadError, decode_video


class NoUsableImagesError(InputError):
    """Nothing among the inputs could be used."""


@dataclass
class VideoSampling:
    """How frames are taken from a video: at `fps` frames per second, or `max_frames` evenly
    spaced; neither (fps None): every frame."""

    fps: float | None = 1.0
    max_frames: int | None = None


@dataclass
class Preparation:
    """The model input a frame was made ready for while it was decoded (mode, width)."""

    mode: str
    size: int

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        w, h = target_size(width, height, self.mode, self.size)
        return max(w, PATCH), max(h, PATCH)


@dataclass
class Frame:
    name: str  # file name, or "video.mp4#t=12.50s"
    image: Image.Image  # as decoded: full size, or already at the model's size (see `prepared`)
    source: Path
    time_s: float | None = None  # where in a video the frame is; None for a picture
    original_wh: tuple[int, int] | None = None  # the source picture's size, when `image` is smaller
    prepared: tuple[Preparation, torch.Tensor, Crop] | None = None  # model image as uint8 bytes

    def model_input(self, mode: str, size: int, as_uint8: bool = False) -> tuple[torch.Tensor, Crop]:
        """The model image [3, H, W] (float, or its bytes `as_uint8` for `stack_images` to
        convert in place) and its crop: made at decode time when it was prepared for this input,
        else from the full picture (re-read when only a reduced copy is held)."""
        if self.prepared is not None and self.prepared[0] == Preparation(mode, size):
            tensor, crop = self.prepared[1], self.prepared[2]
            return (tensor if as_uint8 else unit_float(tensor)), Crop(crop.original_wh, crop.resized_wh, crop.offset_xy)
        return preprocess(self.full_image(), mode, size, as_uint8)

    def full_image(self) -> Image.Image:
        if self.original_wh is None or self.original_wh == self.image.size:
            return self.image
        if self.time_s is None:
            return open_image(self.source)
        return read_video_frame(self.source, self.time_s)


@dataclass
class InputSet:
    frames: list[Frame] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    notes: list[str] = field(default_factory=list)  # what sampling took against what was asked

    def names(self) -> list[str]:
        return [f.name for f in self.frames]

    def report(self) -> dict:
        """What a reconstruction records of its inputs: the files skipped and the sampling notes."""
        return {"skipped": [list(s) for s in self.skipped], "sampling_notes": list(self.notes)}


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
        elif (kind := path_kind(p)) == "file":
            files.append(p)
        else:
            skipped.append((p.name or str(p), "no such file or folder" if kind == "missing" else f"{kind}, not a picture or a video"))
    return files, skipped


def _frame(
    name: str, rgb: np.ndarray, source: Path, time_s: float | None, original_wh: tuple[int, int], prepare: Preparation | None
) -> Frame:
    image = Image.fromarray(rgb)
    frame = Frame(name, image, source, time_s, original_wh if original_wh != image.size else None)
    if prepare is not None:
        tensor, crop = from_resized(rgb, original_wh, prepare.mode, prepare.size, as_uint8=True)
        frame.prepared = (prepare, tensor, crop)
    return frame


def read_video(
    path: Path,
    sampling: VideoSampling,
    cancel: CancelToken | None = None,
    prepare: Preparation | None = None,
    notes: list[str] | None = None,
) -> list[Frame]:
    """The sampled frames of one video; with `prepare`, each is scaled to the model's size as it is
    decoded and nothing larger is kept. A sampling that took less than asked adds to `notes`."""
    skipped: list[tuple[str, str]] = []
    frames = list(_video_or_skip(path, sampling, prepare, cancel, skipped, notes))
    if skipped:
        raise ImageReadError(f"{path.name}: {skipped[0][1]}")
    return frames


def camera_frames(
    index: int, sampling: VideoSampling, prepare: Preparation | None = None, cancel: CancelToken | None = None, limit: int | None = None
) -> Iterator[Frame]:
    """Frames from a camera OpenCV can open (`index` 0 is the first), taken at `sampling.fps`
    (every frame when None), until `cancel`, `limit` frames, or the camera ends."""
    import time

    import cv2  # headless OpenCV: capture only

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise ImageReadError(f"camera {index}: cannot be opened")
    try:
        taken, start, next_t = 0, time.monotonic(), 0.0
        while (limit is None or taken < limit) and not (cancel is not None and cancel.cancelled):
            ok, bgr = cap.read()
            if not ok:
                break
            t = time.monotonic() - start
            if sampling.fps and t < next_t:
                continue
            next_t = t + 1.0 / sampling.fps if sampling.fps else 0.0
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            if prepare is not None:
                rgb = cv2.resize(rgb, prepare.size_for(w, h), interpolation=cv2.INTER_AREA)
            yield _frame(f"camera{index}#t={t:.2f}s", rgb, Path(f"camera{index}"), t, (w, h), prepare)
            taken += 1
    finally:
        cap.release()


def read_video_frame(path: Path, time_s: float) -> Image.Image:
    """One frame of a video at full size (a frame held at another model size, re-read)."""
    for _, rgb, _ in decode_video(path, None, None, times=np.array([time_s])):
        return Image.fromarray(rgb)
    raise ImageReadError(f"{path.name}: the frame at {time_s:.2f} s no longer decodes")


def read_picture(path: Path, prepare: Preparation | None) -> Frame:
    image = open_image(path)
    frame = Frame(path.name, image, path)
    if prepare is not None:  # keep the model image and a picture of that size, not the original
        try:
            new_w, new_h = prepare.size_for(*image.size)
        except ImageReadError as exc:
            raise ImageReadError(f"{path.name}: {exc}") from None
        small = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        tensor, crop = from_resized(np.asarray(small), image.size, prepare.mode, prepare.size, as_uint8=True)
        frame = Frame(path.name, small, path, None, image.size, (prepare, tensor, crop))
    return frame


def _check_stop(cancel: CancelToken | None) -> None:
    """A stop asked for while loading is a cancel, not "no usable images"."""
    if cancel is not None and cancel.cancelled:
        raise Cancelled("loading cancelled")


def _picture(path: Path, prepare: Preparation | None) -> tuple[Frame | None, str | None]:
    try:
        return read_picture(path, prepare), None
    except ImageReadError as exc:
        return None, str(exc).split(": ", 1)[-1]


def video_frames(
    path: Path,
    sampling: VideoSampling,
    prepare: Preparation | None = None,
    cancel: CancelToken | None = None,
    notes: list[str] | None = None,
) -> Iterator[Frame]:
    """The sampled frames of one video as they decode (see `read_video` for the whole list)."""

    def note(report: SamplingReport) -> None:
        message = report.message()
        if message and notes is not None:
            notes.append(message)

    decoded = decode_video(path, sampling.fps, sampling.max_frames, prepare.size_for if prepare else None, cancel, note)
    for t, rgb, wh in decoded:
        yield _frame(f"{path.name}#t={t:.2f}s", rgb, path, t, wh, prepare)


def iter_inputs(
    paths: list[str | Path],
    sampling: VideoSampling | None = None,
    prepare: Preparation | None = None,
    cancel: CancelToken | None = None,
    skipped: list[tuple[str, str]] | None = None,
    notes: list[str] | None = None,
    workers: int | None = None,
) -> Iterator[Frame]:
    """Frames in input order as they decode, ahead of the consumer: pictures on a pool of
    `workers` threads (decoding and PIL's resize run without the GIL), at most 2 x workers
    ahead; a video's frames from a decoding thread, at most 8 ahead. Memory stays bounded by
    what is ahead, whatever the inputs' number and length."""
    files, missing = expand_paths(paths)
    skipped = skipped if skipped is not None else []
    skipped.extend(missing)
    sampling = sampling or VideoSampling()
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        pending: dict[int, Future] = {}
        try:
            for i, path in enumerate(files):
                for j in range(i, min(len(files), i + 2 * workers)):
                    if j not in pending and not is_video(files[j]):
                        pending[j] = pool.submit(_picture, files[j], prepare)
                _check_stop(cancel)
                if is_video(path):
                    yield from _video_or_skip(path, sampling, prepare, cancel, skipped, notes)
                    _check_stop(cancel)
                    continue
                frame, reason = pending.pop(i).result()
                _check_stop(cancel)
                if frame is None:
                    skipped.append((path.name, reason or "unreadable"))
                else:
                    yield frame
        finally:
            for future in pending.values():
                future.cancel()


def _video_or_skip(
    path: Path, sampling: VideoSampling, prepare: Preparation | None, cancel: CancelToken | None, skipped: list, notes: list[str] | None
) -> Iterator[Frame]:
    count = 0
    try:
        for frame in prefetch(video_frames(path, sampling, prepare, cancel, notes), 8, "decode-video"):
            count += 1
            yield frame
    except VideoReadError as exc:
        skipped.append((path.name, str(exc).split(": ", 1)[-1]))
        return
    except ImageReadError as exc:  # frames of a shape the model cannot take
        skipped.append((path.name, str(exc)))
        return
    except Exception as exc:
        if not type(exc).__module__.startswith("av"):
            raise
        skipped.append((path.name, f"the video does not decode ({exc})"))
        return
    if count == 0 and not (cancel is not None and cancel.cancelled):
        skipped.append((path.name, "no frames could be decoded"))


def load_inputs(
    paths: list[str | Path],
    sampling: VideoSampling | None = None,
    max_frames: int | None = None,
    cancel: CancelToken | None = None,
    prepare: Preparation | None = None,
) -> InputSet:
    """Decodes every usable input; the rest are listed in `skipped` with the reason. With
    `prepare`, frames are held at the model's size only."""
    result = InputSet()
    result.frames = list(iter_inputs(paths, sampling, prepare, cancel, result.skipped, result.notes))
    if max_frames and len(result.frames) > max_frames:
        keep = np.linspace(0, len(result.frames) - 1, max_frames).round().astype(int)
        result.frames = [result.frames[i] for i in sorted(set(keep.tolist()))]
    check_usable(result)
    return result


def check_usable(inputs: InputSet) -> None:
    """No frames at all is an error that names what was skipped and why."""
    if not inputs.frames:
        detail = "; ".join(f"{one_line(n)}: {r}" for n, r in inputs.skipped[:10]) or "no inputs given"
        raise NoUsableImagesError(f"no usable images among the inputs ({detail})")
