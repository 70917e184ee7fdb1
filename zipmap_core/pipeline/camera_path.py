"""Virtual camera poses and camera paths (orbits, paths through chosen cameras) rendered to
PNG sequences and H.264 MP4 videos, from the scene state or, without a novel-view head, the point cloud."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from ..cancel import CancelToken, Progress
from ..errors import InputError
from ..io.atomic import Publication
from ..io.files import parse_json, regular_file_problem
from ..io.known_poses import ROTATION_TOLERANCE
from ..io.preprocess import unit_bytes_np
from ..io.reconstruction import Reconstruction
from ..model.geometry import look_at as _look_at
from ..options import MAX_PATH_VIEWS, MIN_PATH_WIDTH, PATCH
from .novel_views import best_source, render_views

WORLD_UP = (0.0, -1.0, 0.0)  # reconstructions use OpenCV axes of frame 0: y points down


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = WORLD_UP) -> np.ndarray:
    """Camera-to-world [3, 4] (OpenCV axes) at `eye` looking at `target`."""
    t = lambda v: torch.as_tensor(np.asarray(v, np.float64))  # noqa: E731
    return _look_at(t(eye), t(target), t(up)).numpy().astype(np.float32)


def scene_centre(recon: Reconstruction) -> np.ndarray:
    pts = recon.points_world.reshape(-1, 3)
    return np.median(pts[np.isfinite(pts).all(1)], axis=0)


def orbit_path(recon: Reconstruction, frames: int) -> np.ndarray:
    """`frames` cameras on a circle around the scene centre at the input cameras' mean height and
    distance, looking at the centre; the circle lies in the plane the input cameras mostly span."""
    centre = scene_centre(recon)
    c2w = recon.cam_to_world
    up = -c2w[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    rel = c2w[:, :3, 3] - centre
    height = float((rel @ up).mean())
    flat = rel - np.outer(rel @ up, up)
    radius = float(np.linalg.norm(flat, axis=1).mean()) or float(np.linalg.norm(rel, axis=1).mean()) or 1.0
    a = flat[0] / (np.linalg.norm(flat[0]) or 1.0) if np.linalg.norm(flat[0]) > 1e-9 else np.cross(up, [1.0, 0, 0])
    b = np.cross(up, a)
    angles = np.linspace(0, 2 * np.pi, frames, endpoint=False)
    eyes = centre + height * up + radius * (np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b)
    return np.stack([look_at(e, centre, tuple(up)) for e in eyes])


def path_through(c2ws: list[np.ndarray], frames: int) -> np.ndarray:
    """A smooth path through cameras [K, 3, 4]: positions piecewise linear, rotations slerped."""
    keys = np.asarray(c2ws, np.float64)[:, :3, :4]
    if len(keys) < 2:
        raise InputError("a camera path needs at least two cameras")
    times = np.linspace(0, 1, len(keys))
    slerp = Slerp(times, Rotation.from_matrix(keys[:, :3, :3]))
    t = np.linspace(0, 1, frames)
    rot = slerp(t).as_matrix()
    pos = np.stack([np.interp(t, times, keys[:, i, 3]) for i in range(3)], -1)
    return np.concatenate((rot, pos[..., None]), -1).astype(np.float32)


def watchable_size(image_hw: tuple[int, int], min_width: int = MIN_PATH_WIDTH) -> tuple[int, int]:
    """(h, w) for a rendered path: the scene's aspect, at least `min_width` wide, whole patches."""
    h, w = image_hw
    width = max(w, min_width) // PATCH * PATCH
    return max(PATCH, round(width * h / w / PATCH) * PATCH), width


RENDER_BATCH = 8  # views rendered per model call along a path
RENDER_OUTPUTS = ("frames", "path.mp4", "path.json")  # what a render publishes in its folder


def render_frames(
    rec,
    recon: Reconstruction,
    poses: np.ndarray,
    k: np.ndarray,
    size: tuple[int, int],
    source: str | None = None,
    draft: bool = False,
    cancel: CancelToken | None = None,
):
    """(label, NovelViews) for one batch of poses from `source` (None: the best the scene has;
    see `novel_views`); `cancel` stops it between views."""
    return render_views(rec, recon, poses, k, size, source, draft, cancel)


