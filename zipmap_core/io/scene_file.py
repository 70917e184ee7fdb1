"""The `.zipmap` container, read as an attacker may have written it.

Every size is checked before anything is read: the zip's declared member sizes against what the
manifest's frame count and image size imply, each `.npy` header's shape and dtype against the
same, and each array's byte count against the bytes its member really holds. A member is read
only up to its declared size (zipfile enforces it and checks the CRC), so memory stays about the
size of the real data whatever a header claims. No pickles: `allow_pickle` is never set.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from tokenize import TokenError
from typing import Any

import numpy as np

from ..errors import SceneFileError
from . import dense_points as dense
from .dense_points import DensePoints
from .files import parse_json, regular_file_problem
from .tracks import Tracks, check_counts
from .tracks import expected_bytes as tracks_bytes

SCENE_FORMAT = "zipmap-scene"
SCENE_VERSION = 2  # 2: points derived from depth may be left out ("derived_points"); 1 is written otherwise
DERIVED = ("points_cam", "points_world")
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_STATE_BYTES = 8 * 2**30  # the official model's state is ~0.6 GB in float32
WRITE_CHUNK = 16 * 2**20  # bytes per write: CRC and copy stay in cache
NPY_SLACK = 4096  # an .npy header and its zip entry's local header, per array, at most


def expected_arrays(num_frames: int, hw: tuple[int, int], derived: bool = False) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype kind ("u" unsigned, "f" float, "i" integer) of every array of a scene
    (without the point maps when they are `derived` from depth and cameras on loading)."""
    s, (h, w) = num_frames, hw
    arrays = {
        "images": ((s, h, w, 3), "u"),
        "extrinsics": ((s, 3, 4), "f"),
        "intrinsics": ((s, 3, 3), "f"),
        "depth": ((s, h, w), "f"),
        "depth_conf": ((s, h, w), "f"),
        "points_cam": ((s, h, w, 3), "f"),
        "points_world": ((s, h, w, 3), "f"),
        "original_wh": ((s, 2), "i"),
    }
    return {k: v for k, v in arrays.items() if not (derived and k in DERIVED)}


def available_memory() -> int:
    """Bytes of memory available now, page cache included (Linux's MemAvailable): a bound for
    what one file may make us allocate."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**63


# ---- manifest ------------------------------------------------------------------------------------
def check_manifest(manifest: Any, name: str) -> tuple[int, tuple[int, int], bool]:
    """(frame count, (h, w), points derived) of a manifest that is what we write, else a
    `SceneFileError`."""
    if not isinstance(manifest, dict):
        raise SceneFileError(f"{name} is damaged: its manifest is a {type(manifest).__name__}, not an object")
    if manifest.get("format") != SCENE_FORMAT:
        raise SceneFileError(f"{name} is not a ZipMap scene (format {manifest.get('format')!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SceneFileError(f"{name} is damaged: scene format version {version!r} is not a positive whole number")
    if version > SCENE_VERSION:
        raise SceneFileError(
            f"{name} was written by a newer ZipMap Studio (scene format {version}; this version reads "
            f"up to {SCENE_VERSION}). Please update ZipMap Studio."
        )
    names = manifest.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SceneFileError(f"{name} is damaged: the manifest has no list of frame names")
    hw = manifest.get("image_hw")
    if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and 0 < v <= 16384 for v in hw)):
        raise SceneFileError(f"{name} is damaged: image size {hw!r} is not [height, width] in pixels")
    count = manifest.get("num_frames", len(names))
    if count != len(names):
        raise SceneFileError(f"{name} is damaged: {count!r} frames declared, {len(names)} names listed")
    for key in ("metadata", "timings"):
        if not isinstance(manifest.get(key, {}), dict):
            raise SceneFileError(f"{name} is damaged: '{key}' is not an object")
    scale = manifest.get("state_scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) or scale <= 0:
        raise SceneFileError(f"{name} is damaged: state_scale {scale!r} is not a positive number")
    derived = manifest.get("derived_points", False)
    if not isinstance(derived, bool):
        raise SceneFileError(f"{name} is damaged: derived_points {derived!r} is not true or false")
    return len(names), (hw[0], hw[1]), derived


def expected_bytes(num_frames: int, hw: tuple[int, int], derived: bool = False) -> int:
    """The most `arrays.npz` may hold for this manifest (float64 allowed, as numpy may write)."""
    return sum(int(np.prod(shape)) * 8 + NPY_SLACK for shape, _ in expected_arrays(num_frames, hw, derived).values())


# ---- members -------------------------------------------------------------------------------------
def _member(zf: zipfile.ZipFile, member: str, limit: int, name: str, what: str) -> bytes:
    """A member's bytes, if its declared size is within `limit`, its compressed size within the
    file (zipfile asks the file for that many bytes at once, up to a GiB, whatever it holds)
    and, read and parsed (about twice its size), within the memory free now."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise SceneFileError(f"{name} is damaged: it has no {member}") from None
    if info.file_size > limit:
        raise SceneFileError(
            f"{name} is damaged or hostile: {member} declares {info.file_size:,} bytes, more than {what} ({limit:,} bytes); it was not read"
        )
    archive = os.path.getsize(zf.filename) if zf.filename else info.compress_size
    if info.compress_size > archive:
        raise SceneFileError(
            f"{name} is damaged or hostile: {member} declares {info.compress_size:,} compressed bytes, more than the file's {archive:,}"
        )
    free = available_memory()
    if 2 * info.file_size > free:
        raise SceneFileError(f"{name} needs {2 * info.file_size / 2**30:.1f} GB of memory to open and {free / 2**30:.1f} GB are free")
    return zf.read(member)


