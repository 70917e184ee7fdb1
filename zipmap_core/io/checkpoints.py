"""Reading and writing model weights: the authors' `.pt` files and our safetensors format.

Official files are opened with `weights_only=True` and memory-mapped, safetensors files are read
one tensor at a time, and the model is built on the meta device and then handed each tensor
converted to the type it will run in (`assign=True`): a 5.5 GB float32 checkpoint loaded for
bfloat16 inference never holds a float32 copy of the model, only one tensor at a time. Every
failure becomes a `CheckpointError` that says what was expected and what was found.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, InputError
from ..model.config import OFFICIAL_CONFIGS, ZipMapConfig
from ..model.zipmap import ZipMap
from .atomic import atomic_path
from .files import parse_json, regular_file_problem

SHARD_NAME = re.compile(r"-\d{5}-of-\d{5}$")
FORMAT_NAME = "zipmap-studio"
FORMAT_VERSION = 1


HalfFor = Callable[[ZipMap], "torch.dtype | None"]  # the type a model (on the meta device) will run in


@dataclass
class TensorSource:
    """A checkpoint's tensors by name: shapes known up front, each tensor read when asked."""

    shapes: dict[str, tuple[int, ...]]
    read: Callable[[str], torch.Tensor]

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor]) -> TensorSource:
        return cls({k: tuple(v.shape) for k, v in state.items()}, state.__getitem__)


@dataclass
class LoadedCheckpoint:
    model: ZipMap
    variant: str  # one of OFFICIAL_CONFIGS, or "custom" for our own files
    path: Path
    description: str
    metadata: dict


def _checkpoint_path(path: str | os.PathLike) -> Path:
    problem = regular_file_problem(path, "a checkpoint")
    if problem:
        raise CheckpointError(problem)
    return Path(path)


def _whole_number(text: str, path: Path, what: str) -> int:
    if not (isinstance(text, str) and text.isdigit() and len(text) < 10):
        raise CheckpointError(f"{path.name} is damaged: its {what} {text!r} is not a whole number")
    return int(text)


def detect_variant(keys: set[str], filename: str = "") -> str:
    """Which official checkpoint a state_dict is, from its keys (and the file name where the keys
    cannot tell: the affine-invariant and reference-view files share one layout)."""
    if any(k.startswith("nvs_head.") for k in keys):
        return "state_query"
    if any(k.startswith("camera_mlp_head.") for k in keys):
        return "online"
    name = filename.lower()
    if "ref" in name:
        return "with_ref_view"
    return "aff_inv"


