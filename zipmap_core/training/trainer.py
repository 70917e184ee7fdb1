"""Training ZipMap on procedurally generated scenes (and fine-tuning the official architecture).

One code path for every size: a `TrainConfig` (JSON) names the model configuration or an initial
checkpoint, the data and the schedule. Each step renders fresh scenes on the training device,
normalises them into the frame the model predicts in, runs the input views through the model,
queries the resulting scene state from held-out cameras, and minimises the paper's losses.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..device import check_precision, needs_loss_scaling, select_device, training_precision
from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.checkpoints import load_checkpoint, save_model
from ..model.config import get_config
from ..model.geometry import (
    cameras_to_pose_encoding,
    depth_to_camera_points,
    invert_rigid,
    ray_conditions,
)
from ..model.zipmap import ZipMap
from .captures import generate_captures
from .losses import confidence_loss, pose_loss, rgb_loss
from .normalisation import normalise, query_unit
from .synthetic import SceneViews, generate
from .train_config import TrainConfig, lr_at

SCENE_FAMILIES = ("classic", "captures")
# how each family is normalised (see `normalisation.normalise`): handheld paths need the points' scale
NORMALISED_BY = {"classic": "cameras", "captures": "points"}
# the novel-view losses skip scenes whose input cameras moved less than this (in units of the
# scene's mean point distance): the state-query convention divides by the camera extent, which a
# pan on the spot makes a few hundredths, its targets a hundred units deep
MIN_QUERY_UNIT = 0.1


def parameters_matching(model: nn.Module, pattern: str, setting: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs whose names match a glob; matching nothing is an error naming the
    setting, since a typo would otherwise train an unchanged model silently."""
    found = [(n, p) for n, p in model.named_parameters() if fnmatch.fnmatchcase(n, pattern)]
    if not found:
        raise InputError(f"{setting} pattern {pattern!r} matches no parameter of the model")
    return found


def scale_parameters(model: nn.Module, factors: dict[str, float]) -> None:
    """Multiplies in place the parameters whose names match each glob (`init_scale`)."""
    with torch.no_grad():
        for pattern, factor in factors.items():
            for _, param in parameters_matching(model, pattern, "init_scale"):
                param.mul_(factor)


@dataclass
class StartingPoint:
    """The model to train and what its saved files must say of its history."""

    model: ZipMap
    prior_steps: int = 0  # training steps recorded in an init file of ours
    variant: str = "custom"  # kept from the init file: a fine-tuned official checkpoint stays its variant
    origin: str | None = None  # what fine-tuning began from when that records no steps (an official checkpoint)


