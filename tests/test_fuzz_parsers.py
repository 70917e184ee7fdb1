"""The small parsers fuzzed (issue 37; the harness and profiles are in fuzzing.py): the camera
file of `zipmap render --c2w`, the intrinsics of `--intrinsics` (four numbers, a JSON file,
COLMAP's cameras.txt) and the mask folder of `--masks`, from valid files mutated and from
generated JSON, text and pictures of odd shapes, sizes and numbers. Each gives valid cameras (or
masks) or an `InputError`, in bounded memory, with nothing written. (The scene file,
checkpoints, known cameras and the command line have files of their own.)"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from fuzzing import (
    deep,
    dumps,
    examples,
    fresh,
    json_values,
    matrices,
    mutated,
    odd_floats,
    odd_numbers,
    odd_text,
    offsets_of,
    parse_checked,
)
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from zipmap_core.errors import InputError
from zipmap_core.io.intrinsics import KnownIntrinsics, parse_intrinsics
from zipmap_core.io.masks import read_masks
from zipmap_core.options import MAX_PATH_VIEWS
from zipmap_core.pipeline.camera_path import read_poses

ROTATION_TOLERANCE = 1e-3  # what the readers of cameras allow a rotation read from a file


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-parsers")


def rigid(m: np.ndarray) -> bool:
    rot = np.asarray(m, np.float64)[..., :3, :3]
    off = np.abs(np.swapaxes(rot, -1, -2) @ rot - np.eye(3)).max()
    return bool(off <= 2 * ROTATION_TOLERANCE and np.abs(np.linalg.det(rot) - 1).max() <= 2 * ROTATION_TOLERANCE)


@st.composite
def rotations(draw: st.DrawFn) -> np.ndarray:
    """A rotation matrix from a random unit quaternion."""
    q = np.array([draw(st.floats(-1, 1)) for _ in range(4)]) + np.array([1e-3, 0, 0, 0])
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@st.composite
def motions(draw: st.DrawFn, rows: int = 4) -> list:
    """A camera-to-world motion (rows 3 or 4) as nested lists, now and then with one entry odd."""
    m = np.eye(4)
    m[:3, :3] = draw(rotations())
    m[:3, 3] = [draw(st.floats(-1e3, 1e3)) for _ in range(3)]
    out = m[:rows].tolist()
    if draw(st.integers(0, 3)) == 0:
        out[draw(st.integers(0, rows - 1))][draw(st.integers(0, 3))] = draw(st.one_of(odd_numbers, json_values))
    return out


# ---- camera files (zipmap render --c2w) --------------------------------------------------------------------
camera_k = st.one_of(st.just([[500, 0, 320], [0, 500, 240], [0, 0, 1]]), matrices(3, 3), json_values)


@st.composite
def camera_files(draw: st.DrawFn) -> object:
    """{"c2w": [...], "intrinsics"?: ...} or a bare list of matrices: sound motions, near-matrices
    of odd numbers, or any JSON, in lists of 0 to 4."""
    pose = st.one_of(motions(4), motions(3), matrices(4, 4), matrices(3, 4), json_values)
    poses = draw(st.one_of(st.lists(pose, max_size=4), pose))
    form = draw(st.sampled_from(["dict", "dict", "dict+k", "list", "json"]))
    if form == "json":
        return draw(json_values)
    if form == "list":
        return poses
    out = {"c2w": poses, **({"intrinsics": draw(camera_k)} if form == "dict+k" else {})}
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.sampled_from(["c2w", "intrinsics", "extra"]))] = draw(json_values)
    return out


def read_poses_checked(raw: bytes, arena: Path) -> None:
    case = fresh(arena / "case")
    path = case / "cameras.json"
    path.write_bytes(raw)
    out = parse_checked(lambda: read_poses(path), case, len(raw))
    if out is not None:
        poses, k = out
        assert poses.ndim == 3 and poses.shape[1:] == (3, 4) and 1 <= len(poses) <= MAX_PATH_VIEWS
        assert np.isfinite(poses).all() and rigid(poses), "a camera-to-world matrix that is not a rigid motion was accepted"
        if k is not None:
            assert k.shape == (3, 3) and np.isfinite(k).all()
            assert k[0, 0] > 0 and k[1, 1] > 0 and np.array_equal(k[2], [0, 0, 1]), f"intrinsics that are no camera's were accepted: {k}"


@examples(400)
@given(content=camera_files())
@example(content={"c2w": [[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]]})  # all zeros: rendered a blank video, exit 0
@example(content={"c2w": [np.eye(4).tolist()], "intrinsics": [[0, 0, 0], [0, 0, 0], [0, 0, 0]]})
@example(content={"c2w": [[[10**400, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]]})  # OverflowError from numpy
def test_generated_camera_files(arena, content):
    read_poses_checked(dumps(content), arena)


@examples(200)
@given(data=st.data())
def test_camera_files_mutated(arena, data):
    valid = json.dumps({"c2w": [np.eye(4).tolist(), np.eye(4)[:3].tolist()], "intrinsics": [[500, 0, 320], [0, 500, 240], [0, 0, 1]]})
    raw = valid.encode()
    read_poses_checked(data.draw(mutated(raw, offsets_of(raw, b"[", b"1", b'"'))), arena)


def test_a_camera_file_nested_too_deeply_is_an_input_error(arena):
    read_poses_checked(deep(100_000).encode(), arena)


# ---- intrinsics (--intrinsics) --------------------------------------------------------------------------------
number_text = st.one_of(
    st.floats(0.5, 5000).map(str),
    st.integers(1, 5000).map(str),
    st.sampled_from(["500", "320.5", "0", "-1", "nan", "inf", "-inf", "1e999", "1e-999", " 7 ", "1_000", "0x10", "", "٣", "1,5", "++1"]),
    odd_floats.map(repr),
    st.integers(-(2**70), 2**70).map(str),
)


def check_intrinsics(k: KnownIntrinsics) -> None:
    values = np.array([k.fx, k.fy, k.cx, k.cy])
    assert np.isfinite(values).all() and (values > 0).all(), k
    if k.size is not None:
        assert all(isinstance(v, int) and 0 < v <= 1 << 16 for v in k.size), k


def intrinsics_checked(text: str, case: Path, size: int = 0) -> None:
    k = parse_checked(lambda: parse_intrinsics(text), case, size)
    if k is not None:
        check_intrinsics(k)


@examples(400)
@given(parts=st.one_of(st.lists(number_text, min_size=4, max_size=4), st.lists(number_text, min_size=1, max_size=6)), text=odd_text)
@example(parts=["500", "500", "320", "240"], text="")
def test_intrinsics_given_as_text(arena, parts, text):
    """fx,fy,cx,cy with odd numbers or counts, or text that names no file."""
    case = fresh(arena / "case")
    intrinsics_checked(",".join(parts), case)
    intrinsics_checked(text, case)


@st.composite
def intrinsics_json(draw: st.DrawFn) -> object:
    good = {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    out = dict(good)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*good, "other"]))
        if draw(st.integers(0, 4)) == 0:
            out.pop(key, None)
        else:
            out[key] = draw(st.one_of(odd_numbers, json_values))
    return out


MODELS = ["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "FISHEYE", "", "pinhole"]


@st.composite
def cameras_txt(draw: st.DrawFn) -> str:
    """COLMAP's cameras.txt: comments, blank lines and camera lines of any model, size and params."""
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for _ in range(draw(st.integers(0, 3))):
        fields = [draw(st.sampled_from(["1", "2", "x"])), draw(st.sampled_from(MODELS)), draw(number_text), draw(number_text)]
        fields += draw(st.lists(number_text, max_size=8))
        lines.append(draw(st.sampled_from([" ", "\t"])).join(fields))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "#", "   "])))
    return "\n".join(lines)


