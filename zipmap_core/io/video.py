"""Video decoding for reconstruction: only the frames that are kept become pictures, they are
scaled to the model's size as they are decoded (one pass from YUV, no full-size RGB copy), and
the sampling says what it took when that is less than asked.

Frames are chosen by time, not by a frame count read from the header: containers often promise
more frames than decode (variable frame rate, edit lists), and a plan built on that count
silently loses its tail. PyAV's FFmpeg decodes on all cores (frame threading); far-apart frames
are reached by seeking to the keyframe before them instead of decoding everything in between.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cancel import CancelToken
from ..errors import InputError

SEEK_GAP_S = 2.0  # seek when the next wanted frame is further ahead than this
MIN_VIDEO_FRAMES = 8  # fewer frames than this from one video is worth a word to the user

SizeFor = Callable[[int, int], tuple[int, int]]  # (width, height) -> decoded (width, height)


class VideoReadError(InputError):
    """The file is not a video that decodes."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float  # the stream's average rate (1.0 where it has none)
    duration_s: float
    header_frames: int  # what the container claims (0: unknown)


@dataclass
class SamplingReport:
    """What one video gave against what was asked, for a message that says why and what to do."""

    name: str
    asked: int | None  # frames asked for (count sampling); None for a rate
    rate: float | None  # frames per second asked for
    taken: int
    info: VideoInfo
    decoded_to_s: float  # the time of the last frame that decoded

    def message(self) -> str | None:
        info, taken = self.info, self.taken
        header = f"its header promises {info.header_frames} frames ({info.duration_s:.1f} s)"
        if self.asked is not None and taken < self.asked:
            if info.header_frames and info.header_frames < self.asked:
                why = f"the video has only {info.header_frames} frames"
            else:
                why = f"{header} but decoding ends at {self.decoded_to_s:.1f} s"
            return (
                f"{self.name}: took {taken} of the {self.asked} frames asked: {why}. "
                f"To take every frame: --fps {info.fps:g} (in the app: 'every frame')."
            )
        if self.rate is not None and taken < MIN_VIDEO_FRAMES:
            more = min(max(MIN_VIDEO_FRAMES, 16), info.header_frames or 16)
            return (
                f"{self.name}: a {info.duration_s:.1f} s clip at {self.rate:g} frame(s) per second gives "
                f"{taken} frame(s); for more, take {more} evenly spaced frames (--video-frames {more}) "
                f"or a higher rate (--fps {min(info.fps, self.rate * more / max(taken, 1)):.3g})."
            )
        return None


def open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoReadError(f"{path.name}: not a readable video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path.name}: not a readable video (no video stream)")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: all cores decode
    return container, stream


def probe(container, stream) -> VideoInfo:
    fps = float(stream.average_rate or stream.guessed_rate or 0) or 1.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    else:
        duration = stream.frames / fps if stream.frames else 0.0
    cc = stream.codec_context
    return VideoInfo(cc.width, cc.height, fps, duration, int(stream.frames or 0))


def wanted_times(info: VideoInfo, fps: float | None, count: int | None) -> np.ndarray:
    """Seconds from the start at which a frame is wanted: `count` evenly spaced frames, or every
    round(native / fps)-th frame (on a constant-rate video, the same frames as counting)."""
    total = info.header_frames or max(1, round(info.duration_s * info.fps))
    if count:
        n = min(count, total)
        idx = np.unique(np.round(np.linspace(0, total - 1, n)))
    else:
        step = max(1, round(info.fps / fps)) if fps else 1
        idx = np.arange(0, total, step)
    return idx / info.fps


def decode_video(
    path: Path,
    fps: float | None,
    count: int | None,
    size_for: SizeFor | None = None,
    cancel: CancelToken | None = None,
    report: Callable[[SamplingReport], None] | None = None,
    times: np.ndarray | None = None,
) -> Iterator[tuple[float, np.ndarray, tuple[int, int]]]:
    """Yields (time s, RGB uint8 [h, w, 3], original (width, height)) for the sampled frames,
    each scaled to `size_for(width, height)` while it is converted from YUV (see `interpolation`).
    Frames that are not kept are decoded (a video's frames depend on each other) but never
    converted. `report` receives what was taken against what was asked, at the end; `times`
    (seconds) replaces the sampling."""
    container, stream = open_video(path)
    # conversions (scale + YUV -> RGB) run on a helper thread, pipelined with FFmpeg's decoding
    converter = ThreadPoolExecutor(1, thread_name_prefix="convert")
    ready: deque = deque()
    try:
        info = probe(container, stream)
        times = wanted_times(info, fps, count) if times is None else np.sort(np.asarray(times, float))
        tol = 0.5 / info.fps
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        taken, last_t, i, can_seek, position = 0, 0.0, 0, True, -math.inf
        frames = container.decode(stream)
        stopped = False
        while i < len(times):
            if cancel is not None and cancel.cancelled:
                stopped = True  # what was decoded so far is still handed over
                break
            target = times[i]
            if can_seek and target - max(position, 0.0) > SEEK_GAP_S:
                container.seek(int((target + start) / stream.time_base), stream=stream, backward=True)
                frames, before = container.decode(stream), position
            else:
                before = None
            frame = next(frames, None)
            if frame is None:
                break
            t = float(frame.time) - start if frame.time is not None else position + 1.0 / info.fps
            if before is not None and t < before:  # keyframes too sparse: the seek went back
                can_seek = False
            position = last_t = t
            if t < target - tol:
                continue
            while i < len(times) and times[i] <= t + tol:
                i += 1  # one decoded frame answers every wanted time it covers
            ready.append((t, converter.submit(_convert, frame, size_for)))
            taken += 1
            while len(ready) > 2:
                t_ready, rgb = ready.popleft()
                yield t_ready, rgb.result(), (info.width, info.height)
        while ready:
            t_ready, rgb = ready.popleft()
            yield t_ready, rgb.result(), (info.width, info.height)
        if report is not None and not stopped:
            report(SamplingReport(path.name, count, None if count else fps, taken, info, last_t))
    finally:
        for _, pending in ready:
            pending.cancel()
        converter.shutdown(wait=True)
        container.close()


def interpolation(w: int, h: int, tw: int, th: int) -> str:
    """FFmpeg's filter for scaling (w, h) to (tw, th). Shrinking by 2x or more, area averaging
    is as close to PIL's bicubic (which widens its kernel by the ratio) as FFmpeg's bicubic is,
    1.18 against 1.14 grey levels on a 1080p video at 518 px, at half the cost: the conversion
    is a third of a 1080p frame's decoding work (`zipmap bench pipeline`). Near 1:1 or up,
    bicubic (area is bilinear there, 2x further from PIL)."""
    return "AREA" if w >= 2 * tw and h >= 2 * th else "BICUBIC"


def _convert(frame, size_for: SizeFor | None) -> np.ndarray:
    """The frame as RGB, at the model's size when asked, upright (phone videos carry a rotation)."""
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    w, h = frame.width, frame.height
    upright_wh = (h, w) if rotation in (90, 270) else (w, h)
    if size_for is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        tw, th = size_for(*upright_wh)
        if rotation in (90, 270):
            tw, th = th, tw
        rgb = frame.reformat(width=tw, height=th, format="rgb24", interpolation=interpolation(w, h, tw, th)).to_ndarray()
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb
