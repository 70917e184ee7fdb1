"""The settings of a training run (`zipmap train CONFIG.json`): what model from where, on which
scenes, for how long, with which losses; a file is checked before anything is built from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import InputError
from ..io.files import parse_json, regular_file_problem


@dataclass
class TrainConfig:
    model: str = "small"  # a named configuration (small, tiny, or an official one)
    init: str | None = None  # start from this checkpoint (official .pt or ours) instead of random weights
    # multiply parameters of the init checkpoint whose names match a glob, e.g. re-open a branch
    # whose LayerScale training has shrunk towards zero: {"aggregator.global_blocks.*.ls1.gamma": 10}
    init_scale: dict[str, float] = field(default_factory=dict)
    # train only the parameters whose names match one of these globs (empty: all), e.g. the query
    # path alone: ["nvs_head.*", "aggregator.ray_*", "aggregator.global_blocks.*.ttt_block.*"]
    trainable: list[str] = field(default_factory=list)
    output: str = "runs/small"
    steps: int = 2000
    batch: int = 4  # scenes per step
    views: tuple[int, int] = (4, 8)  # input views per scene, sampled per step in this range
    held_out: int = 2  # extra views per scene that supervise the novel-view head
    heights: tuple[int, ...] = (168,)  # image heights (multiples of 14) sampled per step
    width: int | None = None  # image width; default the model's img_size
    lr: float = 3e-4
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.05
    clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    # "bf16", "fp16" (autocast, loss scaled), "float32", or auto: bf16 on a GPU (fp16 before sm80), float32 on a CPU
    precision: str = "auto"
    # recompute each trunk block's activations in the backward pass instead of keeping them: the
    # official model at 518 px fits one 80 GB GPU this way (about a third more compute)
    activation_checkpointing: bool = False
    # the first steps see pairs of views only: relative pose between two frames is the easiest
    # signal for the camera head, and the global blocks learn to mix views from it
    two_view_steps: int = 0
    # the scene family: "classic" (what the shipped model learnt on) or "captures" (handheld paths,
    # more and smaller objects, fine textures, shadows: closer to real videos)
    scenes: str = "classic"
    # the LayerScale start of the trunk's blocks in a model trained from scratch (the configs'
    # 0.01 leaves the global blocks near silent in a small model trained briefly)
    layerscale_init: float | None = None
    threads: int | None = None
    log_every: int = 20
    save_every: int = 500
    time_limit_s: float | None = None  # stop (and save) after this much wall time
    time_budget_s: float | None = None  # fit `steps` to this wall time, measured over the first 30 steps
    save_dtype: str = "float32"
    # the model is written in shards of at most this many MiB (files a rented GPU's result
    # channel carries, e.g. 16); None: one file
    max_file_mib: float | None = None
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"camera": 5.0, "depth": 1.0, "points": 1.0, "nvs_rgb": 2.0, "nvs_rgb_mse": 0.0, "nvs_depth": 0.5}
    )

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TrainConfig:
        data = _read_settings(Path(path)) if path else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown training settings in {path}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for f in fields(cls):  # a setting whose default is a plain number, text or flag must be one
            default = f.default
            if f.name in data and isinstance(default, (bool, int, float, str)) and not _same_kind(data[f.name], default):
                raise InputError(f"training setting {f.name} in {path} is {data[f.name]!r}, not {type(default).__name__}")
        for key in ("views", "heights"):
            if key in data:
                if not isinstance(data[key], (list, tuple)) or not all(_same_kind(v, 1) and v > 0 for v in data[key]):
                    raise InputError(f"training setting {key} in {path} must be a list of positive whole numbers")
                data[key] = tuple(data[key])
        return cls(**data)


def _read_settings(path: Path) -> dict:
    problem = regular_file_problem(path, "a training config")
    if problem:
        raise InputError(problem)
    try:
        data = parse_json(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name} is not a JSON training config ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.name} holds a JSON {type(data).__name__}, not an object of training settings")
    return data


def _same_kind(value, default) -> bool:
    """JSON's kind of `value` matches `default`'s (a whole number serves where a float is expected)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and value == value
    return isinstance(value, type(default))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
