"""Known intrinsics: what the user says (`fx,fy,cx,cy`, a JSON file, COLMAP's `cameras.txt`),
held fixed, and the focal length a photo's EXIF implies (35 mm equivalent), a prior the
adjustment may move, as COLMAP uses it. Both are given in the original pictures' pixels and are
mapped through each frame's crop into the model image's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import parse_json, regular_file_problem
from .preprocess import Crop

MAX_FILE_BYTES = 1 << 20  # an intrinsics file is a few lines
FULL_FRAME_DIAGONAL_MM = float(np.hypot(36.0, 24.0))  # what "35 mm equivalent" is relative to
PINHOLE_MODELS = {
    "SIMPLE_PINHOLE": "f cx cy",
    "PINHOLE": "fx fy cx cy",
    "SIMPLE_RADIAL": "f cx cy k",
    "RADIAL": "f cx cy k1 k2",
    "OPENCV": "fx fy cx cy ...",
}


@dataclass
class KnownIntrinsics:
    """fx, fy, cx, cy in the original picture's pixels, for a picture of `size` (w, h) when known."""

    fx: float
    fy: float
    cx: float
    cy: float
    size: tuple[int, int] | None = None
    fixed: bool = True  # the user's word; False for a prior from EXIF

    def matrix_for(self, crop: Crop) -> np.ndarray:
        """[3, 3] in the model image's pixels of a frame that came through `crop`."""
        sx = crop.resized_wh[0] / crop.original_wh[0]
        sy = crop.resized_wh[1] / crop.original_wh[1]
        ox, oy = crop.offset_xy
        return np.array([[self.fx * sx, 0, self.cx * sx + ox], [0, self.fy * sy, self.cy * sy + oy], [0, 0, 1]])

    def describe(self) -> dict:
        """What a scene records of the intrinsics it was given (JSON types)."""
        size = None if self.size is None else [int(v) for v in self.size]
        return {"fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy), "fixed": self.fixed, "size": size}

    def check_fits(self, crops: list[Crop], source: str) -> None:
        """Intrinsics for another picture size, or a principal point outside the picture, are refused."""
        for crop in crops:
            w, h = crop.original_wh
            if self.size is not None and tuple(self.size) != (w, h):
                raise InputError(f"the intrinsics from {source} are for {self.size[0]}x{self.size[1]} pictures, but the inputs are {w}x{h}")
            if not (0 < self.cx < w and 0 < self.cy < h):
                raise InputError(
                    f"the intrinsics from {source} put the principal point at ({self.cx:g}, {self.cy:g}), "
                    f"outside the {w}x{h} pictures: are they for another camera or in other units?"
                )


def parse_intrinsics(text: str) -> KnownIntrinsics:
    """`fx,fy,cx,cy` (pixels of the original pictures), or the path of a JSON file
    (`{"fx":..,"fy":..,"cx":..,"cy":.., "width":.., "height":..}`) or of COLMAP's `cameras.txt`
    (its first pinhole-family camera)."""
    parts = text.split(",")
    if len(parts) == 4:
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"--intrinsics {text!r}: expected four numbers fx,fy,cx,cy or a file") from None
        return _checked(values, None, "--intrinsics")
    path = Path(text)
    if "," in text and not path.exists():
        raise InputError(f"--intrinsics {text!r}: expected four numbers fx,fy,cx,cy or a file")
    problem = regular_file_problem(path, "an intrinsics file")
    if problem:
        raise InputError(f"--intrinsics: {problem}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"--intrinsics: {path.name} is {path.stat().st_size:,} bytes, not a camera description")
    raw = path.read_bytes().decode("utf-8", errors="replace")
    return _from_json(raw, path.name) if path.suffix.lower() == ".json" else _from_cameras_txt(raw, path.name)


def _checked(given: Sequence[float], size: tuple[int, int] | None, source: str) -> KnownIntrinsics:
    """fx, fy, cx, cy as `KnownIntrinsics`, or a message naming `source`."""
    values = np.array(given, float)
    fx, fy, cx, cy = (float(v) for v in values)
    if not np.isfinite(values).all() or fx <= 0 or fy <= 0 or cx <= 0 or cy <= 0:
        raise InputError(f"{source}: intrinsics must be positive finite numbers, got fx={fx:g} fy={fy:g} cx={cx:g} cy={cy:g}")
    if size is not None and not (0 < size[0] <= 1 << 16 and 0 < size[1] <= 1 << 16):
        raise InputError(f"{source}: picture size {size} is not a size in pixels")
    return KnownIntrinsics(fx, fy, cx, cy, size)


def _from_json(raw: str, name: str) -> KnownIntrinsics:
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise InputError(f"--intrinsics: {name} is not JSON ({exc})") from None
    keys = ("fx", "fy", "cx", "cy")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), (int, float)) and not isinstance(data.get(k), bool) for k in keys):
        raise InputError(f"--intrinsics: {name} needs numbers fx, fy, cx and cy (and optionally width and height)")
    size = None
    if "width" in data or "height" in data:
        w, h = data.get("width"), data.get("height")
        if not (isinstance(w, int) and isinstance(h, int)) or isinstance(w, bool) or isinstance(h, bool):
            raise InputError(f"--intrinsics: {name}'s width and height must be whole numbers of pixels")
        size = (w, h)
    return _checked([float(data[k]) for k in keys], size, name)


def _from_cameras_txt(raw: str, name: str) -> KnownIntrinsics:
    """The first camera of a COLMAP `cameras.txt`: CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]."""
    for line in raw.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            model, w, h, params = fields[1], int(fields[2]), int(fields[3]), [float(v) for v in fields[4:]]
        except (IndexError, ValueError):
            raise InputError(f"--intrinsics: {name} is not COLMAP's cameras.txt (line {line[:60]!r})") from None
        if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") and len(params) >= 3:
            return _checked([params[0], params[0], params[1], params[2]], (w, h), name)
        if model in ("PINHOLE", "OPENCV", "FULL_OPENCV") and len(params) >= 4:
            return _checked(params[:4], (w, h), name)
        raise InputError(f"--intrinsics: {name}'s camera model {model} is not one of {', '.join(PINHOLE_MODELS)}")
    raise InputError(f"--intrinsics: {name} holds no camera (expected JSON, or COLMAP's cameras.txt)")


def exif_prior(path: Path, size: tuple[int, int]) -> KnownIntrinsics | None:
    """The focal length a photo's EXIF gives as 35 mm equivalent, in pixels of a picture of `size`
    (w, h) with the principal point at its centre (COLMAP's rule): a prior, not fixed."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif().get_ifd(0x8769)  # the Exif sub-IFD
    except (OSError, ValueError, SyntaxError):
        return None
    try:
        f35 = float(exif[0xA405])  # FocalLengthIn35mmFilm
    except (KeyError, TypeError, ValueError):
        return None
    if not np.isfinite(f35) or not 4 <= f35 <= 2000:
        return None
    w, h = size
    focal = f35 / FULL_FRAME_DIAGONAL_MM * float(np.hypot(w, h))
    return KnownIntrinsics(focal, focal, w / 2, h / 2, (w, h), fixed=False)
