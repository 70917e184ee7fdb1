"""The known-cameras reader (`--poses`) fuzzed (issue 37; the harness and profiles are in
fuzzing.py): a nerfstudio transforms.json our export wrote, edited key by key with odd values and
mutated byte by byte, and a small COLMAP model (text and binary) mutated. Each gives valid
cameras or an `InputError`, in bounded memory, with nothing written. A COLMAP model is read by
pycolmap in a child process per example, so those examples are few."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fuzzing import Corpus, dumps, examples, fresh, json_values, matrices, mutated, odd_numbers, offsets_of, parse_checked
from hypothesis import given
from hypothesis import strategies as st

from zipmap_core.errors import InputError
from zipmap_core.io import known_poses
from zipmap_core.io.colmap_model import colmap
from zipmap_core.io.exporters import export
from zipmap_core.io.known_poses import KnownPoses, read_known_poses

ROTATION_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def models(recon, tmp_path_factory) -> Corpus:
    """The 3-frame scene's nerfstudio transforms.json, and a COLMAP model of its cameras (text
    and binary, without points: a few hundred bytes), as {file name: bytes} by kind."""
    root = tmp_path_factory.mktemp("known-models")
    scene = dataclasses.replace(recon, dense_points=None, tracks=None)
    export(scene, "nerfstudio", root / "ns")
    export(scene, "colmap", root / "colmap", text=True)
    text = root / "colmap" / "sparse" / "0"
    small = root / "small"
    small.mkdir()
    for name in ("cameras.txt", "rigs.txt", "frames.txt"):
        shutil.copyfile(text / name, small / name)
    lines = (text / "images.txt").read_text().splitlines()
    data = [line for line in lines if not line.startswith("#")]
    (small / "images.txt").write_text("".join(f"{x}\n" for x in lines if x.startswith("#")) + "".join(f"{pose}\n\n" for pose in data[::2]))
    (small / "points3D.txt").write_text("")
    binary = root / "binary"
    binary.mkdir()
    colmap().Reconstruction(str(small)).write_binary(str(binary))
    (small / "points3D.txt").unlink()
    out = Corpus(
        nerfstudio={"transforms.json": (root / "ns" / "transforms.json").read_bytes()},
        colmap_text={p.name: p.read_bytes() for p in sorted(small.iterdir())},
        colmap_binary={p.name: p.read_bytes() for p in sorted(binary.iterdir()) if p.name != "points3D.bin"},
    )
    return out


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-known")


def read_checked(files: dict[str, bytes], arena: Path, target: str = "") -> KnownPoses | None:
    """The property for a folder of `files`, read as known cameras (the folder, or `target` in it)."""
    case = fresh(arena / "case")
    for name, raw in files.items():
        (case / name).write_bytes(raw)
    poses = parse_checked(lambda: read_known_poses(case / target), case, sum(map(len, files.values())))
    if poses is not None:
        n = len(poses.names)
        assert poses.extrinsics.shape == (n, 3, 4) and poses.intrinsics.shape == (n, 3, 3) and poses.sizes.shape == (n, 2)
        assert np.isfinite(poses.extrinsics).all() and np.isfinite(poses.intrinsics).all()
        rot = poses.extrinsics[:, :, :3]
        assert np.abs(np.swapaxes(rot, 1, 2) @ rot - np.eye(3)).max() <= ROTATION_TOLERANCE
        assert (poses.intrinsics[:, 0, 0] > 0).all() and (poses.intrinsics[:, 1, 1] > 0).all() and (poses.sizes > 0).all()
    return poses


# ---- nerfstudio ----------------------------------------------------------------------------------------------
FRAME_KEYS = ("file_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2")


@st.composite
def transforms_edits(draw: st.DrawFn, transforms: dict) -> object:
    """transforms.json with 1 to 4 keys (of the file or of one frame) given odd values or dropped,
    frames repeated or dropped, or any JSON in its place."""
    if draw(st.integers(0, 14)) == 0:
        return draw(json_values)
    out = json.loads(json.dumps(transforms))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "frame", "frame", "frames"]))
        if where == "frames":
            frames = out.get("frames")
            if isinstance(frames, list) and frames:
                choice = draw(st.sampled_from(["repeat", "drop", "odd"]))
                if choice == "repeat":
                    frames.append(json.loads(json.dumps(frames[0])))
                elif choice == "drop":
                    frames.pop()
                else:
                    frames[0] = draw(json_values)
            else:
                out["frames"] = draw(json_values)
            continue
        table = out
        if where == "frame":
            frames = out.get("frames")
            if not (isinstance(frames, list) and frames and isinstance(frames[0], dict)):
                continue
            table = frames[draw(st.integers(0, len(frames) - 1))] if all(isinstance(f, dict) for f in frames) else frames[0]
        key = draw(st.sampled_from([*FRAME_KEYS, "frames"] if where == "top" else FRAME_KEYS))
        if draw(st.integers(0, 4)) == 0:
            table.pop(key, None)
        elif key == "transform_matrix":
            table[key] = draw(st.one_of(matrices(4, 4), json_values))
        elif key == "file_path":
            table[key] = draw(st.one_of(st.text(max_size=12), st.sampled_from(["", ".", "a/../b.png", "images/view_001.png"]), json_values))
        else:
            table[key] = draw(st.one_of(odd_numbers, json_values))
    return out


@examples(400)
@given(data=st.data())
def test_generated_transforms_files(models, arena, data):
    transforms = json.loads(models["nerfstudio"]["transforms.json"])
    edited = data.draw(transforms_edits(Corpus(transforms)))
    read_checked({"transforms.json": dumps(edited)}, arena, "transforms.json")


def _frame_edit(key: str, value: object):
    def edit(transforms: dict) -> dict:
        transforms["frames"][1][key] = value
        return transforms

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_frame_edit("transform_matrix", np.zeros((4, 4)).tolist()), "not a rigid motion"),  # numpy's LinAlgError "Singular matrix"
        (_frame_edit("transform_matrix", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]), "last row is not 0 0 0 1"),
        (_frame_edit("fl_x", 10**400), "beyond 64 bits"),  # TypeError from np.isfinite
        (_frame_edit("w", 1e38), "each side must be 1 to"),  # OverflowError: round(1e38) into an int64 array
        (_frame_edit("transform_matrix", [[10**400, 0, 0, 0]] * 4), "beyond 64 bits"),  # OverflowError from np.asarray
    ],
)
def test_what_fuzzing_found_is_an_input_error(models, arena, edit, message):
    case = fresh(arena / "case")
    path = case / "transforms.json"
    path.write_bytes(dumps(edit(json.loads(models["nerfstudio"]["transforms.json"]))))
    with pytest.raises(InputError, match=message):
        read_known_poses(path)


@examples(150)
@given(data=st.data())
def test_transforms_files_mutated(models, arena, data):
    raw = models["nerfstudio"]["transforms.json"]
    files = {"transforms.json": data.draw(mutated(raw, offsets_of(raw, b'"fl_', b'"w"', b'"h"', b'"file_path"', b"[\n")))}
    read_checked(files, arena, data.draw(st.sampled_from(["transforms.json", ""])))  # the file, or its folder


# ---- COLMAP models -------------------------------------------------------------------------------------------------
def token_edits(text: bytes) -> st.SearchStrategy[bytes]:
    """A text file with tokens of its data lines replaced by odd numbers or words, dropped, or lines repeated."""

    @st.composite
    def edit(draw: st.DrawFn) -> bytes:
        lines = text.decode().split("\n")
        data_lines = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
        for _ in range(draw(st.integers(1, 3))):
            if not data_lines:
                break
            i = draw(st.sampled_from(data_lines))
            tokens = lines[i].split(" ")
            j = draw(st.integers(0, len(tokens) - 1))
            kind = draw(st.sampled_from(["number", "word", "drop", "repeat"]))
            if kind == "number":
                tokens[j] = repr(draw(odd_numbers))
            elif kind == "word":
                tokens[j] = draw(st.sampled_from(["", "x", "OPENCV_FISHEYE", "PINHOLE", "-1", "99999999999999999999", "nan", "1e308"]))
            elif kind == "drop":
                del tokens[j]
            lines[i] = " ".join(tokens)
            if kind == "repeat":
                lines.insert(i, lines[i])
        return "\n".join(lines).encode()

    return edit()


@examples(20)
@given(data=st.data())
def test_colmap_text_models_mutated(models, arena, data):
    files = dict(models["colmap_text"])
    name = data.draw(st.sampled_from(sorted(files)))
    files[name] = data.draw(st.one_of(token_edits(files[name]), mutated(files[name])))
    if data.draw(st.integers(0, 5)) == 0:
        del files[data.draw(st.sampled_from(sorted(files)))]
    read_checked(files, arena)


@examples(15)
@given(data=st.data())
def test_colmap_binary_models_mutated(models, arena, data):
    """Bytes of the binary model edited, most near its counts and the starts of its records."""
    files = dict(models["colmap_binary"])
    name = data.draw(st.sampled_from(sorted(files)))
    files[name] = data.draw(mutated(files[name], [0, 8, 16, 24, 32]))
    read_checked(files, arena)


def test_the_unmutated_models_read(models, arena):
    assert read_checked(models["nerfstudio"], arena, "transforms.json") is not None
    for kind in ("colmap_text", "colmap_binary"):
        poses = read_checked(models[kind], arena)
        assert poses is not None and len(poses.names) == 3, kind


def test_a_truncated_binary_model_is_refused_in_time_for_its_size(models, arena, monkeypatch):
    """frames.bin cut at 60 bytes made pycolmap read records past its end for 20 to 30 s (two
    minutes were allowed whatever the size): the time allowed now grows from READ_SECONDS with
    the model's size (shortened here, so the test does not wait)."""
    monkeypatch.setattr(known_poses, "READ_SECONDS", 1.0)
    allowed = []
    real = known_poses.read_bounded

    def read_bounded(folder, what, timeout_s):
        allowed.append(timeout_s)
        return real(folder, what, timeout_s=timeout_s)

    monkeypatch.setattr(known_poses, "read_bounded", read_bounded)
    files = dict(models["colmap_binary"])
    files["frames.bin"] = files["frames.bin"][:60]
    assert read_checked(files, arena) is None
    size = sum(map(len, files.values()))
    assert allowed == [pytest.approx(1.0 + size / known_poses.READ_BYTES_PER_SECOND)]  # its size's time, not minutes
