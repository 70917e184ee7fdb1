"""The checkpoint readers fuzzed (issue 37; the harness and profiles are in fuzzing.py): our
safetensors file and the authors' `.pt` format (zip and the older pickle stream) mutated, and
generated safetensors headers, metadata and configs, and `.pt` files whose tensor records and
pickled objects say anything. Every one loads as a model or is a `CheckpointError`, in bounded
memory, with nothing written."""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from fuzzing import (
    Corpus,
    dumps,
    examples,
    fresh,
    json_values,
    mutated,
    odd_ints,
    odd_scalars,
    offsets_of,
    parse_checked,
    zip_hot_spots,
)
from hypothesis import given
from hypothesis import strategies as st

from zipmap_core.errors import CheckpointError
from zipmap_core.io.checkpoints import LoadedCheckpoint, load_checkpoint, load_official
from zipmap_core.model.config import tiny_config


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint, tiny_model) -> Corpus:
    """The tiny model as our safetensors, as an authors'-format `.pt` (zip) and in the older
    pickle stream, as bytes. One load first: what loading imports once (torch's compiler makes
    its cache folder in the temporary folder when imported) is not an example's doing."""
    load_checkpoint(tiny_checkpoint)
    state = tiny_model.state_dict()
    out = Corpus({"safetensors": Path(tiny_checkpoint).read_bytes()})
    for name, zip_format in (("pt", True), ("pt_legacy", False)):
        buf = io.BytesIO()
        torch.save({"model": state}, buf, _use_new_zipfile_serialization=zip_format)
        out[name] = buf.getvalue()
    return out


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-checkpoints")


def load_checked(data: bytes, arena: Path, suffix: str) -> LoadedCheckpoint | None:
    """The property for one checkpoint's bytes: a `.pt` is read as the authors' format at the tiny
    model's size (the published sizes are gigabytes), anything else by content."""
    case = fresh(arena / "case")
    path = case / f"model{suffix}"
    path.write_bytes(data)
    parse = (lambda: load_official(path, config=tiny_config())) if suffix == ".pt" else (lambda: load_checkpoint(path))
    loaded = parse_checked(parse, case, len(data))
    if loaded is not None:
        assert all(bool(torch.isfinite(p).all()) for p in loaded.model.parameters() if p.is_floating_point())
        assert loaded.path == path and isinstance(loaded.metadata, dict)
    return loaded


def hot_spots(data: bytes) -> list[int]:
    """A safetensors file's length and header fields, a `.pt`'s zip headers and pickle."""
    return [0, 8, *zip_hot_spots(data), *offsets_of(data[:65536], b'"dtype"', b'"shape"', b'"data_offsets"', b"__metadata__", b"storage")]


@examples(120)
@given(data=st.data())
def test_checkpoint_bytes_mutated(checkpoints, arena, data):
    name = data.draw(st.sampled_from(["pt", "safetensors"]), label="checkpoint")
    base = checkpoints[name]
    load_checked(data.draw(mutated(base, hot_spots(base))), arena, ".safetensors" if name == "safetensors" else ".pt")


# ---- safetensors headers -------------------------------------------------------------------------------------
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "C64", "X", ""]


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


@st.composite
def header_edits(draw: st.DrawFn, header: dict) -> object:
    """The header with 1 to 4 tensor entries or metadata values given odd dtypes, shapes, offsets
    or types; tensors added or dropped; or any JSON in its place."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    out = json.loads(json.dumps(header))
    names = sorted(k for k in out if k != "__metadata__")
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["dtype", "shape", "offsets", "entry", "drop", "metadata", "config"]))
        key = draw(st.sampled_from(names))
        entry = out[key] if isinstance(out.get(key), dict) else out.setdefault(key, {})
        if not isinstance(entry, dict):
            entry = out[key] = {}
        if what == "dtype":
            entry["dtype"] = draw(st.one_of(st.sampled_from(DTYPES), json_values))
        elif what == "shape":
            entry["shape"] = draw(st.one_of(st.lists(odd_ints, max_size=4), json_values))
        elif what == "offsets":
            entry["data_offsets"] = draw(st.one_of(st.lists(odd_ints, min_size=2, max_size=2), json_values))
        elif what == "entry":
            out[draw(st.sampled_from([key, "extra", ""]))] = draw(json_values)
        elif what == "drop":
            out.pop(key, None)
        elif what == "metadata":
            meta = out.setdefault("__metadata__", {})
            field = draw(st.sampled_from(["format", "format_version", "shards", "variant", "description", "config", "other"]))
            meta[field] = draw(st.one_of(st.sampled_from(["1", "2", "0", "00002", "zipmap-studio", "", "-1", "9" * 12]), odd_scalars))
        else:
            meta = out.setdefault("__metadata__", {})
            meta["config"] = dumps(draw(config_edits())).decode("utf-8", "replace")
    return out


@st.composite
def config_edits(draw: st.DrawFn) -> object:
    """The tiny model's config with 1 to 3 settings (top level or in a section) given odd values."""
    cfg = tiny_config().to_dict()
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([None, *(k for k, v in cfg.items() if isinstance(v, dict))]))
        table = cfg if section is None else cfg[section]
        key = draw(st.sampled_from(sorted(table)))
        table[key] = draw(st.one_of(odd_scalars, json_values, st.sampled_from([0, 1, 7, 64, 10**6])))
    return cfg


