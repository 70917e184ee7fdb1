"""Streaming reconstruction: frames arrive window by window, the scene state carries over, and
the reconstruction grows by appending, so a call costs what its new frames cost, however long
the stream already is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..cancel import CancelToken, Progress, reporter
from ..io.inputs import Frame
from ..io.reconstruction import Reconstruction
from .assembly import assemble_frames, host_states, max_translation, state_scale
from .recipe import StageClock, frame_outputs, model_images, original_sizes, record_run, run_network

if TYPE_CHECKING:
    from .runtime import NetworkRuntime


class GrowingArrays:
    """Per-frame arrays that grow by appending: capacity doubles when full (amortised O(1) a
    frame) and a snapshot is a view of the rows filled so far. Later appends write only rows past
    a snapshot's end, so a snapshot handed out never changes."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self.count = 0

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(next(iter(arrays.values())))
        for key, value in arrays.items():
            buf = self._buffers.get(key)
            if buf is None:
                buf = np.empty((max(n, 8), *value.shape[1:]), value.dtype)
            elif buf.shape[1:] != value.shape[1:]:
                raise ValueError(f"{key}: shape {value.shape[1:]} differs from the stream's {buf.shape[1:]}")
            if self.count + n > len(buf):
                grown = np.empty((max(2 * len(buf), self.count + n), *buf.shape[1:]), buf.dtype)
                grown[: self.count] = buf[: self.count]
                buf = grown
            buf[self.count : self.count + n] = value
            self._buffers[key] = buf
        self.count += n

    def view(self) -> dict[str, np.ndarray]:
        return {key: buf[: self.count] for key, buf in self._buffers.items()}


class StreamingSession:
    """Feeds frames window by window; the scene state carries over, so each call costs only the
    new frames while the reconstruction keeps growing."""

    def __init__(self, runtime: NetworkRuntime, window_size: int | None, mode: str, resolution: int) -> None:
        self.runtime = runtime
        self.window_size = window_size if window_size is not None else (runtime.cfg.window_size or 2)
        self.mode, self.resolution = mode, resolution
        self.states: list | None = None
        self._names: list[str] = []
        self._arrays = GrowingArrays()
        self._reference: torch.Tensor | None = None  # frame 0's camera-to-world: every camera's frame
        self._max_translation = 0.0
        self.clock = StageClock()

    @property
    def num_frames(self) -> int:
        return len(self._names)

    def add(self, frames: list[Frame], progress: Progress | None = None, cancel: CancelToken | None = None) -> Reconstruction:
        report = reporter(progress, cancel or CancelToken())
        with self.clock.stage("preprocess"):
            images, crops = model_images(frames, self.mode, self.resolution, report)
        with self.clock.stage("model"):
            out = run_network(self.runtime, images, report, states=self.states, window_size=self.window_size)
        with self.clock.stage("assemble"):
            pose_enc, depth, depth_conf = frame_outputs(out)
            arrays, self._reference = assemble_frames(images.to(depth.device), pose_enc, depth, depth_conf, None, "depth", self._reference)
            arrays["original_wh"] = original_sizes(crops)
            self._arrays.append(arrays)  # raises before anything changes when the size differs
            self.states = out.states
            self._names += [f.name for f in frames]
            self._max_translation = max(self._max_translation, max_translation(arrays["extrinsics"]))
        return self.reconstruction()

    @property
    def timings(self) -> dict[str, float]:
        return self.clock.timings(self.num_frames, elapsed=False)

    def reconstruction(self) -> Reconstruction:
        """The reconstruction so far: views of the stream's arrays, plus the current scene state
        (its size does not depend on the number of frames)."""
        if not self._names:
            raise ValueError("no frames were added to the streaming session yet")
        arrays: dict[str, Any] = self._arrays.view()  # the point maps among them: no tracks
        recon = Reconstruction(
            names=list(self._names), **arrays, points_from_depth=True, state_scale=state_scale(self._max_translation, self.num_frames)
        )
        if self.runtime.model.can_render:
            recon.state = host_states(self.states)
        return record_run(recon, self.runtime, self.clock, elapsed=False, streaming=True, window_size=self.window_size, mode=self.mode)

    def run(
        self, frames: Iterable[Frame], window: int | None = None, progress: Progress | None = None, cancel: CancelToken | None = None
    ) -> Iterator[Reconstruction]:
        """Adds `frames` (any iterable: a prefetching decoder keeps the next window coming while
        the network runs) `window` at a time, yielding the reconstruction after each call."""
        step = window or self.window_size
        batch: list[Frame] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == step:
                yield self.add(batch, progress, cancel)
                batch = []
        if batch:
            yield self.add(batch, progress, cancel)
