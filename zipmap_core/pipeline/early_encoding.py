"""Batch reconstruction with decoding overlapped with the encoder: frames are patch-embedded a
chunk at a time as they arrive from the prefetching decoder (`iter_inputs` keeps decoding on its
threads meanwhile), so a GPU starts on the first frames while the last ones still decode instead
of waiting for the whole video. Tokens are per frame, so only the timing changes. Frames of mixed
sizes are padded to the largest, known only at the end: they are encoded after loading, as is a
run that keeps `max_frames` of what decodes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..cancel import CancelToken, Progress
from ..io.inputs import Frame, InputSet, Preparation, VideoSampling, check_usable, iter_inputs
from ..io.preprocess import Crop, stack_images
from .recipe import encode_frames, model_images

if TYPE_CHECKING:
    from .runtime import NetworkRuntime

AHEAD_FRAMES = 32  # the most frames one encoder call waits for


@dataclass
class EarlyEncoding:
    inputs: InputSet
    images: torch.Tensor  # uint8 [N, 3, H, W] (see `stack_images`)
    crops: list[Crop]
    tokens: torch.Tensor | None  # [1, N, P, C] on the model's device; None: encode with the rest


def load_and_encode(
    runtime: NetworkRuntime,
    paths: list[str | Path],
    sampling: VideoSampling | None,
    mode: str,
    size: int,
    report: Progress,
    cancel: CancelToken,
) -> EarlyEncoding:
    """Decodes `paths` (skipped files and sampling notes recorded as `load_inputs` does) and
    encodes each chunk of frames as soon as it is complete."""
    inputs = InputSet()
    source = iter_inputs(paths, sampling, Preparation(mode, size), cancel, inputs.skipped, inputs.notes)
    chunk = runtime.chunk_for(AHEAD_FRAMES, (size, size))  # at most AHEAD_FRAMES: the first call starts early
    pending: list[Frame] = []
    parts: list[torch.Tensor] | None = []
    for frame in source:
        inputs.frames.append(frame)
        report("load", len(inputs.frames), 0)
        if parts is None:
            continue
        if frame.prepared is None or frame.prepared[1].shape != inputs.frames[0].prepared[1].shape:
            parts, pending = None, []  # mixed sizes: the padding is known only at the end
            continue
        pending.append(frame)
        if len(pending) == chunk:
            parts.append(encode(runtime, pending, mode, size, first=not parts))
            pending = []
    check_usable(inputs)
    if parts is not None and pending:
        parts.append(encode(runtime, pending, mode, size, first=not parts))
    images, crops = model_images(inputs.frames, mode, size, report)
    return EarlyEncoding(inputs, images, crops, torch.cat(parts, dim=1) if parts else None)


def encode(runtime: NetworkRuntime, frames: list[Frame], mode: str, size: int, first: bool) -> torch.Tensor:
    """Tokens [1, n, P, C] of `frames`; the `first` chunk holds the reference frame."""
    images = stack_images([f.model_input(mode, size, as_uint8=True)[0] for f in frames], as_bytes=True)
    return encode_frames(runtime, images, first)
