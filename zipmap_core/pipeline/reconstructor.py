"""The inference API: inputs in, a `Reconstruction` out, with progress and cancellation.

`Reconstructor` owns a model on a device; `reconstruct` runs the whole pipeline, `render_views`
queries a stored scene state from new cameras, and `StreamingSession` grows a reconstruction
window by window with the state carried across calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cancel import CancelToken, Progress, reporter
from ..device import inference_half, select_device
from ..errors import CheckpointError, InputError
from ..io.checkpoints import load_checkpoint
from ..io.inputs import InputSet, VideoSampling
from ..io.novel_views import NovelViews
from ..io.reconstruction import Reconstruction
from ..io.scene_file import first_non_finite
from ..io.similarity import Similarity, fit_similarity
from ..model.geometry import ray_conditions
from ..model.zipmap import ZipMap
from ..resources import BUNDLED_MODEL
from .assembly import NonFiniteOutputError, assemble, check_point_source, host_states
from .early_encoding import load_and_encode
from .memory_budget import check_fits, memory_plan
from .recipe import StageClock, frame_outputs, input_set, model_images, original_sizes, record_run, run_network
from .reconstruct_options import NetworkOptions, ReconstructOptions
from .runtime import NetworkRuntime, parameter_count
from .streaming import StreamingSession

if TYPE_CHECKING:
    from ..io.intrinsics import KnownIntrinsics


class Reconstructor:
    """A front over a loaded network (`NetworkRuntime`): the recipe's stages run on its runtime,
    which `runtime` hands to anything else that needs the model (a stream, a split run, the
    memory plan)."""

    def __init__(
        self,
        model: ZipMap,
        device: str | torch.device = "auto",
        description: str = "",
        variant: str = "custom",
        chunk_frames: int | None = None,
        fast_cpu_bf16: bool = False,
        precision: str = "float32",
    ) -> None:
        """`precision`: the type the weights are held and run in (`device.inference_half`:
        `auto`, `bf16`, `fp16`, or `float32`, what the parity tests run); a model loaded straight
        into a half type (`open`) keeps it."""
        self.runtime = NetworkRuntime.on_device(
            model,
            select_device(device) if isinstance(device, str) else device,
            precision,
            description=description or f"ZipMap '{model.cfg.name}'",
            variant=variant,
            chunk_frames=chunk_frames,
            fast_cpu_bf16=fast_cpu_bf16,
        )
        self._resident: tuple[list, list] | None = None  # (the scene state mirrored, its device tensors)

    # what the runtime holds, read (and the run-time switches set) through the front
    model = property(lambda self: self.runtime.model)
    device = property(lambda self: self.runtime.device)
    description = property(lambda self: self.runtime.description)
    variant = property(lambda self: self.runtime.variant)
    cfg = property(lambda self: self.runtime.cfg)
    precision_name = property(lambda self: self.runtime.precision_name)

    @property
    def path(self) -> Path | None:
        """The checkpoint file, when built by `open`."""
        return self.runtime.path

    @property
    def fast_cpu_bf16(self) -> bool:
        return self.runtime.fast_cpu_bf16

    @fast_cpu_bf16.setter
    def fast_cpu_bf16(self, enabled: bool) -> None:
        self.runtime.fast_cpu_bf16 = enabled

    @property
    def chunk_frames(self) -> int | None:
        return self.runtime.chunk_frames

    @chunk_frames.setter
    def chunk_frames(self, frames: int | None) -> None:
        self.runtime.chunk_frames = frames

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", variant: str | None = None) -> Reconstructor:
        """A checkpoint file on the CPU or `device` (`open` with its defaults)."""
        return cls.open(path, device, variant)

    @classmethod
    def open(
        cls,
        spec: str | Path | None = None,
        device: str = "auto",
        variant: str | None = None,
        *,
        fast_cpu_bf16: bool = False,
        compile: bool = False,
        precision: str = "auto",
    ) -> Reconstructor:
        """The one way the CLI and the app build a Reconstructor from what a user names: a file,
        `official[:VARIANT]` (downloaded once) or nothing (the bundled model), with the numerics
        asked for set at construction: the weights are read straight into the type `precision`
        gives on this device (see `device.inference_half`). `path` records the file it came from."""
        from ..io.download import resolve_checkpoint

        path = resolve_checkpoint(spec)
        if not spec and not path.exists():
            raise CheckpointError(f"the bundled model is missing ({BUNDLED_MODEL}); pass a checkpoint")
        target = select_device(device)
        loaded = load_checkpoint(path, variant, half_for=lambda model: inference_half(target, precision, parameter_count(model)))
        rec = cls(loaded.model, target, loaded.description, loaded.variant, fast_cpu_bf16=fast_cpu_bf16)
        rec.model.set_compiled_kernels(compile)
        rec.runtime.path = path
        return rec

    @classmethod
    def bundled(cls, device: str = "auto") -> Reconstructor:
        """Our own small model, shipped in resources/ so everything works offline."""
        return cls.open(None, device)

    def warm_up(self) -> None:
        """One tiny forward pass, so the first real run does not pay the backend's one-time set-up
        (kernel selection, allocator growth) while a user waits."""
        p = self.cfg.patch_size
        with torch.inference_mode(), self.precision():
            self.model(torch.zeros(1, 2, 3, 2 * p, 2 * p, device=self.device), window_size=0)

    def precision(self) -> contextlib.AbstractContextManager:
        """The number formats the network runs in here (see `device.inference_precision`)."""
        return self.runtime.precision()

    def chunk_for(self, images: torch.Tensor) -> int:
        """The chunk size of a run over `images` [S, 3, H, W]."""
        return self.runtime.chunk_for(images.shape[0], (int(images.shape[-2]), int(images.shape[-1])))

    def model_metadata(self, image_hw: tuple[int, int]) -> dict:
        return self.runtime.model_metadata(image_hw)

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
        intrinsics: KnownIntrinsics | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say_memory: Callable[[str], None] | None = None,
    ) -> Reconstruction:
        """`run` with its options given one by one (the public API since the first release)."""
        network = NetworkOptions(window_size, keep_state, points_from)
        options = ReconstructOptions(mode, resolution, max_frames, sampling, intrinsics, network=network)
        return self.run(inputs, options, progress, cancel, say_memory)

    def run(
        self,
        inputs: Sequence[str | Path] | InputSet,
        options: ReconstructOptions,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Reconstruction:
        """The network's reconstruction of `inputs`. `options.intrinsics`: the camera's, known
        (see `io.intrinsics`): depth is unprojected with them and the scene keeps them in place
        of the predicted ones. `say`: told the memory plan once the frames are known and it
        fits, before the network runs (the command line prints it; a plan that cannot fit is
        refused with its own message)."""
        net = options.network
        self._check_point_source(net.points_from)
        cancel = cancel or CancelToken()
        report = reporter(progress, cancel)
        clock = StageClock()
        mode, size = options.mode, options.resolution or self.cfg.img_size
        tokens = None
        with clock.stage("preprocess"):  # with the encoder when it runs while frames decode
            if not isinstance(inputs, InputSet) and not options.max_frames and options.masks is None:
                # frames are scaled to the model's size as they decode (nothing larger is held) and
                # encoded a chunk at a time while the rest decode
                early = load_and_encode(self.runtime, list(inputs), options.sampling, mode, size, report, cancel)
                inputs, images, crops, tokens = early.inputs, early.images, early.crops, early.tokens
            else:
                inputs = input_set(inputs, options.sampling, options.max_frames, mode, size, report, cancel, options.masks)
                cancel.check()
                images, crops = model_images(inputs.frames, mode, size, report)
        if options.intrinsics is not None:
            options.intrinsics.check_fits(crops, "the intrinsics given")
        given = None if options.poses is None else options.poses.for_frames(inputs.names(), crops)  # before the network
        keep = self.model.keeps_state(net.keep_state)
        plan = memory_plan(self.runtime, images.shape[0], (int(images.shape[-2]), int(images.shape[-1])), keep_state=keep)
        check_fits(plan)  # before the network: a run that cannot fit is said now, not after minutes
        if say is not None:
            say(f"memory: {plan.describe()}")
        with clock.stage("model"):
            out = run_network(
                self.runtime,
                images,
                report,
                window_size=net.window_size,
                point_head=net.points_from == "point_head",
                tokens=tokens,
                keep_states=keep,
            )
        with clock.stage("assemble"):
            recon = assemble(
                inputs.names(),
                images,
                *frame_outputs(out),
                None if out.local_points is None else out.local_points[0],
                net.points_from,
                original_sizes(crops),
            )
            if keep:
                recon.state = host_states(out.states)
            if options.intrinsics is not None:
                recon.intrinsics = np.stack([options.intrinsics.matrix_for(c) for c in crops]).astype(np.float32)
                recon.forget_points()
                recon.metadata["intrinsics"] = options.intrinsics.describe()
        if options.poses is not None and given is not None:  # the scene brought onto the known cameras, depth scaled with them
            recon = recon.transformed(fit_similarity(recon.extrinsics, given[0]), {"poses": options.poses.describe()})
        record_run(recon, self.runtime, clock, mode=mode, window_size=net.window_size, **inputs.report())
        recon.metadata["memory"] = plan.describe()
        report("done", 1, 1)
        return recon

    def _check_point_source(self, points_from: str) -> None:
        """Fail before the model runs, not after minutes of it."""
        check_point_source(points_from)
        if points_from == "point_head" and not hasattr(self.model, "local_point_head"):
            raise InputError(f"{self.description} has no point head; unproject depth instead (points_from='depth')")

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
            raise InputError(f"{self.description} has no novel-view head; load checkpoint_state_query.pt or the bundled model")
        if recon.state is None:
            raise InputError("this reconstruction has no stored scene state; reconstruct it with a state-query model")
        self.check_state(recon)
        h, w = size or recon.image_hw
        p = self.cfg.patch_size
        if h % p or w % p:
            raise InputError(f"render size must be a multiple of {p}, got {h}x{w}")
        report = reporter(progress, cancel or CancelToken())
        scale = recon.state_scale
        c2w = np.asarray(c2w, np.float64)[..., :3, :4]
        if recon.state_frame is not None:  # into the frame the state was made in (known cameras, refinement)
            c2w = Similarity(1.0, recon.state_frame[:, :3], recon.state_frame[:, 3]).camera_to_world(c2w)
        poses = torch.as_tensor(c2w, dtype=torch.float32).clone()
        poses[..., :3, 3] /= scale
        rays = ray_conditions(poses[None], torch.tensor(np.asarray(intrinsics, np.float32))[None], (h, w))
        states = self._resident_state(recon)
        with torch.inference_mode(), self.precision():
            rgbd, conf = self.model.render(rays.to(self.device), states, chunk_frames=self.chunk_for(rays[0]), hook=report)
        rgbd = rgbd[0].float().cpu().numpy()
        views = NovelViews(rgbd[..., :3], rgbd[..., 3] * scale, conf[0].float().cpu().numpy())
        bad = first_non_finite({"colour": views.rgb, "depth": views.depth})
        if bad:
            raise NonFiniteOutputError(
                f"the model produced NaN or infinite numbers (the {bad.replace('frame', 'view')}); nothing was written"
            )
        return views

    def check_state(self, recon: Reconstruction) -> None:
        """A scene state this model cannot query (another model made it) is a clear error."""
        problem = self.model.state_problem(recon.state) if recon.state is not None else None
        if problem:
            raise InputError(
                f"this scene's state was made by another model than {self.description} ({problem}); "
                f"render it with the checkpoint that made it"
            )

    def _resident_state(self, recon: Reconstruction) -> list[dict[str, torch.Tensor]]:
        """The scene state on the model's device, uploaded once per scene and kept there between
        renders (the official state is ~0.6 GB: one upload per query would dominate it)."""
        if self._resident is None or self._resident[0] is not recon.state:
            tensors = [{k: torch.as_tensor(v, device=self.device) for k, v in layer.items()} for layer in recon.state]
            self._resident = (recon.state, tensors)
        return self._resident[1]

    def stream(self, window_size: int | None = None, mode: str = "crop", resolution: int | None = None) -> StreamingSession:
        return StreamingSession(self.runtime, window_size, mode, resolution or self.cfg.img_size)
