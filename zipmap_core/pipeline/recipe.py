"""The one reconstruction recipe: every way of driving the network (a batch, a stream window by
window, a run split across processes) goes through these stages with one signature each, and
the run's record (stage timings, model and input metadata, the pictures' original sizes) is built
here once.

    frames -> model_images -> run_network -> frame_outputs -> (assemble: assembly.py) -> record_run

`Reconstructor.reconstruct`, `StreamingSession.add` and `distributed.reconstruct_split` differ
only in where frames come from and where outputs go (all at once, appended, gathered to rank 0)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ..cancel import CancelToken, Progress
from ..errors import InputError
from ..io.inputs import Frame, InputSet, Preparation, VideoSampling, load_inputs
from ..io.preprocess import Crop, check_mode_and_size, stack_images
from ..io.reconstruction import Reconstruction

if TYPE_CHECKING:
    from ..io.masks import MaskSet
    from ..model.shard import FrameShard
    from ..model.zipmap import ModelOutput
    from .runtime import NetworkRuntime


class Maker(Protocol):
    """What made a scene (a network runtime, the classical engine): it says what it is."""

    def model_metadata(self, image_hw: tuple[int, int]) -> dict: ...


def input_set(
    inputs: Sequence[str | Path] | InputSet,
    sampling: VideoSampling | None,
    max_frames: int | None,
    mode: str,
    size: int,
    report: Progress,
    cancel: CancelToken,
    masks: MaskSet | None = None,
) -> InputSet:
    """Stage 0. The frames of `inputs` (files, folders, videos), each made ready for the model
    input (mode, size) as it decodes; an InputSet already loaded is taken as it is. `masks`: the
    user's, every frame's found (a missing one is said before the engine's work)."""
    if not isinstance(inputs, InputSet):
        report("load", 0, 1)
        inputs = load_inputs(list(inputs), sampling, max_frames, cancel=cancel, prepare=Preparation(mode, size))
    if masks is not None:
        masks.check_covers(inputs.names(), [f.source for f in inputs.frames])
    return inputs


def model_images(
    frames: list[Frame], mode: str, size: int, report: Progress, pad_to: tuple[int, int] | None = None
) -> tuple[torch.Tensor, list[Crop]]:
    """Stage 1. Model images of `frames` as uint8 [N, 3, H, W] (see `stack_images`): ready where
    they were prepared at decode time, the rest made on a thread pool (PIL's resize runs without
    the GIL). `pad_to` (h, w): the size of a larger set these frames belong to (a split run)."""
    check_mode_and_size(mode, size)
    tensors, crops = [], []
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="preprocess") as pool:
        for i, (t, crop) in enumerate(pool.map(lambda f: f.model_input(mode, size, as_uint8=True), frames)):
            tensors.append(t)
            crops.append(crop)
            report("preprocess", i + 1, len(frames))
    return stack_images(tensors, crops, pad_to, as_bytes=True), crops


def encode_frames(runtime: NetworkRuntime, images: torch.Tensor, first: bool) -> torch.Tensor:
    """Stage 2a, ahead of the network: encoder tokens [1, n, P, C] of model images [n, 3, H, W]
    (uint8 bytes), while later frames still decode; the `first` chunk holds the reference frame."""
    with torch.inference_mode(), runtime.precision():
        return runtime.model.aggregator.tokenize_images(images.to(runtime.device)[None], first_is_reference=first, chunk_frames=len(images))


def run_network(
    runtime: NetworkRuntime,
    images: torch.Tensor,
    report: Progress,
    *,
    states: list | None = None,
    window_size: int | None = None,
    point_head: bool = False,
    tokens: torch.Tensor | None = None,
    shard: FrameShard | None = None,
    keep_states: bool = True,
) -> ModelOutput:
    """Stage 2. The network on `images` [S, 3, H, W] with the runtime's device, precision and
    chunking; `tokens`: already encoded (then only the images' shape is read); `states`: a
    stream's carried scene state; `shard`: this process's frames of a split run; `keep_states`:
    whether the scene state is wanted (novel views, a stream) or each layer's can go."""
    with torch.inference_mode(), runtime.precision():
        return runtime.model(
            (images if tokens is not None else images.to(runtime.device))[None],
            states=states,
            window_size=window_size if shard is None else 0,
            chunk_frames=runtime.chunk_for(images.shape[0], (int(images.shape[-2]), int(images.shape[-1]))),
            hook=report,
            point_head=point_head,
            tokens=tokens,
            shard=shard,
            keep_states=keep_states,
        )


def frame_outputs(out: ModelOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3's inputs: (pose encodings [S, 9], depth [S, H, W], confidence [S, H, W]) of the one
    sequence, what every driver assembles; a model without these heads cannot reconstruct."""
    if out.pose_enc is None or out.depth is None or out.depth_conf is None:
        raise InputError("this model has no camera or depth head, so it cannot reconstruct a scene")
    return out.pose_enc[0], out.depth[0, ..., 0], out.depth_conf[0]


def original_sizes(crops: list[Crop]) -> np.ndarray:
    """[N, 2] (width, height) of the pictures the frames came from: one rule for every driver."""
    return np.array([c.original_wh for c in crops], dtype=np.int32).reshape(-1, 2)


class StageClock:
    """Seconds per stage of a run (`with clock.stage("model"): ...`), added up across calls, so a
    stream's record is the sum of its windows."""

    STAGES = ("preprocess", "model", "assemble")  # every driver's; a record always lists them

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {f"{name}_s": 0.0 for name in self.STAGES}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"{name}_s"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

    def timings(self, frames: int, elapsed: bool = True) -> dict[str, float]:
        """The record's timings: each stage, the total (wall time since the clock started, or the
        stages' sum for a stream that waits on its source between calls) and model seconds a frame."""
        total = time.perf_counter() - self.start if elapsed else sum(self.seconds.values())
        return {**self.seconds, "total_s": total, "per_frame_s": self.seconds.get("model_s", 0.0) / max(frames, 1)}


def record_run(recon: Reconstruction, maker: Maker, clock: StageClock, elapsed: bool = True, **metadata: Any) -> Reconstruction:
    """The run's record, built once: timings from `clock`, what made it (`model_metadata`) and
    the driver's own `metadata` (mode, window, processes, inputs' report)."""
    recon.timings = clock.timings(recon.num_frames, elapsed)
    recon.metadata.update({"cameras": "network", **maker.model_metadata(recon.image_hw), **metadata})
    return recon
