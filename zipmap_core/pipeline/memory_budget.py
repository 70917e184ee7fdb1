"""Whether a run fits the device's memory, said before the network runs rather than found out
by failing half-way through it.

A run needs the weights, a fixed working set (the runtime, one chunk's activations, the
Newton-Schulz matrices) and a per-frame part (the four token levels the heads read, the
per-frame outputs). The per-frame cost is the slope `zipmap bench memory` measured for the
official model at 518x392 (docs/memory.json), scaled by tokens and by the bytes of the type
the model runs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..device import free_device_bytes
from ..errors import InputError
from ..io.scene_file import available_memory

if TYPE_CHECKING:
    from .runtime import NetworkRuntime

GB = 2**30
# measured (zipmap bench memory, docs/memory.json, the official model in bfloat16 on a CPU): 0.035
# to 0.050 GB a frame of 1041 tokens (518x392) in four runs, and 0.28 to 0.36 GB of peak beyond
# the loaded model for the first frame; taken with room to spare for the allocator's slack
MEASURED_FRAME_BYTES = 0.06 * GB
MEASURED_TOKENS, MEASURED_DIM = 1041, 1024
WORKING_SET_BYTES = 0.6 * GB


def available_bytes(device: torch.device) -> int:
    """Memory a run may take now: free device memory on a GPU, the host's available memory
    (the bound scene files are read against) on a CPU."""
    free = free_device_bytes(device)
    return free if free is not None else available_memory()


@dataclass
class MemoryPlan:
    frames: int
    fixed_bytes: int  # working set (the weights are resident already)
    per_frame_bytes: int
    available: int

    @property
    def need_bytes(self) -> int:
        return self.fixed_bytes + self.frames * self.per_frame_bytes

    @property
    def max_frames(self) -> int:
        return max(0, int((self.available - self.fixed_bytes) // max(self.per_frame_bytes, 1)))

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.available

    def describe(self) -> str:
        return (
            f"{self.frames} frames need about {self.need_bytes / GB:.1f} GB beyond the model "
            f"({self.available / GB:.1f} GB available, room for about {self.max_frames} frames)"
        )


def memory_plan(
    runtime: NetworkRuntime, frames: int, image_hw: tuple[int, int], available: int | None = None, keep_state: bool | None = None
) -> MemoryPlan:
    """The plan of running `runtime` on `frames` frames of `image_hw` (model input size); `keep_state`
    as a run's network options take it (None: the model keeps its state if it can render
    from it), a kept state being part of the fixed working set."""
    cfg, model = runtime.cfg, runtime.model
    keep = model.keeps_state(keep_state)
    tokens = runtime.tokens_per_frame(image_hw)
    width = 2 if model.half_type is not None else 4
    per_frame = MEASURED_FRAME_BYTES * (tokens / MEASURED_TOKENS) * (cfg.embed_dim / MEASURED_DIM) * (width / 2)
    per_frame += image_hw[0] * image_hw[1] * 4 * 4  # depth, confidence and colours as host arrays
    if available is None:
        available = available_bytes(runtime.device)
    fixed = WORKING_SET_BYTES * cfg.embed_dim / MEASURED_DIM + (model.state_bytes() if keep else 0)
    return MemoryPlan(frames, int(fixed), int(per_frame), available)


def check_fits(plan: MemoryPlan) -> None:
    """A run that would not fit is refused before the network runs, with what would."""
    if plan.fits:
        return
    most = plan.max_frames
    advice = f"take at most {most} frames" if most else "free memory or use a larger machine"
    raise InputError(f"this run does not fit the memory: {plan.describe()}; {advice}, or a lower resolution")
