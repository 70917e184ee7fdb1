"""Streaming reconstruction: frames arrive window by window and the scene state carries over."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cancel import CancelToken, Progress, reporter
from ..io.inputs import Frame
from ..io.preprocess import Crop
from ..io.reconstruction import Reconstruction
from .assembly import assemble

if TYPE_CHECKING:
    from .reconstructor import Reconstructor


class StreamingSession:
    """Feeds frames window by window; the scene state carries over, so each call costs only the
    new frames while the reconstruction keeps growing."""

    def __init__(self, rec: Reconstructor, window_size: int | None, mode: str, resolution: int) -> None:
        self.rec = rec
        self.window_size = window_size if window_size is not None else (rec.cfg.window_size or 2)
        self.mode, self.resolution = mode, resolution
        self.states: list | None = None
        self._frames: list[Frame] = []
        self._images: list[torch.Tensor] = []
        self._crops: list[Crop] = []
        self._raw: dict[str, list[torch.Tensor]] = {"pose_enc": [], "depth": [], "depth_conf": []}
        self.seconds = 0.0

    def add(self, frames: list[Frame], progress: Progress | None = None, cancel: CancelToken | None = None) -> Reconstruction:
        report = reporter(progress, cancel or CancelToken())
        images, crops = self.rec._preprocess(frames, self.mode, self.resolution, report)
        if self._images and images.shape[-2:] != self._images[0].shape[-2:]:
            raise ValueError(
                f"frame size {tuple(images.shape[-2:])} differs from the session's {tuple(self._images[0].shape[-2:])}"
            )
        t0 = time.perf_counter()
        out = self.rec._run_model(images, self.states, self.window_size, report)
        self.seconds += time.perf_counter() - t0
        self.states = out.states
        self._frames += frames
        self._images.append(images)
        self._crops += crops
        for key in self._raw:
            self._raw[key].append(getattr(out, key)[0].float().cpu())
        return self.reconstruction()

    def reconstruction(self) -> Reconstruction:
        if not self._frames:
            raise ValueError("no frames were added to the streaming session yet")
        raw = {k: torch.cat(v) for k, v in self._raw.items() if v}
        recon = assemble(
            names=[f.name for f in self._frames],
            images=torch.cat(self._images),
            pose_enc=raw["pose_enc"],
            depth=raw["depth"][..., 0],
            depth_conf=raw["depth_conf"],
            local_points=None,
            points_from="depth",
            original_wh=np.array([c.original_wh for c in self._crops], dtype=np.int32),
        )
        recon.timings = {"model_s": self.seconds, "per_frame_s": self.seconds / len(self._frames)}
        recon.metadata.update({"model": self.rec.description, "streaming": True, "window_size": self.window_size})
        return recon