@examples(400)
@given(kind=st.sampled_from(["json", "txt"]), data=st.data())
def test_intrinsics_files(arena, kind, data):
    case = fresh(arena / "case")
    raw = dumps(data.draw(intrinsics_json())) if kind == "json" else data.draw(cameras_txt()).encode()
    if data.draw(st.integers(0, 4)) == 0:
        raw = data.draw(mutated(raw))
    path = case / f"camera.{kind}"
    path.write_bytes(raw)
    intrinsics_checked(str(path), case, len(raw))


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("camera.json", dumps({"fx": 10**400, "fy": 500, "cx": 320, "cy": 240}), "beyond 64 bits"),  # OverflowError from float()
        ("a\x00b", b"", "holds a NUL character"),  # ValueError from os.stat
    ],
)
def test_what_fuzzing_found_is_an_input_error(arena, name, raw, message):
    case = fresh(arena / "case")
    if raw:
        (case / name).write_bytes(raw)
    with pytest.raises(InputError, match=message):
        parse_intrinsics(str(case / name))


def test_a_huge_intrinsics_file_is_refused_unread(arena):
    case = fresh(arena / "case")
    path = case / "cameras.txt"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # a sparse GiB: never read
    intrinsics_checked(str(path), case)
    assert math.isclose(path.stat().st_size, 1 << 30)


