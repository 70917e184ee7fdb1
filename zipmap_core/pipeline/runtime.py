"""A loaded network, as the recipe's stages see it: the model on its device, the numbers it runs
in, how frames are chunked, and what a run records of it.

Every stage (encoding while frames decode, the network, the memory plan, a stream, a split run)
takes a `NetworkRuntime` explicitly. `Reconstructor` is a front over one, so no stage calls back
into the object that drives it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import chunk_frames_for, inference_half, inference_precision
from ..model.config import ZipMapConfig
from ..model.zipmap import ZipMap


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class NetworkRuntime:
    model: ZipMap
    device: torch.device
    description: str
    variant: str = "custom"
    # official checkpoints orthogonalise in bfloat16; see `device.fast_cpu_bf16` for the trade
    fast_cpu_bf16: bool = False
    chunk_frames: int | None = None  # None: chosen per run from the device's free memory
    path: Path | None = None  # the checkpoint file it was read from, if any

    @classmethod
    def on_device(cls, model: ZipMap, device: torch.device, precision: str = "float32", **fields) -> NetworkRuntime:
        """`model` in the type `precision` gives on `device` (`device.inference_half`; a model
        read straight into a half type keeps it), converted before the move so that a GPU never
        holds a float32 copy, in eval mode."""
        if model.half_type is None:
            model.set_precision(inference_half(device, precision, parameter_count(model)))
        return cls(model.to(device).eval(), device, **fields)

    @property
    def cfg(self) -> ZipMapConfig:
        return self.model.cfg

    def precision(self) -> contextlib.AbstractContextManager:
        """The number formats the network runs in here (see `device.inference_precision`)."""
        return inference_precision(self.device, self.fast_cpu_bf16, self.model.half_type)

    @property
    def precision_name(self) -> str:
        """What a run records and the command line says: float32, bfloat16 or float16."""
        return str(self.model.half_type or torch.float32).removeprefix("torch.")

    def tokens_per_frame(self, image_hw: tuple[int, int]) -> int:
        p = self.cfg.patch_size
        return (image_hw[0] // p) * (image_hw[1] // p) + self.cfg.patch_start_idx

    def chunk_for(self, frames: int, image_hw: tuple[int, int], most: int | None = None) -> int:
        """Frames per chunk of a run over `frames` frames of `image_hw` (at most `most`)."""
        if self.chunk_frames is not None:
            return self.chunk_frames
        return chunk_frames_for(self.device, min(frames, most or frames), self.tokens_per_frame(image_hw), self.cfg.embed_dim)

    def model_metadata(self, image_hw: tuple[int, int]) -> dict:
        """What a reconstruction records of the model that made it."""
        return {
            "model": self.description,
            "variant": self.variant,
            "config": self.cfg.name,
            "image_hw": [int(image_hw[0]), int(image_hw[1])],
            "can_render": bool(self.model.can_render),
            "precision": self.precision_name,
        }
