"""The judge of the dense stage and the photo renderer: frames held out of both, rendered at their
own registered cameras, scored against the photos that were held out.

Every `every`-th frame (from `offset`) is held out: the dense stage never sees it, the renderer is
told it may read only the other frames, and so are the baselines (nearest photo unwarped, flat
mean colour, pixel mean of the two nearest photos, COLMAP's sparse points splatted). Renderers
passed in (the network's scene state, say) are scored beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..cancel import CancelToken, Progress, reporter
from ..errors import InputError
from ..io.atomic import Publication
from ..io.novel_views import NovelViews
from ..io.reconstruction import Reconstruction
from ..metrics import psnr, ssim
from ..options import HELD_OUT_EVERY as EVERY
from ..options import HELD_OUT_OFFSET as OFFSET
from .baselines import kept_points, mean_colour, nearest_frame, splat_points, two_frame_mean
from .depth import DenseDepth, dense_depth
from .render import render_from_photos, typical_depth

Renderer = Callable[[np.ndarray, np.ndarray, tuple[int, int]], NovelViews]  # (c2w [1, 3, 4], k [1, 3, 3], (h, w))
LABEL_HEIGHT = 22  # pixels of the caption strip above each picture of a side-by-side


def default_offset(every: int) -> int:
    """The first frame held out when every `every`-th is: `OFFSET`, or the last of the first `every`."""
    return min(OFFSET, every - 1)


def held_out(n: int, every: int = EVERY, offset: int = OFFSET) -> list[int]:
    """The frames held out of `n`: every `every`-th from `offset`; at least one, with two kept."""
    if every < 2 or not 0 <= offset < every:
        raise InputError(f"cannot hold out every {every}th frame from frame {offset}: need every >= 2 and 0 <= offset < every")
    held = list(range(offset, n, every))
    if not held or n - len(held) < 2:
        raise InputError(
            f"{n} frames registered: too few to hold out every {every}th from frame {offset} and keep two to render from; "
            f"give at least {max(offset + 1, 3)} frames"
        )
    return held


def dense_without(scene: Reconstruction, held: Sequence[int], progress=None, cancel=None) -> tuple[DenseDepth, np.ndarray]:
    """The dense stage of the frames not in `held` (it never receives the others' pixels) and
    the mask of the frames it kept."""
    keep = np.ones(scene.num_frames, bool)
    keep[list(held)] = False
    tracks = None if scene.tracks is None else scene.tracks.keep_frames(keep)
    result = dense_depth(scene.images[keep], scene.extrinsics[keep], scene.intrinsics[keep], tracks, progress=progress, cancel=cancel)
    return result, keep


def heldout_renders(
    scene: Reconstruction, held: Sequence[int], extra: dict[str, Renderer] | None = None, progress=None, cancel=None
) -> dict[str, list[np.ndarray]]:
    """Per source, the rgb [H, W, 3] in [0, 1] rendered at each held-out camera."""
    dense, keep = dense_without(scene, held, progress, cancel)
    n, (h, w) = scene.num_frames, scene.image_hw
    depth = np.zeros((n, h, w), np.float32)
    conf = np.zeros((n, h, w), np.float32)
    depth[keep], conf[keep] = dense.depth, dense.confidence
    sources = np.nonzero(keep)[0]
    c2w, scale = scene.cam_to_world, typical_depth(depth, sources)
    points = None if scene.tracks is None else kept_points(scene.tracks, scene.images, sources)
    out: dict[str, list[np.ndarray]] = {}
    for i in held:
        pose, k = c2w[i : i + 1], scene.intrinsics[i : i + 1]
        views = {
            "photos": render_from_photos(
                scene.images, depth, conf, scene.extrinsics, scene.intrinsics, pose, k, (h, w), sources=sources
            ).rgb[0],
            "nearest_frame": nearest_frame(scene.images, scene.extrinsics, pose[0], sources, scale, (h, w)),
            "mean_of_two": two_frame_mean(scene.images, scene.extrinsics, pose[0], sources, scale, (h, w)),
            "mean_colour": mean_colour(scene.images, scene.extrinsics, pose[0], sources, scale, (h, w)),
        }
        if points is not None:
            views["points"] = splat_points(*points, pose[0], k[0], (h, w))[0]
        for name, renderer in (extra or {}).items():
            views[name] = np.asarray(renderer(pose, k, (h, w)).rgb[0], np.float32)
        for name, rgb in views.items():
            out.setdefault(name, []).append(rgb)
    return out


def side_by_side(truth: np.ndarray, views: dict[str, np.ndarray], scores: dict[str, dict[str, float]]) -> np.ndarray:
    """uint8 BGR picture: the held-out photo, then each render, each captioned."""
    tiles = []
    for name, rgb in [("held-out photo", truth), *views.items()]:
        tile = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1]
        strip = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
        s = scores.get(name)
        text = name if s is None else f"{name}: {s['psnr']:.1f} dB, SSIM {s['ssim']:.3f}"
        cv2.putText(strip, text, (4, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack((strip, tile)))
    columns = 3
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    return np.vstack([np.hstack(tiles[r : r + columns]) for r in range(0, len(tiles), columns)])


def publish_pictures(folder: Path, pictures: dict[str, np.ndarray]) -> None:
    """The side-by-sides (uint8 BGR) written together: a failure or a cancel keeps the last set."""
    with Publication(folder, pictures) as pub:
        for name, picture in pictures.items():
            target = pub.path(name)
            if not cv2.imwrite(str(target), picture):
                raise OSError(f"OpenCV could not write {target}")


def heldout_evaluation(
    scene: Reconstruction,
    every: int = EVERY,
    offset: int = OFFSET,
    out_dir: Path | None = None,
    extra: dict[str, Renderer] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    """{"frames": [{"frame", SOURCE: {"psnr", "ssim"}}], "summary": {SOURCE: {"psnr", "ssim"}}}
    with the sources `photos`, `nearest_frame`, `mean_of_two`, `mean_colour`, `points` (scenes
    with tracks) and those of `extra`; `out_dir`: a side-by-side PNG per held-out frame there."""
    held = held_out(scene.num_frames, every, offset)
    report = reporter(progress, cancel or CancelToken())
    renders = heldout_renders(scene, held, extra, progress, cancel)
    frames: list[dict[str, Any]] = []
    pictures = {}
    for n, i in enumerate(held):
        truth = scene.images[i].astype(np.float32) / 255.0
        scores = {name: {"psnr": psnr(r[n], truth), "ssim": ssim(r[n], truth)} for name, r in renders.items()}
        frames.append({"frame": int(i), "name": scene.names[i], **scores})
        if out_dir is not None:
            pictures[f"heldout_{i:04d}.png"] = side_by_side(truth, {k: r[n] for k, r in renders.items()}, scores)
        report("heldout", n + 1, len(held))
    if pictures:
        publish_pictures(Path(out_dir), pictures)  # type: ignore[arg-type]
    summary = {name: {m: float(np.mean([f[name][m] for f in frames])) for m in ("psnr", "ssim")} for name in renders}
    return {"held_out": held, "frames": frames, "summary": summary}
