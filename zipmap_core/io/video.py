"""Video decoding for reconstruction: only the frames that are kept become pictures, they are
scaled to the model's size as they are decoded (one pass from YUV, no full-size RGB copy), and
the sampling says what it took when that is less than asked.

Frames are chosen among the times the container's packets carry (read without decoding), not by
a frame count and rate read from the header: containers often promise more or fewer frames than
they hold (variable frame rate, edit lists, a cut file), and a plan built on those silently loses
frames. PyAV's FFmpeg decodes on all cores (frame threading); far-apart frames are reached by
seeking to the keyframe before them instead of decoding everything in between.
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


def frame_times(path: Path, start: float) -> np.ndarray | None:
    """The presentation time (s from `start`) of every frame the container holds, read from its
    packets without decoding them (a demux pass reads the file, not the pictures): the truth a
    header's frame count and average rate only estimate, wrong for variable-rate videos. None
    where the packets carry no times (raw elementary streams)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError):
        return None
    try:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size]
        base = stream.time_base
        times = np.unique(np.array(pts, np.float64) * float(base)) - start if pts and base is not None else None
    except av.FFmpegError:
        times = None  # a damaged tail: the decoding pass says what it can
    finally:
        container.close()
    return None if times is None else times[times >= -1e-6]


def wanted_times(info: VideoInfo, fps: float | None, count: int | None, times: np.ndarray | None = None) -> np.ndarray:
    """Seconds from the start at which a frame is wanted: `count` frames evenly spaced by index,
    or one frame per 1/fps seconds. With the container's `times`, these are its real frames'
    times; without them, estimated from the header (frame count and average rate)."""
    if times is None or not len(times):
        total = info.header_frames or max(1, round(info.duration_s * info.fps))
        times = np.arange(total) / info.fps
    if count:
        return times[np.unique(np.round(np.linspace(0, len(times) - 1, min(count, len(times)))).astype(int))]
    if not fps:
        return times
    # the first frame at or after each 1/fps step (a frame answers one step at most)
    steps = np.arange(times[0], times[-1] + 1e-9, 1.0 / fps)
    return times[np.unique(np.minimum(np.searchsorted(times, steps - 1e-9), len(times) - 1))]


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
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        known = frame_times(path, start) if times is None else None
        if known is not None and len(known):
            info.header_frames = len(known)  # what decodes, not what the header claims
        times = wanted_times(info, fps, count, known) if times is None else np.sort(np.asarray(times, float))
        gaps = np.diff(known) if known is not None and len(known) > 1 else np.array([1.0 / info.fps])
        tol = 0.5 * float(min(gaps.min(), 1.0 / info.fps))  # half the closest two frames: one frame a time
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
            if before is not None and t <= before:  # keyframes too sparse: the seek went back (or nowhere)
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
