"""The checked range of every command-line option, in one place: a value outside it is refused
while the command line is parsed, before any model loads, with the option's name and the range."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

PATCH = 14
MAX_RESOLUTION = 1036  # model image width: twice the published 518 (memory grows with its square)
MAX_RENDER_SIDE = 2072  # rendered views: up to 4x the published width on a side
MAX_RENDER_PIXELS = 2072 * 1554
MAX_PATH_VIEWS = 3600  # an orbit or path of at most this many views (2.5 minutes at 24 fps)
DEFAULT_ORBIT_VIEWS = 96  # `zipmap render` without --orbit or --c2w: a full orbit of 4 s at 24 fps
MIN_PATH_WIDTH = 448  # rendered paths are at least this wide by default: a size worth watching
STUDIO_WINDOW = (1280, 800)  # the studio's first window (w, h): everything in the scene column fits it unscrolled
MAX_FRAMES = 100_000
MAX_PROCESSES = 1024

# the files taken as inputs, by suffix (the studio's dialogs filter by them before torch loads)
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
        ".tga",
        ".jp2",
        ".ico",
        ".dib",
        ".pcx",
        ".sgi",
        ".im",
        ".heic",
        ".avif",
    }
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
# choices a user names on the command line and in the app, kept here so that the parser can be
# built without importing the modules (and torch) that act on them
EXPORT_FORMATS = ("ply", "glb", "mesh", "colmap", "nerfstudio")
# where `zipmap reconstruct --export` puts each format inside its output folder
EXPORT_NAMES = {"ply": "points.ply", "glb": "scene.glb", "mesh": "mesh.ply", "colmap": "colmap", "nerfstudio": "nerfstudio"}
# where world points come from: unprojected depth (as ZipMap's and VGGT's demos do) or the point head
POINT_SOURCES = ("depth", "point_head")
NOVEL_VIEW_SOURCES = ("state", "photos", "points")  # where a virtual camera's view comes from (pipeline.novel_views)
# auto (the default): the best real result this machine can give (engines.AutoEngine); zipmap: the
# network; colmap: COLMAP's structure from motion alone
ENGINES = ("auto", "zipmap", "colmap")
REFINE_NEEDS_NETWORK = "--refine adjusts ZipMap's cameras with COLMAP; the classical engine's are COLMAP's already"
CLASSICAL_WIDTH = 518  # the classical engine sees frames at least this wide (SIFT needs pixels a small model's input lacks)
PRECISIONS = ("auto", "bf16", "fp16", "float32")
VARIANTS = ("aff_inv", "with_ref_view", "online", "state_query")  # the published checkpoints

HELD_OUT_EVERY = 4  # eval --novel-views: one frame in this many is held out ...
HELD_OUT_OFFSET = 3  # ... starting here: frames 3, 7, 11, ...


def number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False, what: str = "") -> Callable[[str], float]:
    """An argparse type: `kind` (int or float) within [lo, hi] ((lo, hi] with `lo_open`), finite."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        low_ok = lo is None or (value > lo if lo_open else value >= lo)
        if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
            left = "(" if lo_open else "["
            raise argparse.ArgumentTypeError(
                f"{text} is outside {left}{lo if lo is not None else '-inf'}, "
                f"{hi if hi is not None else 'inf'}]{' ' + what if what else ''}"
            )
        return value

    return parse


def positive_int(hi: int, what: str = "") -> Callable[[str], float]:
    return number(int, 1, hi, what=what)


def resolution(text: str) -> int:
    """A model image width: a multiple of 14 up to MAX_RESOLUTION."""
    value = int(number(int, PATCH, MAX_RESOLUTION)(text))
    if value % PATCH:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of {PATCH} (try {round(value / PATCH) * PATCH or PATCH})")
    return value


def dimensions(multiple: int = 1) -> Callable[[str], tuple[int, int]]:
    """An argparse type for WIDTHxHEIGHT: each side 14..MAX_RENDER_SIDE, at most MAX_RENDER_PIXELS,
    and (for views the model renders) multiples of `multiple`."""

    def parse(text: str) -> tuple[int, int]:
        parts = text.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (for example 518x392)")
        w, h = (int(p) for p in parts)
        if not (PATCH <= w <= MAX_RENDER_SIDE and PATCH <= h <= MAX_RENDER_SIDE) or w * h > MAX_RENDER_PIXELS:
            raise argparse.ArgumentTypeError(f"{w}x{h} is outside {PATCH}..{MAX_RENDER_SIDE} a side (at most {MAX_RENDER_PIXELS:,} pixels)")
        if w % multiple or h % multiple:
            raise argparse.ArgumentTypeError(
                f"{w}x{h}: both sides must be multiples of {multiple} (try "
                f"{round(w / multiple) * multiple or multiple}x{round(h / multiple) * multiple or multiple})"
            )
        return w, h

    return parse


render_size = dimensions(PATCH)  # views the model renders: whole patches


def add_video_sampling(parser: argparse.ArgumentParser, where: str = "") -> None:
    """--fps and --video-frames, declared once for the CLI and the studio; `where` says which
    inputs they apply to."""
    parser.add_argument(
        "--fps", type=number(float, 0, 1000, lo_open=True), default=1.0, help=f"video sampling rate{where} (frames per second)"
    )
    parser.add_argument("--video-frames", type=positive_int(MAX_FRAMES), help="take this many evenly spaced frames per video instead")
