"""One configuration dataclass that describes every ZipMap size.

The nested sections mirror the layout of the authors' configuration (encoder, aggregator, ttt,
camera head, dpt) so a config can be read from the golden files and written into our
safetensors metadata without translation tables.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from ..options import VARIANTS


@dataclass
class EncoderConfig:
    """DINOv2-with-registers patch encoder (`aggregator.patch_embed`)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 1.0
    num_register_tokens: int = 4
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    pretrain_img_size: int = 518


@dataclass
class AggregatorConfig:
    """Alternating frame / global blocks."""

    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    qk_norm: bool = True
    rope_freq: float = 100.0
    num_register_tokens: int = 4
    dpt_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    # "ttt" is ZipMap; "attention" is the quadratic VGGT-style baseline used only for comparisons.
    global_mixer: str = "ttt"


@dataclass
class TTTConfig:
    """Test-time-training layer of the global blocks (`ttt_block`)."""

    head_dim: int = 1024
    inter_multi: int = 2
    base_lr: float = 0.01
    muon_update_steps: int = 5
    use_gate_fn: bool = True
    bias: bool = True
    # The authors orthogonalise in bfloat16 and the official configurations keep that (parity);
    # our CPU-trained model uses float32, which CPUs without bf16 matrix units run ~10x faster.
    ns_dtype: str = "bfloat16"


@dataclass
class CameraHeadConfig:
    """Iterative transformer camera head, or the streaming MLP head."""

    kind: str = "transformer"  # "transformer" | "mlp" | "none"
    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: int = 4
    init_values: float = 0.01
    iterations: int = 4


@dataclass
class DPTConfig:
    """Dense prediction heads (depth, local points, novel view)."""

    features: int = 256
    out_channels: tuple[int, ...] = (256, 512, 1024, 1024)


@dataclass
class ZipMapConfig:
    """Every hyper-parameter needed to build a ZipMap model of any size."""

    name: str = "zipmap"
    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    ttt: TTTConfig = field(default_factory=TTTConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    dpt: DPTConfig = field(default_factory=DPTConfig)
    affine_invariant: bool = True
    enable_depth: bool = True
    enable_local_point: bool = True
    enable_nvs: bool = False
    nvs_ray_cond_dim: int = 9
    # Default TTT window (frames) for streaming checkpoints; None means bidirectional.
    window_size: int | None = None

    @property
    def patch_start_idx(self) -> int:
        return 1 + self.aggregator.num_register_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZipMapConfig:
        """Builds a config from our own dict form. A config that is not a dict, has a setting this
        version does not know, values of the wrong type, or sizes outside `LIMITS` is a
        ValueError naming each problem: a file's config is checked before any memory is sized by it."""
        if not isinstance(data, dict):
            raise ValueError(f"the config is {type(data).__name__}, not a mapping of settings")
        try:
            cfg = _fill(cls, data)
        except TypeError as exc:
            raise ValueError(f"the config does not fit this version of ZipMap Studio ({exc})") from None
        problems = cfg.problems()
        if problems:
            raise ValueError("; ".join(problems[:6]) + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""))
        return cfg

    def problems(self) -> list[str]:
        """What is wrong with this config: types, choices and sizes beyond `LIMITS`."""
        out = []
        for path, value in _leaves(self):
            lo, hi = LIMITS.get(path.rsplit(".", 1)[-1], LIMITS.get(path, (None, None)))
            kind = _KINDS.get(path.rsplit(".", 1)[-1])
            if kind is not None and not _is_kind(value, kind):
                out.append(f"{path} is {value!r}, not {kind.__name__ if isinstance(kind, type) else kind}")
            elif lo is not None and isinstance(value, (int, float)) and not lo <= value <= hi:
                out.append(f"{path} is {value!r}, outside {lo}..{hi}")
        for path, value, choices in (
            ("aggregator.global_mixer", self.aggregator.global_mixer, ("ttt", "attention")),
            ("camera_head.kind", self.camera_head.kind, ("transformer", "mlp", "none")),
            ("ttt.ns_dtype", self.ttt.ns_dtype, ("bfloat16", "float32", "float16")),
        ):
            if value not in choices:
                out.append(f"{path} is {value!r}, not one of {', '.join(choices)}")
        if not out:
            out += self._shape_problems()
        return out

    def _shape_problems(self) -> list[str]:
        out = []
        if self.img_size % self.patch_size:
            out.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        for name, dim, heads in (
            ("encoder", self.encoder.embed_dim, self.encoder.num_heads),
            ("aggregator", self.embed_dim, self.aggregator.num_heads),
        ):
            if dim % heads:
                out.append(f"{name}: embed_dim {dim} is not divisible by num_heads {heads}")
        idx = self.aggregator.dpt_layer_idx
        if len(idx) != 4 or any(not 0 <= i < self.aggregator.depth for i in idx):
            out.append(f"aggregator.dpt_layer_idx {list(idx)} must be 4 layers below depth {self.aggregator.depth}")
        if len(self.dpt.out_channels) != 4:
            out.append(f"dpt.out_channels {list(self.dpt.out_channels)} must have 4 entries")
        return out

    @classmethod
    def from_reference(cls, config: dict[str, Any], model: dict[str, Any] | None = None) -> ZipMapConfig:
        """Reads the configuration layout the golden files and the authors' code use."""
        model = model or {}
        enc = config.get("encoder", {})
        agg = config.get("aggregator", {})
        cam = config.get("camera_head", {})
        nvs = model.get("nvs", {})
        camera_kind = model.get("camera_head", "transformer")
        if not model.get("enable_camera", True) and camera_kind != "mlp":
            camera_kind = "none"
        out = cls(
            name="reference",
            img_size=config.get("img_size", 518),
            patch_size=config.get("patch_size", 14),
            embed_dim=config.get("embed_dim", 1024),
            encoder=_fill(EncoderConfig, {**enc, "pretrain_img_size": enc.get("img_size", 518)}, strict=False),
            aggregator=_fill(AggregatorConfig, agg, strict=False),
            ttt=_fill(TTTConfig, config.get("ttt", {}), strict=False),
            camera_head=_fill(CameraHeadConfig, {**cam, "kind": camera_kind}, strict=False),
            dpt=_fill(DPTConfig, config.get("dpt", {}), strict=False),
            affine_invariant=model.get("affine_invariant", True),
            enable_depth=model.get("enable_depth", True),
            enable_local_point=model.get("enable_local_point", True),
            enable_nvs=model.get("enable_nvs", False),
            nvs_ray_cond_dim=nvs.get("nvs_ray_cond_dim", 9),
            window_size=model.get("window_size"),
        )
        return out

    def replace(self, **changes: Any) -> ZipMapConfig:
        """A copy with `changes`; a dotted name changes a section's setting
        (`replace(**{"aggregator.init_values": 0.1})`). Configs are never changed in place."""
        new = copy.deepcopy(self)
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            target = getattr(new, section) if section else new
            if not hasattr(target, name):
                raise AttributeError(f"{type(target).__name__} has no setting {name!r}")
            setattr(target, name, value)
        return new