def freeze_all_but(model: nn.Module, patterns: list[str]) -> int:
    """Leaves trainable only the parameters matching a glob (all when none are given) and returns
    how many numbers that is."""
    if patterns:
        chosen = {name for pattern in patterns for name, _ in parameters_matching(model, pattern, "trainable")}
        for name, param in model.named_parameters():
            param.requires_grad_(name in chosen)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay for matrices, not for biases, norms, scales, tokens or position embeddings."""
    return param.ndim >= 2 and "token" not in name and "pos_embed" not in name


def build_model(cfg: TrainConfig) -> StartingPoint:
    """Random weights of a named configuration, or an init checkpoint (official `.pt` or ours) with
    its own configuration, so fine-tuning the official architecture is the same code path."""
    if cfg.init:
        if cfg.layerscale_init is not None:
            raise InputError("layerscale_init starts a model from scratch; rescale an init checkpoint with init_scale")
        loaded = load_checkpoint(cfg.init)
        scale_parameters(loaded.model, cfg.init_scale)
        steps = loaded.metadata.get("train_steps")
        origin = loaded.metadata.get("fine_tuned_from") or (None if steps else loaded.description)
        return StartingPoint(loaded.model.train(), int(steps or 0), loaded.variant, origin)
    if cfg.init_scale:
        raise InputError("init_scale rescales the weights of an init checkpoint; this configuration has no init")
    torch.manual_seed(cfg.seed)
    config = get_config(cfg.model)
    if cfg.layerscale_init is not None:
        config = config.replace(**{"aggregator.init_values": float(cfg.layerscale_init)})
    return StartingPoint(ZipMap(config).train())


def compute_losses(
    model: ZipMap, batch_views, inputs: int, weights: dict[str, float], normalise_by: str = "cameras"
) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward pass on a rendered batch; returns the weighted total and each part."""
    views, _ = normalise(batch_views, inputs, normalise_by)
    h, w = views.images.shape[-2:]
    src = views.select(slice(0, inputs))
    out = model(src.images, window_size=0)
    parts: dict[str, torch.Tensor] = {}
    if out.pose_enc_list:
        target = cameras_to_pose_encoding(src.extrinsics, src.intrinsics, (h, w))
        parts["camera"], cam_parts = pose_loss(out.pose_enc_list, target)
    b, s = src.depth.shape[:2]
    parts["depth"] = confidence_loss(out.depth, src.depth[..., None], out.depth_conf)
    if out.local_points is not None:
        pts = depth_to_camera_points(src.depth.flatten(0, 1), src.intrinsics.flatten(0, 1)).reshape(b, s, h, w, 3)
        parts["points"] = confidence_loss(out.local_points, pts, None)
    if model.can_render and views.images.shape[1] > inputs:
        # normalised by the cameras, the views are already in the state-query convention's unit
        unit = query_unit(views, inputs) if normalise_by != "cameras" else None
        parts.update(novel_view_losses(model, views, inputs, out.states, weights, unit))
    total = sum(weights.get(k, 1.0) * v for k, v in parts.items())
    logged = {k: float(v.detach()) for k, v in parts.items()}
    if out.pose_enc_list:
        logged.update({f"cam_{k}": float(v) for k, v in cam_parts.items()})
    return total, logged