def _read_npy(data: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> np.ndarray:
    """One array, its header checked against the bytes the member really declares."""
    with data.open(member) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(fh, max_header_size=NPY_SLACK)
        except (ValueError, SyntaxError, TokenError) as exc:  # numpy tokenizes and evaluates the header's text
            raise SceneFileError(f"{name} is damaged: {member.filename} is not an array ({exc})") from exc
        if dtype.hasobject or dtype.kind not in "uif" or dtype.itemsize > 8:
            raise SceneFileError(f"{name} is damaged: {member.filename} holds {dtype}, not numbers")
        count = math.prod(shape)  # Python's whole numbers: a declared 2**64 is not an OverflowError
        nbytes = count * dtype.itemsize
        if nbytes != member.file_size - fh.tell():
            raise SceneFileError(
                f"{name} is damaged or hostile: {member.filename} declares shape {shape} ({nbytes:,} bytes) but "
                f"holds {member.file_size - fh.tell():,} bytes; it was not read"
            )
        raw = fh.read(nbytes)
    if len(raw) != nbytes:
        raise SceneFileError(f"{name} is damaged: {member.filename} is truncated")
    array = np.frombuffer(raw, dtype=dtype, count=count)
    return (array.reshape(shape[::-1]).T if fortran else array.reshape(shape)).copy()


def read_npz(blob: bytes, name: str, member: str) -> dict[str, np.ndarray]:
    """Every array of an in-memory `.npz`, each size-checked before it is read."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as data:
            out = {}
            for info in data.infolist():
                if not info.filename.endswith(".npy"):
                    raise SceneFileError(f"{name} is damaged: {member} holds {info.filename!r}, not an array")
                out[info.filename[:-4]] = _read_npy(data, info, name)
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:  # zlib: a deflated member's bad data
        raise SceneFileError(f"{name} is damaged: {member} cannot be read ({exc})") from exc


def check_arrays(
    arrays: dict[str, np.ndarray], num_frames: int, hw: tuple[int, int], name: str, derived: bool = False
) -> dict[str, np.ndarray]:
    """The scene's arrays, each of the shape the manifest implies, in the dtype we work in."""
    out = {}
    for key, (shape, kind) in expected_arrays(num_frames, hw, derived).items():
        if key not in arrays:
            raise SceneFileError(f"{name} is damaged: missing arrays ['{key}']")
        a = arrays[key]
        if a.shape != shape:
            raise SceneFileError(
                f"{name} is damaged: {key} has shape {a.shape}, but the manifest's {num_frames} frames at {hw[1]}x{hw[0]} need {shape}"
            )
        if kind == "u" and a.dtype != np.uint8:
            raise SceneFileError(f"{name} is damaged: {key} is {a.dtype}, not uint8")
        out[key] = a.astype({"u": np.uint8, "f": np.float32, "i": np.int32}[kind], copy=False)
    return out


# arrays that must hold finite numbers in every frame (a NaN confidence is allowed: it ranks last)
FINITE_ARRAYS = ("extrinsics", "intrinsics", "depth")


def first_non_finite(arrays: dict[str, np.ndarray], keys: tuple[str, ...] = FINITE_ARRAYS, first_frame: int = 0) -> str | None:
    """'depth of frame 3' for the first array and frame holding NaN or infinity, else None.
    Arrays are [frames, ...]; `first_frame` numbers a run of frames inside a longer scene."""
    for key in keys:
        a = arrays.get(key)
        if a is None or a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(1) if a.ndim else np.array([not np.isfinite(a)])
        if bad.any():
            return f"{key} of frame {first_frame + int(np.argmax(bad))}"
    return None


def check_cameras(intrinsics: np.ndarray, name: str) -> None:
    """Every frame's intrinsics a camera: positive focal lengths and a last row of 0, 0, 1."""
    ok = (intrinsics[:, 0, 0] > 0) & (intrinsics[:, 1, 1] > 0) & np.all(intrinsics[:, 2] == [0, 0, 1], axis=1)
    if not ok.all():
        raise SceneFileError(
            f"{name} is damaged: the intrinsics of frame {int(np.argmin(ok))} are not a camera's "
            f"(focal lengths must be positive, the last row 0 0 1)"
        )


def first_non_finite_state(state: list[dict[str, np.ndarray]]) -> str | None:
    """'the scene state's layer 2 (w1)' for the first non-finite fast weight, else None."""
    for i, layer in enumerate(state):
        for k, v in layer.items():
            if not np.isfinite(v).all():
                return f"the scene state's layer {i} ({k})"
    return None


def check_state(flat: dict[str, np.ndarray], name: str) -> list[dict[str, np.ndarray]]:
    """`layer{i}.w0|w1|w2` for i = 0..L-1, each a 3-D float array, into per-layer dicts."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        layer, _, weight = key.partition(".")
        if not (layer.startswith("layer") and layer[5:].isdigit() and weight in ("w0", "w1", "w2")):
            raise SceneFileError(f"{name} is damaged: unexpected scene-state entry {key!r}")
        if value.ndim != 3 or value.dtype.kind != "f":
            raise SceneFileError(f"{name} is damaged: scene-state entry {key} has shape {value.shape}, {value.dtype}")
        layers.setdefault(int(layer[5:]), {})[weight] = value.astype(np.float32, copy=False)
    if not layers or sorted(layers) != list(range(len(layers))) or any(len(v) != 3 for v in layers.values()):
        raise SceneFileError(f"{name} is damaged: its scene state is incomplete")
    return [layers[i] for i in range(len(layers))]


@dataclass
class SceneContents:
    """What a `.zipmap` holds, every part checked."""

    manifest: dict
    arrays: dict[str, np.ndarray]
    state: list[dict[str, np.ndarray]] | None
    tracks: Tracks | None
    dense_points: DensePoints | None
    state_frame: np.ndarray | None
    masks: np.ndarray | None


def read_scene(path: os.PathLike | str) -> SceneContents:
    """The contents of a `.zipmap` file; `SceneFileError` for anything else."""
    name = os.path.basename(path)
    problem = regular_file_problem(path, "a scene file")
    if problem:
        raise SceneFileError(problem)
    try:
        with zipfile.ZipFile(path) as zf:
            text = _member(zf, "manifest.json", MAX_MANIFEST_BYTES, name, "a manifest needs")
            try:
                manifest = parse_json(text)
            except ValueError as exc:  # bad UTF-8 and bad JSON alike
                raise SceneFileError(f"{name} is damaged: its manifest is not JSON ({exc})") from exc
            frames, hw, derived = check_manifest(manifest, name)
            blob = _member(zf, "arrays.npz", expected_bytes(frames, hw, derived), name, f"{frames} frames at {hw[1]}x{hw[0]} need")
            arrays = check_arrays(read_npz(blob, name, "arrays.npz"), frames, hw, name, derived)
            del blob
            tracks = None
            if "tracks" in manifest:
                counts = check_counts(manifest["tracks"], name)
                blob = _member(zf, "tracks.npz", tracks_bytes(counts), name, f"{counts['points']} tracks need")
                tracks = Tracks.from_arrays(read_npz(blob, name, "tracks.npz"), counts, frames, hw, name)
                del blob
            points = None
            if "dense_points" in manifest:
                counts = dense.check_counts(manifest["dense_points"], name)
                blob = _member(zf, "dense.npz", dense.expected_bytes(counts), name, f"{counts['points']} dense points need")
                points = DensePoints.from_arrays(read_npz(blob, name, "dense.npz"), counts, frames, name)
                del blob
            masks = None
            if manifest.get("masks") is True:
                blob = _member(zf, "masks.npz", frames * hw[0] * hw[1] * 8 + NPY_SLACK, name, f"masks of {frames} frames need")
                masks = check_masks(read_npz(blob, name, "masks.npz"), (frames, *hw), name)
                del blob
            state = None
            if manifest.get("has_state"):
                blob = _member(zf, "state.npz", MAX_STATE_BYTES, name, "a scene state may hold")
                state = check_state(read_npz(blob, name, "state.npz"), name)
            bad = first_non_finite(arrays) or (first_non_finite_state(state) if state else None)
            if bad:
                raise SceneFileError(f"{name} is damaged: {bad} holds NaN or infinite numbers")
            check_cameras(arrays["intrinsics"], name)
            frame = check_state_frame(manifest.get("state_frame"), name)
    except SceneFileError:
        raise
    except FileNotFoundError:
        raise SceneFileError(f"scene file not found: {path}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as exc:
        raise SceneFileError(f"{name} is damaged or not a ZipMap scene: {exc}") from exc
    return SceneContents(manifest, arrays, state, tracks, points, frame, masks)


def check_masks(arrays: dict[str, np.ndarray], shape: tuple[int, int, int], name: str) -> np.ndarray:
    """`masks.npz`'s `keep`: [S, H, W] of 0 and 1 (bool or a whole-number type)."""
    keep = arrays.get("keep")
    if keep is None or keep.shape != shape or keep.dtype.kind not in "biu":
        raise SceneFileError(f"{name} is damaged: its masks are not {list(shape)} of 0 and 1")
    return keep.astype(bool)


def check_state_frame(value: Any, name: str) -> np.ndarray | None:
    """The manifest's `state_frame`: absent, or a [3, 4] turn (orthonormal, determinant 1) and move."""
    if value is None:
        return None
    try:
        frame = np.asarray(value, np.float64)
    except (ValueError, TypeError):
        frame = np.zeros(0)
    ok = frame.shape == (3, 4) and np.isfinite(frame).all()
    if ok:
        rot = frame[:, :3]
        ok = np.abs(rot.T @ rot - np.eye(3)).max() < 1e-4 and abs(np.linalg.det(rot) - 1) < 1e-4
    if not ok:
        raise SceneFileError(f"{name} is damaged: its state_frame is not a turn and a move ([3, 4], finite, orthonormal)")
    return frame


def write_scene(
    tmp: os.PathLike | str,
    manifest: dict,
    arrays: dict[str, np.ndarray],
    state: dict[str, np.ndarray] | None,
    extras: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """Writes the container into `tmp` (the caller's atomic temporary; Python's zipfile reports
    every write error, so a failed write never replaces a good scene); `extras`: the optional
    members (`tracks.npz`, `dense.npz`) by name."""
    with zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        _write_npz(zf, "arrays.npz", arrays)
        if state is not None:
            _write_npz(zf, "state.npz", state)
        for member, contents in (extras or {}).items():
            _write_npz(zf, member, contents)


def _write_npz(zf: zipfile.ZipFile, member: str, arrays: dict[str, np.ndarray]) -> None:
    """An `.npz` streamed into the archive, stored: deflate shrinks float maps by a few per cent
    at about 200 ms a 518-px frame, 20x the rest of the work around the network (`zipmap bench
    pipeline`). Each array goes out from its own memory (no serialised copy, as `np.savez`
    makes)."""
    with zf.open(member, "w", force_zip64=True) as out, zipfile.ZipFile(out, "w") as npz:
        for key, array in arrays.items():
            array = np.ascontiguousarray(array)
            with npz.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
                flat = memoryview(array.reshape(-1)).cast("B")
                for start in range(0, len(flat), WRITE_CHUNK):
                    fh.write(flat[start : start + WRITE_CHUNK])
