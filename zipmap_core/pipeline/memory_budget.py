"""Whether a run fits the device's memory, said before the network runs rather than found out
by failing half-way through it.

A run needs the weights, a fixed working set (the runtime, one chunk's activations, the
Newton-Schulz matrices) and a per-frame part (the four token levels the heads read, the
per-frame outputs). The per-frame cost is the slope `zipmap bench memory` measured for the
official model at 518x392 (docs/memory.json), scaled by tokens and by the bytes of the type
the model runs in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..device import free_device_bytes
from ..errors import InputError

if TYPE_CHECKING:
    from .reconstructor import Reconstructor

GB = 2**30
# measured (zipmap bench memory, docs/memory.json, the official model in bfloat16 on a CPU): 0.035
# to 0.050 GB a frame of 1041 tokens (518x392) in four runs, and 0.28 to 0.36 GB of peak beyond
# the loaded model for the first frame; taken with room to spare for the allocator's slack
MEASURED_FRAME_BYTES = 0.06 * GB
MEASURED_TOKENS, MEASURED_DIM = 1041, 1024
WORKING_SET_BYTES = 0.6 * GB


def available_bytes(device: torch.device) -> int | None:
    """Memory a run may take now: free device memory on a GPU, the kernel's MemAvailable on a
    Linux host (None where neither is known)."""
    free = free_device_bytes(device)
    if free is not None:
        return free
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


@dataclass
class MemoryPlan:
    frames: int
    fixed_bytes: int  # working set (the weights are resident already)
    per_frame_bytes: int
    available: int | None

    @property
    def need_bytes(self) -> int:
        return self.fixed_bytes + self.frames * self.per_frame_bytes

    @property
    def max_frames(self) -> int | None:
        if self.available is None:
            return None
        return max(0, int((self.available - self.fixed_bytes) // max(self.per_frame_bytes, 1)))

    @property
    def fits(self) -> bool:
        return self.available is None or self.need_bytes <= self.available

    def describe(self) -> str:
        have = "unknown" if self.available is None else f"{self.available / GB:.1f} GB available"
        most = "" if self.max_frames is None else f", room for about {self.max_frames} frames"
        return f"{self.frames} frames need about {self.need_bytes / GB:.1f} GB beyond the model ({have}{most})"


def memory_plan(
    rec: Reconstructor, frames: int, image_hw: tuple[int, int], available: int | None = None, keep_state: bool | None = None
) -> MemoryPlan:
    """The plan of running `rec` on `frames` frames of `image_hw` (model input size); `keep_state`
    as `Reconstructor.reconstruct` takes it (None: the model keeps its state if it can render
    from it), a kept state being part of the fixed working set."""
    cfg = rec.cfg
    keep = rec.model.can_render if keep_state is None else keep_state
    tokens = (image_hw[0] // cfg.patch_size) * (image_hw[1] // cfg.patch_size) + cfg.patch_start_idx
    width = 2 if rec.model.half_type is not None else 4
    per_frame = MEASURED_FRAME_BYTES * (tokens / MEASURED_TOKENS) * (cfg.embed_dim / MEASURED_DIM) * (width / 2)
    per_frame += image_hw[0] * image_hw[1] * 4 * 4  # depth, confidence and colours as host arrays
    if available is None:
        available = available_bytes(rec.device)
    fixed = WORKING_SET_BYTES * cfg.embed_dim / MEASURED_DIM + (rec.model.state_bytes() if keep else 0)
    return MemoryPlan(frames, int(fixed), int(per_frame), available)


def check_fits(plan: MemoryPlan) -> None:
    """A run that would not fit is refused before the network runs, with what would."""
    if plan.fits:
        return
    most = plan.max_frames or 0
    advice = f"take at most {most} frames" if most else "free memory or use a larger machine"
    raise InputError(f"this run does not fit the memory: {plan.describe()}; {advice}, or a lower resolution")