@examples(200)
@given(data=st.data())
def test_generated_safetensors_headers(checkpoints, arena, data):
    """A header edited and written back, its length field true or lying, its data whole or cut."""
    header, body = split_safetensors(checkpoints["safetensors"])
    raw = dumps(data.draw(header_edits(Corpus(header))))
    length = data.draw(st.sampled_from([len(raw)] * 12 + [len(raw) + 7, len(raw) - 1, 0, 2**31, 2**64 - 1]))
    cut = data.draw(st.sampled_from([len(body)] * 8 + [len(body) // 2, 0]))
    load_checked(struct.pack("<Q", length % 2**64) + raw + body[:cut], arena, ".safetensors")


# ---- .pt files of generated objects --------------------------------------------------------------------------------
class Storage:
    """A tensor's storage record, as a `.pt` declares it: type, record name and element count."""

    def __init__(self, kind: str, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel


class Tensor:
    """A tensor as a `.pt` pickles it: a view (offset, size, stride) of a storage."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
        return None


STORAGES = ["FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage", "ByteStorage", "BoolStorage"]
sizes = st.lists(st.sampled_from([0, 1, 2, 3, 6, 2**31, 2**40, 2**62, -1]), max_size=3).map(tuple)


@st.composite
def pt_files(draw: st.DrawFn) -> bytes:
    """An authors'-format zip whose tensors declare any element count, offset, size and stride
    over records of any length, and whose pickle holds odd keys and values among them."""
    records: dict[str, bytes] = {}
    state: dict = {}
    for i in range(draw(st.integers(1, 3))):
        key = str(i)
        if draw(st.booleans()):  # a sound float tensor [2, 3]
            kind, numel, records[key], offset, size, stride = "FloatStorage", 6, bytes(24), 0, (2, 3), (3, 1)
        else:
            kind, numel = draw(st.sampled_from(STORAGES)), draw(st.sampled_from([0, 1, 6, 24, 2**31, 2**40, 2**62, -1]))
            records[key] = bytes(draw(st.sampled_from([0, 4, 24, 96])))
            if draw(st.integers(0, 4)) == 0:
                records.pop(key)
            offset, size, stride = draw(st.sampled_from([0, 1, 2**40, -1])), draw(sizes), draw(sizes)
        state[draw(st.one_of(st.just(f"w{i}"), odd_scalars))] = Tensor(Storage(kind, key, numel), offset, size, stride)
    for _ in range(draw(st.integers(0, 2))):
        state[draw(st.text(max_size=4))] = draw(st.one_of(odd_scalars, st.lists(odd_scalars, max_size=3)))
    obj = draw(st.sampled_from(["plain", "model", "ema", "list"]))
    top = state if obj == "plain" else [state] if obj == "list" else {obj: state}
    pickled = io.BytesIO()
    TorchPickler(pickled, protocol=2).dump(top)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", pickled.getvalue())
        zf.writestr("archive/byteorder", draw(st.sampled_from([b"little"] * 8 + [b"big", b"?"])))
        for key, raw in records.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", b"3\n")
    return out.getvalue()


@examples(200)
@given(data=st.data())
def test_generated_pt_files(arena, data):
    load_checked(data.draw(pt_files()), arena, data.draw(st.sampled_from([".pt", ".bin"])))


@examples(100)
@given(data=st.data())
def test_a_pt_files_pickle_mutated_in_a_sound_archive(checkpoints, arena, data):
    """The pickle of a real `.pt` edited and the zip rebuilt with CRCs that match."""
    with zipfile.ZipFile(io.BytesIO(checkpoints["pt"])) as zf:
        parts = {info.filename: zf.read(info) for info in zf.infolist()}
    name = next(n for n in parts if n.endswith("data.pkl"))
    parts[name] = data.draw(mutated(parts[name], offsets_of(parts[name], b"storage", b"_rebuild", b"model")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for member, raw in parts.items():
            zf.writestr(member, raw)
    load_checked(out.getvalue(), arena, ".pt")


def test_the_unmutated_checkpoints_load(checkpoints, arena):
    """Each seed loads, but the older pickle stream, whose storages torch allocates at the sizes the
    pickle declares before it can check them against the file (8.6 GB for a 2 MB file whose one
    element count was edited): refused by name."""
    for name, data in checkpoints.items():
        loaded = load_checked(data, arena, ".safetensors" if name == "safetensors" else ".pt")
        assert (loaded is None) == (name == "pt_legacy"), name
    path = fresh(arena / "case") / "old.pt"
    path.write_bytes(checkpoints["pt_legacy"])
    with pytest.raises(CheckpointError, match="not a whole zip archive"):
        load_official(path, config=tiny_config())


@pytest.mark.parametrize("section, key", [("aggregator", "dpt_layer_idx"), ("dpt", "out_channels")])
def test_a_number_where_the_config_has_a_list_is_a_checkpoint_error(tiny_checkpoint, arena, section, key):
    """What fuzzing found: the config's checks took len() of it (TypeError)."""
    header, body = split_safetensors(Path(tiny_checkpoint).read_bytes())
    config = tiny_config().to_dict()
    config[section][key] = 7
    header["__metadata__"]["config"] = json.dumps(config)
    raw = json.dumps(header).encode()
    case = fresh(arena / "case")
    (case / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    with pytest.raises(CheckpointError, match="has a config that cannot be used"):
        load_checkpoint(case / "model.safetensors")


def test_an_integer_tensor_where_the_model_has_weights_is_a_checkpoint_error(tiny_checkpoint, arena):
    """What fuzzing found: a weight stored as I32 (same bytes, same shape) reached load_state_dict,
    whose RuntimeError ("Only Tensors of floating point dtype can require gradients") was no user error."""
    header, body = split_safetensors(Path(tiny_checkpoint).read_bytes())
    header["aggregator.camera_token"]["dtype"] = "I32"
    raw = json.dumps(header).encode()
    case = fresh(arena / "case")
    (case / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    with pytest.raises(CheckpointError, match=r"holds tensors of another type .*aggregator.camera_token \(int32\)"):
        load_checkpoint(case / "model.safetensors")