def _read_torch_file(path: Path) -> Mapping[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} is empty (0 bytes); download or copy it again")
    if not zipfile.is_zipfile(path):  # the older pickle stream: torch allocates each storage at the size it declares
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint: not a whole zip archive, as torch.save writes since PyTorch 1.6 "
            f"and the official files are (cut short or damaged, or an older pickle stream, whose sizes cannot be checked "
            f"before reading: save it again with a current torch.save)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:  # weights_only refused a pickled object that is not a tensor
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(exc))  # torch's two wordings
        if found is None:  # not a refused object but bytes that are no pickle at all (a text, another format)
            raise CheckpointError(
                f"{path.name} is not a PyTorch checkpoint (its bytes do not unpickle); use an official .pt or our .safetensors"
            ) from None
        what = f" (it asks to run {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path.name} holds objects other than tensors{what} and was not loaded: it may be unsafe; use the official checkpoint files"
        ) from None
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint (it may be truncated or another kind of file): {detail}"
        ) from exc
    if isinstance(obj, dict):
        for entry in ("model", "ema", "state_dict"):
            if isinstance(obj.get(entry), dict):
                obj = obj[entry]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path.name} does not contain a ZipMap state_dict (expected a dict of tensors, or one under 'model' / 'ema'); found: {found}"
        )
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:
        raise CheckpointError(f"{path.name} is not a ZipMap state_dict: its keys {odd[:4]} are not text")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _safetensors_truncation(path: Path) -> str | None:
    """Why a safetensors file is shorter than its own header says, or None if it is not."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return f"its header needs {8 + length:,} bytes and the file has {size:,}"
        try:
            header = json.loads(fh.read(length))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
    if 8 + length + end > size:
        return f"its tensors need {8 + length + end:,} bytes and the file has {size:,}"
    return None


def _check_layout(model: ZipMap, found: dict[str, tuple[int, ...]], path: Path, what: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k}: expected {list(expected[k])}, found {list(found[k])}" for k in set(expected) & set(found) if tuple(found[k]) != expected[k]
    )
    if not (missing or unexpected or shapes):
        return
    lines = [f"{path.name} does not match the {what} layout:"]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"  {len(items)} {label}: {', '.join(items[:5])}{more}")
    raise CheckpointError("\n".join(lines))


def _check_finite(bad: list[str], path: Path) -> None:
    """Weights with NaN or infinity give NaN scenes: refused where they enter, by name."""
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(
            f"{path.name} holds NaN or infinite weights in {len(bad)} tensors ({', '.join(bad[:3])}{more}); "
            f"the file is damaged or its training diverged"
        )


def _build(cfg: ZipMapConfig, source: TensorSource, path: Path, what: str, half_for: HalfFor | None = None) -> ZipMap:
    """The model, each tensor read, converted to the type it runs in and checked one at a time:
    float32, or `half_for(model)` with the norms in float32 (see `ZipMap.set_precision`). Files in
    half precision (our bundled model) run in float32 unless a half type is asked for."""
    with torch.device("meta"):
        model = ZipMap(cfg)
    _check_layout(model, source.shapes, path, what)
    half = half_for(model) if half_for is not None else None
    types = model.weight_types(half)
    expected = model.state_dict()
    state, bad, odd = {}, [], []
    for name in source.shapes:
        tensor = source.read(name)
        if tensor.is_floating_point() != expected[name].is_floating_point():  # an integer weight, a real-valued count
            odd.append(f"{name} ({str(tensor.dtype).removeprefix('torch.')})")
        elif tensor.is_floating_point():
            tensor = tensor.to(types[name])
            if not bool(torch.isfinite(tensor).all()):
                bad.append(name)
        state[name] = tensor
    if odd:
        more = f" (+{len(odd) - 3} more)" if len(odd) > 3 else ""
        raise CheckpointError(f"{path.name} holds tensors of another type than the {what} has: {', '.join(odd[:3])}{more}")
    _check_finite(bad, path)
    model.load_state_dict(state, strict=True, assign=True)
    model.half_type = half
    return model.eval()


def load_official(
    path: str | os.PathLike, variant: str | None = None, config: ZipMapConfig | None = None, half_for: HalfFor | None = None
) -> LoadedCheckpoint:
    """An authors'-format `.pt`; `config` overrides the published size (files of their code at
    other sizes, such as the parity vectors' models); `half_for`: see `_build`."""
    path = _checkpoint_path(path)
    state = _read_torch_file(path)
    variant = variant or detect_variant(set(state), path.name)
    if variant not in OFFICIAL_CONFIGS:
        raise CheckpointError(f"unknown variant {variant!r}; expected one of {sorted(OFFICIAL_CONFIGS)}")
    cfg = config or OFFICIAL_CONFIGS[variant]
    model = _build(cfg, TensorSource.of(state), path, f"official '{variant}' checkpoint", half_for)
    return LoadedCheckpoint(model, variant, path, f"official ZipMap checkpoint ({variant})", {})