def render_path(
    rec,
    recon: Reconstruction,
    poses: np.ndarray,
    k: np.ndarray,
    size: tuple[int, int],
    folder: str | Path,
    fps: float = 24.0,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    source: str | None = None,
) -> Path:
    """Renders each pose into `folder/frames/frame_0000.png` (+ `_depth.npy`) …, `folder/path.mp4`
    and `folder/path.json`. All three are staged and published together once the video reads
    back whole: a cancel or a full disk leaves the previous render as it was."""
    folder = Path(folder)
    label = ""
    source = source or best_source(rec, recon)
    if source == "state" and rec is not None and rec.model.can_render:
        rec.check_state(recon)  # before the folder is touched
    with Publication(folder, RENDER_OUTPUTS) as pub:
        frames = pub.path("frames")
        frames.mkdir()
        video = VideoFile(pub.path("path.mp4"), fps, size)
        with video:
            # poses go to the model a batch at a time: one pass of the frame blocks and heads
            # for several views instead of one call, and one state upload, per view
            for start in range(0, len(poses), RENDER_BATCH):
                if cancel is not None:
                    cancel.check()
                label, views = render_frames(rec, recon, poses[start : start + RENDER_BATCH], k, size, source, cancel=cancel)
                for j in range(len(views.rgb)):
                    rgb = unit_bytes_np(views.rgb[j])
                    _save_frame(frames, start + j, rgb, views.depth[j])
                    video.write(rgb)
                if progress is not None:
                    progress("render path", min(start + RENDER_BATCH, len(poses)), len(poses))
            if cancel is not None:
                cancel.check()  # a cancel during the last batch still publishes nothing
        video.verify(len(poses))
        pub.path("path.json").write_text(
            json.dumps({"source": label, "fps": fps, "intrinsics": np.asarray(k).tolist(), "c2w": np.asarray(poses).tolist()})
        )
    return folder


def _save_frame(frames: Path, i: int, rgb: np.ndarray, depth: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(frames / f"frame_{i:04d}.png", format="PNG")
    with open(frames / f"frame_{i:04d}_depth.npy", "wb") as fh:
        np.save(fh, depth.astype(np.float32))


class VideoFile:
    """An H.264 MP4 (yuv420p, the profile browsers and players play) written through PyAV's
    bundled FFmpeg. `verify` re-opens it and counts its frames before it may replace anything:
    a muxer's late failure (a full disk at the trailer) must not publish a broken video."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        from fractions import Fraction

        import av

        self.path, self.size = path, size
        # faststart: the index at the front, so a browser plays the file while it loads
        self.container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        # yuv420p halves chroma: odd sizes are padded by one row or column of their edge
        self.stream.height, self.stream.width = size[0] + size[0] % 2, size[1] + size[1] % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "18", "preset": "medium"}

    def write(self, rgb: np.ndarray) -> None:
        import av

        pad = ((0, self.size[0] % 2), (0, self.size[1] % 2), (0, 0))
        frame = av.VideoFrame.from_ndarray(np.pad(rgb, pad, mode="edge"), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                for packet in self.stream.encode():  # flush the encoder's delayed frames
                    self.container.mux(packet)
        finally:
            self.container.close()

    def verify(self, frames: int) -> None:
        count = count_video_frames(self.path)
        if count != frames:
            raise OSError(f"the video does not read back whole ({count} of {frames} frames; the disk may be full)")


def count_video_frames(path: Path) -> int:
    """Frames that decode from the video's first stream (0 for a file that does not open)."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError, ValueError):
        return 0


def read_poses(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Cameras for `zipmap render --c2w FILE.json`: {"c2w": [[4x4 or 3x4], ...], "intrinsics"?: 3x3}
    or a bare list of matrices."""
    path = Path(path)
    problem = regular_file_problem(path, "a camera file")
    if problem or path.stat().st_size > 64 << 20:
        raise InputError(problem or f"{path}: a camera file of over 64 MB")
    try:
        data = parse_json(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not JSON ({exc})") from None
    if isinstance(data, dict) and "c2w" not in data:
        raise InputError(f'{path.name}: no "c2w" list of camera-to-world matrices')
    try:
        with np.errstate(over="ignore"):  # a number beyond float32 becomes infinity, refused below in one line
            poses = np.asarray(data["c2w"] if isinstance(data, dict) else data, np.float32)
            k = np.asarray(data["intrinsics"], np.float32) if isinstance(data, dict) and "intrinsics" in data else None
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path.name}: the matrices are not arrays of numbers ({exc})") from None
    if poses.ndim == 2:
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[-2:] not in ((3, 4), (4, 4)) or not 1 <= len(poses) <= MAX_PATH_VIEWS:
        raise InputError(
            f"{path.name}: expected 1 to {MAX_PATH_VIEWS} camera-to-world matrices of 3x4 or 4x4, got an array of shape {list(poses.shape)}"
        )
    if k is not None and k.shape != (3, 3):
        raise InputError(f"{path.name}: intrinsics must be one 3x3 matrix, got shape {list(k.shape)}")
    if not np.isfinite(poses).all() or (k is not None and not np.isfinite(k).all()):
        raise InputError(f"{path.name}: the cameras hold NaN or infinite numbers")
    rot = poses[:, :3, :3].astype(np.float64)
    off = np.abs(np.swapaxes(rot, 1, 2) @ rot - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((off > ROTATION_TOLERANCE) | (np.abs(np.linalg.det(rot) - 1) > ROTATION_TOLERANCE))
    if len(bad):
        raise InputError(f"{path.name}: camera {bad[0]} is not a rigid motion (its rotation is not orthonormal with determinant 1)")
    if k is not None and not (k[0, 0] > 0 and k[1, 1] > 0 and np.array_equal(k[2], [0, 0, 1])):
        raise InputError(f"{path.name}: the intrinsics are not a camera's (focal lengths must be positive, the last row 0 0 1)")
    return poses[:, :3, :4], k
