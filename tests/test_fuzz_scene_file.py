"""The scene-file reader fuzzed (issue 37; the harness and profiles are in fuzzing.py): real saved
scenes mutated at every level (the file's bytes, a member's bytes with the archive rebuilt, one
array's `.npy` bytes with both archives rebuilt), and generated manifests, `.npy` headers and
central directories that lie about sizes. Every one opens as a valid scene or is a
`SceneFileError`, in bounded memory, with nothing written."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fuzzing import (
    Corpus,
    dumps,
    examples,
    fresh,
    json_values,
    lie_about_sizes,
    matrices,
    mutated,
    odd_ints,
    odd_numbers,
    offsets_of,
    parse_checked,
    zip_hot_spots,
)
from hypothesis import given
from hypothesis import strategies as st

from zipmap_core.errors import SceneFileError
from zipmap_core.io.dense_points import DensePoints
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.io.tracks import Tracks

STORED_MEMBERS = ("arrays.npz", "state.npz", "tracks.npz", "dense.npz", "masks.npz")


# ---- the valid scenes mutated --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(recon, tmp_path_factory) -> dict[str, bytes]:
    """A plain scene (format 2, point maps derived) and a full one (format 1: point maps, a scene
    state, COLMAP's tracks, dense points, a state frame and masks), as bytes."""
    rng = np.random.default_rng(0)
    s, (h, w) = recon.num_frames, recon.image_hw
    tracks = Tracks(
        rng.normal(size=(5, 3)).astype(np.float32),
        rng.integers(0, 255, (5, 3)).astype(np.uint8),
        rng.random(5).astype(np.float32),
        np.array([[0, 0], [0, 1], [1, 1], [2, 2], [3, 0], [4, 1], [4, 2], [1, 0]], np.int32),
        (rng.random((8, 2)) * [w, h]).astype(np.float32),
    )
    dense = DensePoints(
        rng.normal(size=(6, 3)).astype(np.float32),
        rng.integers(0, 255, (6, 3)).astype(np.uint8),
        rng.random(6).astype(np.float32),
        np.array([0, 1, 2, 0, 1, s - 1], np.int32),
    )
    state = [{k: rng.normal(size=(1, 2, 2)).astype(np.float32) for k in ("w0", "w1", "w2")} for _ in range(2)]
    frame = np.concatenate((np.eye(3)[[1, 0, 2]] * [[1], [1], [-1]], [[0.5], [0.0], [1.0]]), 1)  # a turn of det 1 and a move
    masks = rng.random((s, h, w)) > 0.2
    full = dataclasses.replace(recon, state=state, tracks=tracks, dense_points=dense, state_frame=frame, masks=masks)
    plain = dataclasses.replace(recon, points_cam=None, points_world=None, points_from_depth=None)
    folder = tmp_path_factory.mktemp("scenes")
    out = Corpus({name: r.save(folder / f"{name}.zipmap").read_bytes() for name, r in (("plain", plain), ("full", full))})
    full_back = Reconstruction.load(folder / "full.zipmap")
    assert full_back.tracks is not None and full_back.masks is not None
    return out


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scenes")


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def rezip(parts: dict[str, bytes], deflated: tuple[str, ...] = ("manifest.json",)) -> bytes:
    """An archive of `parts`, with sound CRCs and sizes (what a hostile writer would make)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)
    return buf.getvalue()


def load_checked(data: bytes, arena: Path) -> Reconstruction | None:
    """The property for one scene file's bytes; a scene that opens is checked for use."""
    case = fresh(arena / "case")
    path = case / "scene.zipmap"
    path.write_bytes(data)
    recon = parse_checked(lambda: Reconstruction.load(path), case, len(data))
    if recon is not None:
        check_usable(recon)
    return recon


def check_usable(recon: Reconstruction) -> None:
    """What the viewer and the exports ask of a scene that opened works."""
    s, (h, w) = recon.num_frames, recon.image_hw
    assert recon.images.shape == (s, h, w, 3) and recon.images.dtype == np.uint8
    assert recon.extrinsics.shape == (s, 3, 4) and np.isfinite(recon.extrinsics).all()
    assert recon.intrinsics.shape == (s, 3, 3) and (recon.intrinsics[:, 0, 0] > 0).all()
    assert recon.depth.shape == recon.depth_conf.shape == (s, h, w) and np.isfinite(recon.depth).all()
    assert recon.points_world.shape == (s, h, w, 3)
    points, colours, conf = recon.point_cloud(50.0)
    assert len(points) == len(colours) == len(conf)
    assert np.isfinite(recon.field_of_view()) and np.isfinite(recon.state_scale) and recon.state_scale > 0
    if recon.tracks is not None:
        recon.tracks.seen_in(list(range(s)))
        recon.tracks.depth_maps(recon.extrinsics, (h, w))
    if recon.dense_points is not None:
        recon.dense_points.of_frames(list(range(s)), renumber=True)
    if recon.state is not None:
        assert all(set(layer) == {"w0", "w1", "w2"} for layer in recon.state)
    if recon.masks is not None:
        assert recon.masks.shape == (s, h, w) and recon.masks.dtype == bool


def any_scene(data: st.DataObject, scenes: dict[str, bytes]) -> bytes:
    """One of the valid scenes, drawn by name (so a failure report names it)."""
    return scenes[data.draw(st.sampled_from(sorted(scenes)), label="scene")]


@examples(200)
@given(data=st.data())
def test_a_scene_files_bytes_mutated(scenes, arena, data):
    """Edits anywhere in the file, half of them on its zip and .npy headers (most break a CRC)."""
    base = any_scene(data, scenes)
    load_checked(data.draw(mutated(base, zip_hot_spots(base))), arena)


@examples(250)
@given(data=st.data())
def test_a_member_mutated_in_a_sound_archive(scenes, arena, data):
    """A member's bytes edited and the archive rebuilt with the CRCs that match: the edits reach
    the manifest's JSON and the inner archives' headers."""
    parts = members(any_scene(data, scenes))
    name = data.draw(st.sampled_from(sorted(parts)))
    parts[name] = data.draw(mutated(parts[name], zip_hot_spots(parts[name]) + offsets_of(parts[name], b'"', b":")))
    if data.draw(st.booleans()):
        del parts[data.draw(st.sampled_from(sorted(parts)))]
    load_checked(rezip(parts), arena)


@examples(250)
@given(data=st.data())
def test_an_array_mutated_in_sound_archives(scenes, arena, data):
    """One `.npy` of one member edited, mostly in its header, both archives rebuilt."""
    parts = members(any_scene(data, scenes))
    name = data.draw(st.sampled_from([n for n in STORED_MEMBERS if n in parts]))
    arrays = members(parts[name])
    key = data.draw(st.sampled_from(sorted(arrays)))
    npy = arrays[key]
    arrays[key] = data.draw(mutated(npy, [0, 8, npy.find(b"shape"), npy.find(b"descr"), npy.find(b"\n")]))
    parts[name] = rezip(arrays, deflated=())
    load_checked(rezip(parts), arena)


# ---- generated manifests -----------------------------------------------------------------------------------
MANIFEST_KEYS = (
    "format",
    "version",
    "names",
    "image_hw",
    "num_frames",
    "metadata",
    "timings",
    "state_scale",
    "derived_points",
    "has_state",
    "tracks",
    "dense_points",
    "state_frame",
    "masks",
    "arrays",
)
names_lists = st.one_of(st.lists(st.text(max_size=8), max_size=5), json_values)
typed = {
    "version": st.one_of(odd_ints, st.sampled_from([1, 2, 3])),
    "names": names_lists,
    "image_hw": st.one_of(st.lists(odd_ints, max_size=3), st.just([28, 42]), st.just([42, 28])),
    "num_frames": odd_ints,
    "state_scale": odd_numbers,
    "tracks": st.one_of(st.fixed_dictionaries({"points": odd_ints, "observations": odd_ints}), json_values),
    "dense_points": st.one_of(st.fixed_dictionaries({"points": odd_ints}), json_values),
    "state_frame": st.one_of(matrices(3, 4), json_values),
    "timings": st.dictionaries(st.text(max_size=4), json_values, max_size=4),
    "masks": st.one_of(st.booleans(), json_values),
}


@st.composite
def manifest_edits(draw: st.DrawFn, manifest: dict) -> object:
    """The manifest with 1 to 4 keys given odd values (of their own type, or any JSON) or dropped;
    or any JSON value in its place."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    out = dict(manifest)
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.one_of(st.sampled_from(MANIFEST_KEYS), st.text(max_size=6)))
        if draw(st.integers(0, 4)) == 0:
            out.pop(key, None)
        else:
            out[key] = draw(st.one_of(typed.get(key, json_values), json_values))
    return out


@examples(400)
@given(data=st.data())
def test_generated_manifests(scenes, arena, data):
    parts = members(any_scene(data, scenes))
    manifest = json.loads(parts["manifest.json"])
    edited = data.draw(manifest_edits(manifest))
    parts["manifest.json"] = dumps(edited)
    load_checked(rezip(parts), arena)


# ---- generated .npy headers ----------------------------------------------------------------------------------
DTYPES = ["<f4", "<f8", ">f4", "<f2", "|u1", "<i4", "<i8", "<u8", "|b1", "<c16", "|O", "<U8", "|V8", "<M8[s]", "f4", "x", "<f16"]
shapes = st.one_of(
    st.lists(st.sampled_from([0, 1, 2, 3, 28, 42, 2**20, 2**31, 2**40, 2**62, 2**64, -1]), max_size=5).map(tuple),
    st.lists(st.integers(0, 64), max_size=4).map(tuple),
)


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """An `.npy` with a generated header (dtype, order, shape: huge, negative, zero, odd) and a
    body of the declared length, a few bytes, or none."""
    descr = draw(st.sampled_from(DTYPES))
    shape = draw(shapes)
    fortran = draw(st.booleans())
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    header = draw(st.sampled_from([header, header, header, "{}", "[1, 2]", "{'descr': '<f4'}", header.replace("'shape'", "'shape'*2")]))
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    length_bytes = 2 if version[0] == 1 else 4
    text = header.encode("latin1") + b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    raw = b"\x93NUMPY" + bytes(version) + len(text).to_bytes(length_bytes, "little") + text
    try:
        declared = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize if descr not in ("x", "<f16") else 0
    except (TypeError, ValueError):
        declared = 0
    body = draw(st.sampled_from(["declared", "short", "none", "long"]))
    size = {"declared": declared, "short": declared // 2, "none": 0, "long": declared + 8}[body]
    return raw + bytes(min(max(size, 0), 1 << 16))


@examples(300)
@given(data=st.data())
def test_generated_npy_headers(scenes, arena, data):
    """An array of any member replaced by a generated `.npy`, or one added (names the readers do
    not know, the scene state's layers)."""
    parts = members(any_scene(data, scenes))
    name = data.draw(st.sampled_from([n for n in STORED_MEMBERS if n in parts]))
    arrays = members(parts[name])
    key = data.draw(st.one_of(st.sampled_from(sorted(arrays)), st.sampled_from(["layer9.w0.npy", "extra.npy", "depth", "images.npy/x"])))
    arrays[key] = data.draw(npy_files())
    parts[name] = rezip(arrays, deflated=())
    load_checked(rezip(parts), arena)


# ---- central directories that lie -----------------------------------------------------------------------------
LIES = st.sampled_from([0, 1, 100, 4095, 2**20, 2**31 - 1, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1])


@examples(200)
@given(data=st.data())
def test_zip_entries_with_lying_sizes(scenes, arena, data):
    """The scene's own central directory, or an inner archive's, declares sizes that are not the
    members' (zip64 fields too)."""
    base = any_scene(data, scenes)
    parts = members(base)
    which = data.draw(st.sampled_from(["both", "compressed", "uncompressed"]))
    if data.draw(st.booleans()):
        lies = data.draw(st.dictionaries(st.sampled_from(sorted(parts)), LIES, min_size=1))
        load_checked(lie_about_sizes(base, lies, which), arena)
    else:
        name = data.draw(st.sampled_from([n for n in STORED_MEMBERS if n in parts]))
        inner = parts[name]
        keys = sorted(members(inner))
        parts[name] = lie_about_sizes(inner, data.draw(st.dictionaries(st.sampled_from(keys), LIES, min_size=1)), which)
        load_checked(rezip(parts), arena)


def test_the_unmutated_scenes_open(scenes, arena):
    for data in scenes.values():
        assert load_checked(data, arena) is not None


# ---- what the fuzzing found (each was another exception before the fix) -------------------------------------------------
def _deflated_manifest_with_bad_data(base: bytes) -> bytes:
    """The manifest's deflate stream starting with a block of the reserved type: zlib.error."""
    data = bytearray(rezip(members(base)))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("manifest.json")
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_len + extra_len] = 0xFF
    return bytes(data)


def _npy_header_unbalanced(base: bytes) -> bytes:
    """An array header whose brackets do not close: numpy's tokenizer raised TokenError."""
    parts = members(base)
    arrays = members(parts["arrays.npz"])
    arrays["depth.npy"] = arrays["depth.npy"].replace(b"'shape': (3, 28, 42)", b"'shape': (3, 28, 42(", 1)
    parts["arrays.npz"] = rezip(arrays, deflated=())
    return rezip(parts)


def _npy_shape_beyond_64_bits(base: bytes) -> bytes:
    """An array header declaring 2**64 elements: np.prod raised OverflowError."""
    parts = members(base)
    arrays = members(parts["arrays.npz"])
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,), }"
    arrays["depth.npy"] = b"\x93NUMPY\x01\x00" + (len(header) + 1).to_bytes(2, "little") + header.encode() + b"\n" + bytes(64)
    parts["arrays.npz"] = rezip(arrays, deflated=())
    return rezip(parts)