# Sanity limits of a config read from a file, by field name (the largest published model is well
# inside them): a file cannot make us build a 100,000-layer model or resize pictures to 14,000 px.
LIMITS: dict[str, tuple[float, float]] = {
    "img_size": (14, 1036),
    "pretrain_img_size": (14, 1036),
    "patch_size": (14, 14),
    "embed_dim": (8, 4096),
    "depth": (1, 64),
    "num_heads": (1, 64),
    "mlp_ratio": (0.25, 16),
    "num_register_tokens": (0, 64),
    "head_dim": (8, 8192),
    "inter_multi": (1, 8),
    "muon_update_steps": (0, 20),
    "trunk_depth": (0, 32),
    "iterations": (1, 16),
    "features": (1, 1024),
    "out_channels": (1, 4096),
    "dpt_layer_idx": (0, 63),
    "nvs_ray_cond_dim": (1, 64),
    "window_size": (0, 100_000),
    "rope_freq": (1e-3, 1e6),
    "init_values": (0.0, 10.0),
    "base_lr": (0.0, 10.0),
    "interpolate_offset": (-1.0, 1.0),
}
_KINDS: dict[str, Any] = {
    **{
        k: int
        for k in (
            "img_size",
            "pretrain_img_size",
            "patch_size",
            "embed_dim",
            "depth",
            "num_heads",
            "num_register_tokens",
            "head_dim",
            "inter_multi",
            "muon_update_steps",
            "trunk_depth",
            "iterations",
            "features",
            "out_channels",
            "dpt_layer_idx",
            "nvs_ray_cond_dim",
        )
    },
    **{k: float for k in ("mlp_ratio", "rope_freq", "init_values", "base_lr", "interpolate_offset")},
    **{
        k: bool
        for k in (
            "qk_norm",
            "use_gate_fn",
            "bias",
            "interpolate_antialias",
            "affine_invariant",
            "enable_depth",
            "enable_local_point",
            "enable_nvs",
        )
    },
    **{k: str for k in ("name", "global_mixer", "kind", "ns_dtype")},
    "window_size": "an integer or null",
}