def _read_safetensors(path: Path) -> tuple[dict[str, str], TensorSource]:
    """The file's metadata and its tensors, read one at a time when asked (the file stays open
    until the source is dropped)."""
    try:
        f = safe_open(str(path), framework="pt")
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        return dict(f.metadata() or {}), TensorSource(shapes, lambda k: _safetensors_tensor(f, k, path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def _safetensors_tensor(f, name: str, path: Path) -> torch.Tensor:
    try:
        return f.get_tensor(name)
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    cut = _safetensors_truncation(path)
    if cut:
        return CheckpointError(f"{path.name} is truncated ({cut}); download or copy it again")
    return CheckpointError(f"{path.name} is not a readable safetensors file: {exc}")


def shard_paths(path: Path, count: int) -> list[Path]:
    """The files of a model saved in `count` shards, named after the first (`m-00001-of-00003`)."""
    base = SHARD_NAME.sub("", path.stem)
    return [path.with_name(f"{base}-{i:05d}-of-{count:05d}{path.suffix}") for i in range(1, count + 1)]


def load_safetensors(path: str | os.PathLike, half_for: HalfFor | None = None) -> LoadedCheckpoint:
    path = _checkpoint_path(path)
    meta, source = _read_safetensors(path)
    count = _whole_number(meta.get("shards", "1") or "1", path, "shard count")
    if count > 1:  # one shard of several: read them all
        parts: dict[str, TensorSource] = {}
        for shard in shard_paths(path, count):
            if not shard.is_file():
                raise CheckpointError(f"{path.name} is one of {count} shards and {shard.name} is missing")
            shard_meta, part = _read_safetensors(shard)
            if shard_meta.get("config") != meta.get("config"):
                raise CheckpointError(f"{shard.name} belongs to another model than {path.name}")
            parts.update(dict.fromkeys(part.shapes, part))
        source = TensorSource({k: parts[k].shapes[k] for k in parts}, lambda k: parts[k].read(k))
    if meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise CheckpointError(
            f"{path.name} is a safetensors file but not a ZipMap Studio model (its metadata lacks "
            f"format={FORMAT_NAME!r} and a config); found metadata keys: {sorted(meta)}"
        )
    version = _whole_number(meta.get("format_version", "0"), path, "format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} uses model format version {version}; this version of ZipMap Studio reads up to "
            f"{FORMAT_VERSION}. Please update ZipMap Studio."
        )
    try:
        cfg = ZipMapConfig.from_dict(parse_json(meta["config"]))
    except (ValueError, TypeError) as exc:  # JSON's errors are ValueErrors too; TypeError: a number where the checks expect a list
        raise CheckpointError(f"{path.name} has a config that cannot be used: {exc}") from None
    model = _build(cfg, source, path, f"'{cfg.name}' configuration", half_for)
    variant = meta.get("variant", "custom")
    return LoadedCheckpoint(model, variant, path, meta.get("description", f"ZipMap model '{cfg.name}'"), meta)


def load_checkpoint(path: str | os.PathLike, variant: str | None = None, half_for: HalfFor | None = None) -> LoadedCheckpoint:
    """Opens an official `.pt` or our `.safetensors` file, by its content rather than its suffix;
    `half_for(model)` says the type to load the weights straight into (None: float32)."""
    path = _checkpoint_path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    is_safetensors = len(head) >= 9 and head[8:9] == b"{"
    return load_safetensors(path, half_for) if is_safetensors else load_official(path, variant, half_for=half_for)


def save_model(
    model: ZipMap,
    path: str | os.PathLike,
    variant: str = "custom",
    description: str = "",
    extra: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Writes our format: the state_dict (official names) with the config in the metadata. With
    `max_shard_bytes`, a larger model goes into shards of at most that size (each a complete
    safetensors file with the metadata, `NAME-00001-of-0000K.safetensors`; any one opens the set).
    Returns the path to open."""
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": model.cfg.to_json(),
        "variant": variant,
        "description": description or f"ZipMap model '{model.cfg.name}'",
        **(extra or {}),
    }
    state = {
        k: v.detach().to("cpu", dtype if dtype and v.is_floating_point() else v.dtype).contiguous() for k, v in model.state_dict().items()
    }
    parts = _shards(state, max_shard_bytes)
    if len(parts) == 1:
        _write(Path(path), state, meta)
        return Path(path)
    files = shard_paths(Path(path), len(parts))
    for file, part in zip(files, parts):
        _write(file, part, {**meta, "shards": str(len(parts))})
    return files[0]


def _shards(state: dict[str, torch.Tensor], limit: int | None) -> list[dict[str, torch.Tensor]]:
    """Tensors grouped in order into parts of at most `limit` bytes (a header's worth kept free)."""
    if not limit:
        return [state]
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    budget = limit - 256 * 1024  # the header: names, shapes, offsets and the metadata
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > budget:
            raise InputError(f"{name} alone ({nbytes / 2**20:.1f} MiB) exceeds the shard size ({limit / 2**20:.1f} MiB)")
        if size + nbytes > budget and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][name] = t
        size += nbytes
    return parts


def _write(path: Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=meta)
        except SafetensorError as exc:  # its write errors (a full disk) are not OSErrors
            raise OSError(str(exc)) from exc


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, variant: str | None = None, config: ZipMapConfig | None = None
) -> LoadedCheckpoint:
    """Official `.pt` -> our safetensors (same tensor names, config recorded)."""
    loaded = load_official(src, variant, config)
    save_model(loaded.model, dst, loaded.variant, f"converted from {Path(src).name} ({loaded.variant})")
    return loaded
