"""Known cameras as input (`--poses PATH`): a COLMAP model folder (cameras and images, text or
binary) or a nerfstudio `transforms.json` (what our nerfstudio export writes: OpenGL
`transform_matrix` camera-to-world, `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` at the top or per frame).

Cameras are matched to the inputs by picture name, in the file's units and world frame. What
cannot be used is refused in one line before any work: pictures the file does not name, sizes
that differ from the pictures', intrinsics that are not positive and finite or carry lens
distortion (undistort first), and matrices that are not finite rigid motions. A COLMAP model is
read by pycolmap in a memory-capped child (`colmap_model.read_bounded`), never here."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .colmap_model import ModelReadError, read_bounded
from .files import parse_json, picture_stem, regular_file_problem
from .preprocess import Crop

MAX_FILE_BYTES = 256 << 20  # a camera file of a hundred thousand frames is well under this
MAX_CAMERAS = 100_000
MAX_SIDE = 1 << 16  # pixels a side of a picture a camera file describes
READ_SECONDS, READ_BYTES_PER_SECOND = 5.0, 2 << 20  # a COLMAP model's time to read: 2 minutes for the largest
ROTATION_TOLERANCE = 1e-3  # |R^T R - I| and |det R - 1| of a rotation read from a file
PINHOLE_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3, "OPENCV": 4, "FULL_OPENCV": 4}
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def name_key(name: str) -> str:
    """How a picture is matched to a camera: as our exports name pictures (`files.picture_stem`),
    so a scene exported and its pictures read back match."""
    return picture_stem(name)


@dataclass
class KnownPoses:
    """Cameras for pictures by name: world-to-camera [M, 3, 4] (OpenCV axes) in the file's units,
    intrinsics [M, 3, 3] for pictures of `sizes` [M, 2] (w, h)."""

    names: list[str]
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    sizes: np.ndarray
    source: str

    def for_frames(self, names: list[str], crops: list[Crop]) -> tuple[np.ndarray, np.ndarray]:
        """(world-to-camera [N, 3, 4], intrinsics [N, 3, 3] in each frame's model-image pixels) of
        the frames `names` made through `crops`; a frame the file does not name, or a picture of
        another size, is refused."""
        index = {name_key(n): i for i, n in enumerate(self.names)}
        missing = [n for n in names if name_key(n) not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"{self.source} has no camera for {shown}")
        rows = [index[name_key(n)] for n in names]
        for n, r, crop in zip(names, rows, crops):
            if tuple(int(v) for v in self.sizes[r]) != tuple(crop.original_wh):
                w, h = (int(v) for v in self.sizes[r])
                raise InputError(f"{self.source} gives {n} as {w}x{h}, but the picture is {crop.original_wh[0]}x{crop.original_wh[1]}")
        k = np.stack([_through(self.intrinsics[r], crop) for r, crop in zip(rows, crops)])
        return self.extrinsics[rows].astype(np.float64), k

    def describe(self) -> dict:
        return {"source": self.source, "cameras": len(self.names)}


def _through(k: np.ndarray, crop: Crop) -> np.ndarray:
    sx, sy = crop.resized_wh[0] / crop.original_wh[0], crop.resized_wh[1] / crop.original_wh[1]
    ox, oy = crop.offset_xy
    return np.array([[k[0, 0] * sx, 0, k[0, 2] * sx + ox], [0, k[1, 1] * sy, k[1, 2] * sy + oy], [0, 0, 1]])


def read_known_poses(path: str | Path) -> KnownPoses:
    """The cameras in `path`: a COLMAP model folder or a nerfstudio transforms.json."""
    path = Path(path)
    if path.is_dir():
        found = path / "transforms.json"
        return _from_nerfstudio(found) if found.is_file() and not _has_colmap(path) else _from_colmap(path)
    return _from_nerfstudio(path)


def _has_colmap(folder: Path) -> bool:
    return any((folder / f"images{suffix}").is_file() for suffix in (".txt", ".bin"))


# ---- nerfstudio ---------------------------------------------------------------------------------------
def _from_nerfstudio(path: Path) -> KnownPoses:
    problem = regular_file_problem(path, "a camera file")
    if problem:
        raise InputError(problem)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path.name}: a camera file of over {MAX_FILE_BYTES >> 20} MB")
    try:
        data = parse_json(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not JSON ({exc})") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_CAMERAS:
        raise InputError(f'{path.name}: no "frames" list of 1 to {MAX_CAMERAS} cameras (a nerfstudio transforms.json)')
    names, c2w, ks, sizes = [], [], [], []
    for i, frame in enumerate(frames):
        where = f"{path.name}, frame {i}"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise InputError(f'{where}: no "file_path"')
        names.append(frame["file_path"])
        c2w.append(_matrix(frame.get("transform_matrix"), (4, 4), f'{where}: "transform_matrix"'))
        k, size = _ns_intrinsics({**data, **frame}, where)
        ks.append(k)
        sizes.append(size)
    w2c = _inverse_motions(np.stack(c2w) @ OPENGL_TO_OPENCV, names, path.name)
    return _checked(names, w2c, np.stack(ks), np.array(sizes), path.name)


def _inverse_motions(c2w: np.ndarray, names: list[str], source: str) -> np.ndarray:
    """World-to-camera [N, 3, 4] of camera-to-world motions [N, 4, 4] (R^T, -R^T t: no matrix is
    inverted, so a singular one is refused by `_checked` as the non-rigid motion it is)."""
    if not np.isfinite(c2w).all():
        raise InputError(f"{source}: the cameras hold NaN or infinite numbers")
    bad = np.flatnonzero(np.abs(c2w[:, 3] - [0, 0, 0, 1]).max(axis=1) > ROTATION_TOLERANCE)
    if len(bad):
        raise InputError(f'{source}: the "transform_matrix" of {names[bad[0]]} is not a rigid motion (its last row is not 0 0 0 1)')
    rot_t = np.swapaxes(c2w[:, :3, :3], 1, 2)
    return np.concatenate((rot_t, -rot_t @ c2w[:, :3, 3:]), axis=2)


def _ns_intrinsics(entry: dict, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    values = {}
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        v = entry.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise InputError(f'{where}: "{key}" is missing or not a finite number')
        values[key] = float(v)
    distortion = [entry.get(k, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")]
    if any(not isinstance(d, (int, float)) or isinstance(d, bool) or abs(d) > 1e-9 for d in distortion):
        raise InputError(f"{where}: lens distortion (k1..p2) is not handled; undistort the pictures first")
    k = np.array([[values["fl_x"], 0, values["cx"]], [0, values["fl_y"], values["cy"]], [0, 0, 1]])
    return k, _picture_size(values["w"], values["h"], where)


def _picture_size(w: float, h: float, where: str) -> tuple[int, int]:
    """(w, h) in whole pixels, each side 1 to MAX_SIDE."""
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise InputError(f"{where}: a picture of {w:g}x{h:g} pixels (each side must be 1 to {MAX_SIDE})")
    return round(w), round(h)


def _matrix(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        m = np.asarray(value, np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{what} is not a matrix of numbers") from None
    if m.shape != shape:
        raise InputError(f"{what} is not a {shape[0]}x{shape[1]} matrix (shape {list(m.shape)})")
    return m


# ---- COLMAP -------------------------------------------------------------------------------------------
def _from_colmap(folder: Path) -> KnownPoses:
    found = {p.name: p for p in folder.iterdir() if p.is_file()}
    for kind in (".txt", ".bin"):
        if f"cameras{kind}" in found and f"images{kind}" in found:
            break
    else:
        raise InputError(f"{folder}: neither a COLMAP model (cameras and images, .txt or .bin) nor a folder with transforms.json")
    wanted = [f"cameras{kind}", f"images{kind}", f"points3D{kind}", f"rigs{kind}", f"frames{kind}"]
    size = sum(found[n].stat().st_size for n in wanted if n in found)
    if size > MAX_FILE_BYTES:
        raise InputError(f"{folder}: a COLMAP model of over {MAX_FILE_BYTES >> 20} MB")
    with tempfile.TemporaryDirectory(prefix="zipmap-poses-") as tmp:
        for n in wanted:
            if n in found:
                shutil.copyfile(found[n], Path(tmp) / n)
        if f"points3D{kind}" not in found:  # the reader wants one; cameras alone have no points
            (Path(tmp) / f"points3D{kind}").write_bytes(b"" if kind == ".txt" else bytes(8))
        try:  # in time for its size: pycolmap reads a hostile count's worth of records past the end of a file
            model = read_bounded(Path(tmp), "cameras", timeout_s=READ_SECONDS + size / READ_BYTES_PER_SECOND)
        except ModelReadError as exc:
            raise InputError(f"{folder}: {exc}") from None
    cameras, images = model.get("cameras", {}), model.get("images", [])
    if not images or len(images) > MAX_CAMERAS:
        raise InputError(f"{folder}: the COLMAP model has no posed images")
    names, w2c, ks, sizes = [], [], [], []
    for image in images:
        camera = cameras.get(str(image["camera_id"]))
        if camera is None:
            raise InputError(f"{folder}: image {image['name']} names a camera the model does not have")
        _check_colmap_camera(camera, f"{folder.name}, camera of {image['name']}")
        names.append(str(image["name"]))
        w2c.append(np.asarray(image["w2c"], np.float64)[:3, :4])
        ks.append(np.asarray(camera["K"], np.float64))
        sizes.append(_picture_size(int(camera["width"]), int(camera["height"]), f"{folder.name}, camera of {image['name']}"))
    return _checked(names, np.stack(w2c), np.stack(ks), np.array(sizes), f"the COLMAP model {folder.name}")


def _check_colmap_camera(camera: dict, where: str) -> None:
    model, params = str(camera["model"]), list(camera["params"])
    if model not in PINHOLE_PARAMS:
        raise InputError(f"{where}: camera model {model} is not a pinhole; undistort the pictures first (colmap image_undistorter)")
    if any(abs(float(p)) > 1e-9 for p in params[PINHOLE_PARAMS[model] :]):
        raise InputError(f"{where}: {model} with lens distortion is not handled; undistort the pictures first (colmap image_undistorter)")


# ---- checks ---------------------------------------------------------------------------------------------
def _checked(names: list[str], w2c: np.ndarray, k: np.ndarray, sizes: np.ndarray, source: str) -> KnownPoses:
    """Finite rigid motions, positive finite intrinsics, sensible sizes, one camera a name."""
    if not np.isfinite(w2c).all() or not np.isfinite(k).all():
        raise InputError(f"{source}: the cameras hold NaN or infinite numbers")
    rot = w2c[:, :, :3]
    off = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    bad = np.flatnonzero((off > ROTATION_TOLERANCE) | (np.abs(det - 1) > ROTATION_TOLERANCE))
    if len(bad):
        raise InputError(
            f"{source}: the camera of {names[bad[0]]} is not a rigid motion (its rotation is not orthonormal with determinant 1)"
        )
    fx, fy, cx, cy = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]
    bad = np.flatnonzero((fx <= 0) | (fy <= 0))
    if len(bad):
        raise InputError(f"{source}: the camera of {names[bad[0]]} has a focal length that is not positive")
    bad = np.flatnonzero((sizes[:, 0] < 1) | (sizes[:, 1] < 1) | (cx <= 0) | (cy <= 0) | (cx >= sizes[:, 0]) | (cy >= sizes[:, 1]))
    if len(bad):
        raise InputError(f"{source}: the camera of {names[bad[0]]} puts its principal point outside its {sizes[bad[0]].tolist()} picture")
    seen: set[str] = set()
    for name in names:  # one pass: a hostile file may list MAX_CAMERAS
        key = name_key(name)
        if key in seen:
            raise InputError(f"{source}: two cameras for one picture ({name})")
        seen.add(key)
    return KnownPoses(names, w2c.astype(np.float64), k.astype(np.float64), sizes.astype(np.int64), source)