# ---- masks (--masks) -------------------------------------------------------------------------------------
FRAMES = ["a.jpg", "b.png"]  # two 42x28 pictures, cut (crop) or padded (pad) to 42 wide: [28, 42] or [42, 42]
MASK_NAMES = ["a.jpg.png", "a.png", "a.PNG", "A.png", "a.jpg", "b.png", "b.png.png", "b.tif", "b.txt", ".png", "a", "c.png"]


def png(size: tuple[int, int], mode: str = "L", value: int = 255) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def mask_files(draw: st.DrawFn) -> bytes:
    """A mask picture: the right size or another, in any mode, its bytes mutated, its header
    declaring a huge size, or not a picture at all."""
    size = draw(st.sampled_from([(42, 28)] * 4 + [(28, 42), (41, 28), (1, 1), (4200, 2800)]))
    raw = png(size, draw(st.sampled_from(["L", "1", "RGB", "RGBA", "I;16", "P"])), draw(st.sampled_from([0, 1, 128, 255])))
    kind = draw(st.sampled_from(["picture"] * 4 + ["mutated", "huge header", "empty", "text"]))
    if kind == "mutated":
        return draw(mutated(raw, [8, 16, 24, 33]))
    if kind == "huge header":  # the IHDR's width and height (its CRC then wrong, as a hostile writer leaves it)
        return raw[:16] + (100_000).to_bytes(4, "big") * 2 + raw[24:]
    return {"picture": raw, "empty": b"", "text": b"not a picture"}[kind]


@st.composite
def mask_folders(draw: st.DrawFn) -> dict[str, bytes]:
    """A mask for each picture, then 0 to 3 masks replaced, added under any name, or dropped."""
    files = {"a.jpg.png": png((42, 28)), "b.png": png((42, 28), value=0)}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(MASK_NAMES))
        if draw(st.integers(0, 4)) == 0:
            files.pop(name, None)
        else:
            files[name] = draw(mask_files())
    return files


@examples(150)
@given(files=mask_folders(), mode=st.sampled_from(["crop", "pad"]))
def test_mask_folders(arena, files, mode):
    case = fresh(arena / "case")
    folder = case / "masks"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    hw = (28, 42) if mode == "crop" else (42, 42)
    sizes = np.array([[42, 28], [42, 28]])
    keep = parse_checked(lambda: read_masks(folder).stack(FRAMES, [None, None], sizes, mode, hw), case, sum(map(len, files.values())))
    if keep is not None:
        assert keep.shape == (2, *hw) and keep.dtype == bool
