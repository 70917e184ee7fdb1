"""The inference API: inputs in, a `Reconstruction` out, with progress and cancellation.

`Reconstructor` owns a model on a device; `reconstruct` runs the whole pipeline, `render_views`
queries a stored scene state from new cameras, and `StreamingSession` grows a reconstruction
window by window with the state carried across calls.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cancel import CancelToken, Progress, reporter
from ..device import chunk_frames_for, inference_precision, select_device
from ..errors import CheckpointError, InputError
from ..io.checkpoints import load_checkpoint
from ..io.inputs import Frame, InputSet, Preparation, VideoSampling, load_inputs
from ..io.preprocess import Crop, check_mode_and_size, stack_images
from ..io.reconstruction import Reconstruction
from ..io.scene_file import first_non_finite
from ..model.geometry import ray_conditions
from ..model.zipmap import ModelOutput, ZipMap
from ..resources import BUNDLED_MODEL
from .assembly import NonFiniteOutputError, assemble, check_point_source, host_states
from .early_encoding import load_and_encode
from .streaming import StreamingSession


@dataclass
class NovelViews:
    rgb: np.ndarray  # float32 [N, H, W, 3] in [0, 1]
    depth: np.ndarray  # float32 [N, H, W], in the scene's units
    confidence: np.ndarray  # float32 [N, H, W]


def model_images(frames: list[Frame], mode: str, size: int, report: Progress,
                 pad_to: tuple[int, int] | None = None) -> tuple[torch.Tensor, list[Crop]]:
    """Model images of `frames` as uint8 [N, 3, H, W] (see `stack_images`): ready where they were
    prepared at decode time, the rest made on a thread pool (PIL's resize runs without the GIL).
    `pad_to` (h, w): the size of a larger set these frames belong to (a reconstruction split
    across processes)."""
    check_mode_and_size(mode, size)
    tensors, crops = [], []
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="preprocess") as pool:
        for i, (t, crop) in enumerate(pool.map(lambda f: f.model_input(mode, size, as_uint8=True), frames)):
            tensors.append(t)
            crops.append(crop)
            report("preprocess", i + 1, len(frames))
    return stack_images(tensors, crops, pad_to, as_bytes=True), crops


class Reconstructor:
    def __init__(
        self,
        model: ZipMap,
        device: str | torch.device = "auto",
        description: str = "",
        variant: str = "custom",
        chunk_frames: int | None = None,
        fast_cpu_bf16: bool = False,
    ) -> None:
        self.device = select_device(device) if isinstance(device, str) else device
        # official checkpoints orthogonalise in bfloat16; see `device.fast_cpu_bf16` for the trade
        self.fast_cpu_bf16 = fast_cpu_bf16
        self.model = model.to(self.device).eval()
        self.description = description or f"ZipMap '{model.cfg.name}'"
        self.variant = variant
        self.chunk_frames = chunk_frames  # None: chosen per run from the device's free memory
        self._resident: tuple[list, list] | None = None  # (the scene state mirrored, its device tensors)
        self.path: Path | None = None  # the checkpoint file, when built by `open`

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", variant: str | None = None) -> Reconstructor:
        loaded = load_checkpoint(path, variant)
        return cls(loaded.model, device, loaded.description, loaded.variant)

    @classmethod
    def open(cls, spec: str | Path | None = None, device: str = "auto", variant: str | None = None, *,
             fast_cpu_bf16: bool = False, compile: bool = False) -> Reconstructor:
        """The one way the CLI and the app build a Reconstructor from what a user names: a file,
        `official[:VARIANT]` (downloaded once) or nothing (the bundled model), with the numerics
        asked for set at construction. `path` records the file it came from."""
        from ..io.download import resolve_checkpoint

        path = resolve_checkpoint(spec)
        if not spec and not path.exists():
            raise CheckpointError(f"the bundled model is missing ({BUNDLED_MODEL}); pass a checkpoint")
        loaded = load_checkpoint(path, variant)
        rec = cls(loaded.model, device, loaded.description, loaded.variant, fast_cpu_bf16=fast_cpu_bf16)
        rec.model.set_compiled_kernels(compile)
        rec.path = path
        return rec

    @classmethod
    def bundled(cls, device: str = "auto") -> Reconstructor:
        """Our own small model, shipped in resources/ so everything works offline."""
        return cls.from_checkpoint(BUNDLED_MODEL, device)

    def warm_up(self) -> None:
        """One tiny forward pass, so the first real run does not pay the backend's one-time set-up
        (kernel selection, allocator growth) while a user waits."""
        p = self.cfg.patch_size
        with torch.inference_mode(), self._autocast():
            self.model(torch.zeros(1, 2, 3, 2 * p, 2 * p, device=self.device), window_size=0)

    @property
    def cfg(self):
        return self.model.cfg

    def _autocast(self) -> contextlib.AbstractContextManager:
        return inference_precision(self.device, self.fast_cpu_bf16)

    # ---- reconstruction ---------------------------------------------------------------------------
    def reconstruct(
        self,
        inputs: Sequence[str | Path] | InputSet,
        mode: str = "crop",
        resolution: int | None = None,
        max_frames: int | None = None,
        sampling: VideoSampling | None = None,
        window_size: int | None = None,
        keep_state: bool | None = None,
        points_from: str = "depth",
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> Reconstruction:
        self._check_point_source(points_from)
        cancel = cancel or CancelToken()
        report = reporter(progress, cancel)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        size = resolution or self.cfg.img_size
        tokens = None
        if not isinstance(inputs, InputSet) and not max_frames:
            # frames are scaled to the model's size as they decode (nothing larger is held) and
            # encoded a chunk at a time while the rest decode
            early = load_and_encode(self, list(inputs), sampling, mode, size, report, cancel)
            inputs, images, crops, tokens = early.inputs, early.images, early.crops, early.tokens
        else:
            if not isinstance(inputs, InputSet):
                report("load", 0, 1)
                inputs = load_inputs(list(inputs), sampling, max_frames, cancel=cancel,
                                     prepare=Preparation(mode, size))
            cancel.check()
            images, crops = self._preprocess(inputs.frames, mode, size, report)
        timings["preprocess_s"] = time.perf_counter() - t0  # with the encoder when it ran while decoding
        t1 = time.perf_counter()
        out = self._run_model(images, None, window_size, report, point_head=points_from == "point_head", tokens=tokens)
        timings["model_s"] = time.perf_counter() - t1
        keep = self.model.can_render if keep_state is None else keep_state
        t2 = time.perf_counter()
        recon = self._to_reconstruction(inputs.frames, images, crops, out, keep, points_from)
        timings["assemble_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        timings["per_frame_s"] = timings["model_s"] / len(inputs.frames)
        recon.timings = timings
        recon.metadata.update(
            {"mode": mode, "window_size": window_size, **inputs.report()}
        )
        report("done", 1, 1)
        return recon

    def _check_point_source(self, points_from: str) -> None:
        """Fail before the model runs, not after minutes of it."""
        check_point_source(points_from)
        if points_from == "point_head" and not hasattr(self.model, "local_point_head"):
            raise InputError(f"{self.description} has no point head; unproject depth instead (points_from='depth')")

    def _preprocess(self, frames: list[Frame], mode: str, size: int, report: Progress) -> tuple[torch.Tensor, list[Crop]]:
        return model_images(frames, mode, size, report)

    def _run_model(
        self, images: torch.Tensor, states: list | None, window_size: int | None, report: Progress,
        point_head: bool = False, tokens: torch.Tensor | None = None,
    ) -> ModelOutput:
        with torch.inference_mode(), self._autocast():
            return self.model(
                (images if tokens is not None else images.to(self.device))[None],  # with tokens: only its shape is read
                states=states,
                window_size=window_size,
                chunk_frames=self.chunk_for(images),
                hook=report,
                point_head=point_head,
                tokens=tokens,
            )

    def chunk_for(self, images: torch.Tensor) -> int:
        """The chunk size of a run over `images` [S, 3, H, W]."""
        if self.chunk_frames is not None:
            return self.chunk_frames
        p = self.cfg.patch_size
        tokens = (images.shape[-2] // p) * (images.shape[-1] // p) + self.cfg.patch_start_idx
        return chunk_frames_for(self.device, images.shape[0], tokens, self.cfg.embed_dim)

    def _to_reconstruction(
        self,
        frames: list[Frame],
        images: torch.Tensor,
        crops: list[Crop],
        out: ModelOutput,
        keep_state: bool,
        points_from: str,
    ) -> Reconstruction:
        recon = assemble(
            names=[f.name for f in frames],
            images=images,
            pose_enc=out.pose_enc[0],
            depth=out.depth[0, ..., 0],
            depth_conf=out.depth_conf[0],
            local_points=None if out.local_points is None else out.local_points[0],
            points_from=points_from,
            original_wh=np.array([c.original_wh for c in crops], dtype=np.int32).reshape(-1, 2),
        )
        if keep_state:
            recon.state = host_states(out.states)
        recon.metadata.update(self.model_metadata(recon.image_hw))
        return recon

    def model_metadata(self, image_hw: tuple[int, int]) -> dict:
        """What a reconstruction records of the model that made it."""
        return {"model": self.description, "variant": self.variant, "config": self.cfg.name,
                "image_hw": [int(image_hw[0]), int(image_hw[1])], "can_render": bool(self.model.can_render)}

    # ---- novel views --------------------------------------------------------------------------------
    def render_views(
        self,
        recon: Reconstruction,
        c2w: np.ndarray,
        intrinsics: np.ndarray,
        size: tuple[int, int] | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> NovelViews:
        """Renders RGB, depth and confidence from cameras [N, 3|4, 4] (camera-to-world, in the
        reconstruction's frame) with intrinsics [N, 3, 3] for an image of `size` (h, w)."""
        if not self.model.can_render:
            raise InputError(
                f"{self.description} has no novel-view head; load checkpoint_state_query.pt or the bundled model"
            )
        if recon.state is None:
            raise InputError("this reconstruction has no stored scene state; reconstruct it with a state-query model")
        self.check_state(recon)
        h, w = size or recon.image_hw
        p = self.cfg.patch_size
        if h % p or w % p:
            raise InputError(f"render size must be a multiple of {p}, got {h}x{w}")
        report = reporter(progress, cancel or CancelToken())
        scale = recon.state_scale
        poses = torch.as_tensor(np.asarray(c2w, np.float32)[..., :3, :4]).clone()
        poses[..., :3, 3] /= scale
        rays = ray_conditions(poses[None], torch.tensor(np.asarray(intrinsics, np.float32))[None], (h, w))
        states = self._resident_state(recon)
        with torch.inference_mode(), self._autocast():
            rgbd, conf = self.model.render(rays.to(self.device), states, chunk_frames=self.chunk_for(rays[0]), hook=report)
        rgbd = rgbd[0].float().cpu().numpy()
        views = NovelViews(rgbd[..., :3], rgbd[..., 3] * scale, conf[0].float().cpu().numpy())
        bad = first_non_finite({"colour": views.rgb, "depth": views.depth})
        if bad:
            raise NonFiniteOutputError(f"the model produced NaN or infinite numbers (the {bad.replace('frame', 'view')}); "
                                       f"nothing was written")
        return views

    def check_state(self, recon: Reconstruction) -> None:
        """A scene state this model cannot query (another model made it) is a clear error."""
        problem = self.model.state_problem(recon.state) if recon.state is not None else None
        if problem:
            raise InputError(f"this scene's state was made by another model than {self.description} ({problem}); "
                             f"render it with the checkpoint that made it")

    def _resident_state(self, recon: Reconstruction) -> list[dict[str, torch.Tensor]]:
        """The scene state on the model's device, uploaded once per scene and kept there between
        renders (the official state is ~0.6 GB: one upload per query would dominate it)."""
        if self._resident is None or self._resident[0] is not recon.state:
            tensors = [{k: torch.as_tensor(v, device=self.device) for k, v in layer.items()} for layer in recon.state]
            self._resident = (recon.state, tensors)
        return self._resident[1]

    def stream(self, window_size: int | None = None, mode: str = "crop", resolution: int | None = None) -> StreamingSession:
        return StreamingSession(self, window_size, mode, resolution or self.cfg.img_size)