def novel_view_losses(
    model: ZipMap, views, inputs: int, states: list, weights: dict[str, float], unit: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The held-out views rendered from the scene state, posed as a reconstruction's queries are:
    translations in units of the input cameras' extent (`unit` per scene, when the views are
    normalised otherwise). Scenes whose cameras barely moved are left out (see MIN_QUERY_UNIT),
    and with them, possibly, the whole term."""
    q = views.select(slice(inputs, None))
    c2w = invert_rigid(q.extrinsics)
    if unit is not None:
        keep = unit >= MIN_QUERY_UNIT
        if not bool(keep.any()):
            return {}
        q = SceneViews(q.images[keep], q.depth[keep] / unit[keep, None, None, None], q.extrinsics[keep], q.intrinsics[keep])
        c2w = c2w[keep]
        c2w = torch.cat((c2w[..., :3], c2w[..., 3:] / unit[keep, None, None, None]), -1)
        states = [{k: v.unflatten(0, (len(keep), -1))[keep].flatten(0, 1) for k, v in layer.items()} for layer in states]
    h, w = q.images.shape[-2:]
    rgbd, conf = model.render(ray_conditions(c2w, q.intrinsics, (h, w)), states)
    target_rgb = q.images.permute(0, 1, 3, 4, 2)
    parts = {"nvs_rgb": rgb_loss(rgbd[..., :3], target_rgb)}
    if weights.get("nvs_rgb_mse", 0.0) > 0:
        # L1 pulls a still-blurry head to the median colour; the squared error pulls it to the
        # mean, which is what held-out PSNR scores
        parts["nvs_rgb_mse"] = (rgbd[..., :3].float() - target_rgb).square().mean()
    parts["nvs_depth"] = confidence_loss(rgbd[..., 3:4], q.depth[..., None], conf)
    return parts


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        check_precision(cfg.precision)
        if cfg.scenes not in SCENE_FAMILIES:
            raise InputError(f"scenes must be one of {', '.join(SCENE_FAMILIES)}, got {cfg.scenes!r}")
        self.device = select_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.output)
        self.start = build_model(cfg)
        self.model = self.start.model.to(self.device)
        self.model.set_activation_checkpointing(cfg.activation_checkpointing)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_loss_scaling(self.device, cfg.precision))
        self.trainable_parameters = freeze_all_but(self.model, cfg.trainable)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if decays(n, p)]
        no_decay = [p for n, p in named if not decays(n, p)]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.95),
        )
        self.step = 0
        self.model_path = self.out / "model.safetensors"  # the first shard when saved in shards
        self.history: list[dict] = []
        self._resume()

    @property
    def state_path(self) -> Path:
        return self.out / "trainer_state.pt"

    def _resume(self) -> None:
        if not self.state_path.exists():
            return
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.log(f"resumed from {self.state_path} at step {self.step}")

    def _autocast(self) -> contextlib.AbstractContextManager:
        return training_precision(self.device, self.cfg.precision)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        rng = random.Random(cfg.seed * 1_000_003 + self.step)
        inputs = 2 if self.step < cfg.two_view_steps else rng.randint(cfg.views[0], cfg.views[1])
        h = rng.choice(cfg.heights)
        w = cfg.width or self.model.cfg.img_size
        make = generate_captures if cfg.scenes == "captures" else generate
        with torch.no_grad():
            views = make(cfg.batch, inputs + cfg.held_out, 10_000_000 + cfg.seed * 100_000 + self.step, (h, w), self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        with self._autocast():
            total, parts = compute_losses(self.model, views, inputs, cfg.loss_weights, NORMALISED_BY[cfg.scenes])
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.opt)  # clip the true gradients (a no-op without loss scaling)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        if self.scaler.is_enabled():
            self.scaler.step(self.opt)  # skips a step with inf/NaN gradients and lowers the scale
            self.scaler.update()
        elif torch.isfinite(grad_norm):
            self.opt.step()
        self.step += 1
        return {
            "step": self.step,
            "loss": float(total.detach()),
            "grad_norm": float(grad_norm),
            "lr": lr_at(self.step - 1, cfg),
            "views": inputs,
            "height": h,
            **parts,
        }

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_path) as tmp:
            torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step}, tmp)
        dtype = getattr(torch, self.cfg.save_dtype)
        extra = {"train_steps": str(self.start.prior_steps + self.step)}
        if self.start.origin:
            extra["fine_tuned_from"] = self.start.origin
        limit = int(self.cfg.max_file_mib * 2**20) if self.cfg.max_file_mib else None
        self.model_path = save_model(
            self.model,
            self.out / "model.safetensors",
            variant=self.start.variant,
            description=self.description(),
            extra=extra,
            dtype=dtype,
            max_shard_bytes=limit,
        )
        with atomic_path(self.out / "train_config.json") as tmp:
            tmp.write_text(json.dumps(asdict(self.cfg), indent=2))

    def description(self) -> str:
        """The saved model's one-line history: its whole step count, and where fine-tuning began."""
        prior = self.start.prior_steps
        if self.start.origin:
            return f"{self.start.origin}, fine-tuned {prior + self.step} steps on procedural scenes"
        history = f" ({prior} before fine-tuning)" if prior else ""
        return f"ZipMap '{self.model.cfg.name}' trained {prior + self.step} steps{history} on procedural scenes"

    def run(self) -> list[dict]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        first = self.step
        log_file = open(self.out / "log.jsonl", "a")
        try:
            while self.step < cfg.steps:
                record = self.train_step()
                record["elapsed_s"] = time.perf_counter() - start
                if cfg.time_budget_s and self.step == first + 30:
                    rate = record["elapsed_s"] / 30
                    cfg.steps = self.step + max(1, int((cfg.time_budget_s - record["elapsed_s"]) / rate))
                    self.log(f"{rate:.3f} s/step: training {cfg.steps} steps to fit {cfg.time_budget_s:.0f} s")
                self.history.append(record)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    shown = " ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float) and k != "elapsed_s")
                    self.log(f"step {self.step}/{cfg.steps} {shown} ({record['elapsed_s']:.0f} s)")
                if self.step % cfg.save_every == 0:
                    self.save()
                if cfg.time_limit_s and time.perf_counter() - start > cfg.time_limit_s:
                    self.log(f"time limit reached at step {self.step}")
                    break
        finally:
            log_file.close()
        self.save()
        return self.history