def _manifest_with(base: bytes, **changes) -> bytes:
    parts = members(base)
    parts["manifest.json"] = dumps({**json.loads(parts["manifest.json"]), **changes})
    return rezip(parts)


@pytest.mark.parametrize(
    "make, message",
    [
        (_deflated_manifest_with_bad_data, "invalid block type"),
        (_npy_header_unbalanced, "depth.npy is not an array"),
        (_npy_shape_beyond_64_bits, "depth.npy declares shape"),
        (lambda b: _manifest_with(b, state_scale=10**400), "beyond 64 bits"),  # TypeError from np.isfinite
        (lambda b: _manifest_with(b, state_frame=[[10**400, 0, 0, 0]] * 3), "beyond 64 bits"),  # OverflowError from np.asarray
        (lambda b: _manifest_with(b, timings={"total_s": 10**400}), "beyond 64 bits"),  # TypeError from np.isfinite
        # zipfile asked the file for a GiB at once (MemoryError where memory is capped)
        (lambda b: lie_about_sizes(b, {"manifest.json": 2**32 - 2}, "compressed"), "compressed bytes, more than the file's"),
    ],
)
def test_what_fuzzing_found_is_a_scene_file_error(scenes, arena, make, message):
    case = fresh(arena / "case")
    path = case / "scene.zipmap"
    path.write_bytes(make(scenes["plain"]))
    assert parse_checked(lambda: Reconstruction.load(path), case, path.stat().st_size) is None  # refused, in bounded memory
    with pytest.raises(SceneFileError, match=message):
        Reconstruction.load(path)