def _is_kind(value: Any, kind: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
    if kind == "an integer or null":
        return value is None or _is_kind(value, int)
    return isinstance(value, kind)


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every setting; tuple entries are checked one by one."""
    out: list[tuple[str, Any]] = []
    for f in fields(obj):
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            out += _leaves(value, f"{path}.")
        elif isinstance(value, tuple):
            out += [(path, v) for v in value]
        else:
            out.append((path, value))
    return out


def _fill(cls: type, data: dict[str, Any], strict: bool = True) -> Any:
    """Builds dataclass `cls` from `data`, recursing into nested dataclasses. `strict`: a key the
    dataclass does not have is an error (our own files); the authors' layout has keys we do not use."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)}) if strict else []
    if unknown:
        raise TypeError(f"unknown settings {', '.join(map(str, unknown))} in {cls.__name__}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise TypeError(f"{f.name} is {type(value).__name__}, not a section")
            value = _fill(type(default), value, strict)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _official(name: str, **model: Any) -> ZipMapConfig:
    return ZipMapConfig(name=name, **model)


# Named configurations of the four published checkpoints (Hugging Face repo coast01/ZipMap), one
# per name of `options.VARIANTS` (checked below).
OFFICIAL_CONFIGS: dict[str, ZipMapConfig] = {
    "aff_inv": _official("aff_inv", affine_invariant=True),
    "with_ref_view": _official("with_ref_view", affine_invariant=False),
    "online": _official("online", affine_invariant=True, window_size=2, camera_head=CameraHeadConfig(kind="mlp")),
    "state_query": _official("state_query", affine_invariant=False, enable_nvs=True),
}

assert tuple(OFFICIAL_CONFIGS) == VARIANTS

OFFICIAL_FILES: dict[str, str] = {
    "aff_inv": "checkpoint_aff_inv.pt",
    "with_ref_view": "checkpoint_with_ref_view.pt",
    "online": "checkpoint_online.pt",
    "state_query": "checkpoint_state_query.pt",
}


def small_config(img_size: int = 112) -> ZipMapConfig:
    """The architecture of our bundled model: every part of ZipMap, sized to train on two CPU cores."""
    return ZipMapConfig(
        name="small",
        img_size=img_size,
        embed_dim=128,
        encoder=EncoderConfig(embed_dim=128, depth=4, num_heads=2, pretrain_img_size=img_size),
        aggregator=AggregatorConfig(depth=6, num_heads=2, dpt_layer_idx=(1, 3, 4, 5)),
        ttt=TTTConfig(head_dim=128, ns_dtype="float32"),
        camera_head=CameraHeadConfig(trunk_depth=2, num_heads=4),
        dpt=DPTConfig(features=48, out_channels=(32, 64, 128, 128)),
        affine_invariant=False,
        enable_nvs=True,
    )


def tiny_config(img_size: int = 112) -> ZipMapConfig:
    """A minimal configuration for fast tests of training and the pipeline."""
    return ZipMapConfig(
        name="tiny",
        img_size=img_size,
        embed_dim=32,
        encoder=EncoderConfig(embed_dim=32, depth=1, num_heads=2, pretrain_img_size=img_size),
        aggregator=AggregatorConfig(depth=4, num_heads=2, dpt_layer_idx=(0, 1, 2, 3)),
        ttt=TTTConfig(head_dim=32, ns_dtype="float32"),
        camera_head=CameraHeadConfig(trunk_depth=1, num_heads=2),
        dpt=DPTConfig(features=16, out_channels=(8, 16, 32, 32)),
        affine_invariant=False,
        enable_nvs=True,
    )


# every configuration by name: the published ones and ours (the one registry `get_config` reads)
NAMED_CONFIGS: dict[str, Callable[[], ZipMapConfig]] = {
    **{name: functools.partial(copy.deepcopy, cfg) for name, cfg in OFFICIAL_CONFIGS.items()},
    "small": small_config,
    "tiny": tiny_config,
}


def get_config(name: str) -> ZipMapConfig:
    """A fresh copy of a named configuration."""
    if name not in NAMED_CONFIGS:
        raise KeyError(f"unknown configuration {name!r}; known: {', '.join(sorted(NAMED_CONFIGS))}")
    return NAMED_CONFIGS[name]()
