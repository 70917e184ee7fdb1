"""`zipmap eval --novel-views`: every novel-view source judged as the field judges them. The
chosen engine registers all the frames (the held-out frames' cameras come from that registration,
as NeRF-style evaluations take theirs); every K-th frame is then held out of the dense stage and
of every renderer's sources, its camera is rendered by each source the scene has and by the
baselines, and the pictures are scored against the photos held out (`dense.heldout_evaluation`).

The scene state is judged fairly too: the network runs again on the kept frames alone, and each
held-out camera is carried into that run's frame by the similarity between the two runs' cameras
of the kept frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cancel import CancelToken, Progress
from .dense.heldout import EVERY, OFFSET, held_out, heldout_evaluation
from .engines import reconstruct_scene
from .io.inputs import InputSet, load_inputs
from .io.novel_views import NovelViews
from .io.reconstruction import Reconstruction
from .io.similarity import fit_similarity
from .pipeline.engine import Engine
from .pipeline.reconstruct_options import ReconstructOptions
from .pipeline.reconstructor import Reconstructor

SOURCES_SHOWN = ("photos", "state", "points", "nearest_frame", "mean_of_two", "mean_colour")


def evaluate_novel_views(
    engine: Engine,
    inputs: Sequence[str | Path],
    options: ReconstructOptions,
    every: int = EVERY,
    offset: int = OFFSET,
    out_dir: Path | None = None,
    network: Reconstructor | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """The held-out scores of `engine`'s scene of `inputs` (see the module's docstring); `network`:
    the model whose scene state is judged too (when it can render)."""
    cancel = cancel or CancelToken()
    loaded = load_inputs(list(inputs), options.sampling, options.max_frames, cancel=cancel)
    scene = reconstruct_scene(engine, loaded, _without_dense(options), progress, cancel)
    held = held_out(scene.num_frames, every, offset)
    extra = {}
    if network is not None and network.model.can_render:
        kept = [f for f in loaded.frames if f.name not in {scene.names[i] for i in held}]
        extra["state"] = _state_renderer(network, scene, held, InputSet(kept), options, progress, cancel)
    result = heldout_evaluation(scene, every, offset, out_dir, extra, progress, cancel)
    result["model"] = scene.metadata.get("model", "")
    result["frames_registered"] = scene.num_frames
    result["frames_given"] = len(loaded.frames)
    return result


def _without_dense(options: ReconstructOptions) -> ReconstructOptions:
    from dataclasses import replace

    return replace(options, dense=False)  # the evaluation runs the dense stage itself, on the kept frames only


def _state_renderer(
    network: Reconstructor,
    scene: Reconstruction,
    held: list[int],
    kept: InputSet,
    options: ReconstructOptions,
    progress: Progress | None,
    cancel: CancelToken,
):
    """A renderer of held-out cameras (in `scene`'s frame) from the scene state of the network
    run on the kept frames alone."""
    own = network.run(kept, _without_dense(options), progress, cancel)
    index = {n: i for i, n in enumerate(scene.names)}
    shared = [(index[n], j) for j, n in enumerate(own.names) if n in index and index[n] not in held]
    ours, theirs = (np.array(x) for x in zip(*shared))
    into = fit_similarity(scene.extrinsics[ours], own.extrinsics[theirs])

    def render(c2w: np.ndarray, k: np.ndarray, size: tuple[int, int]) -> NovelViews:
        views = network.render_views(own, into.camera_to_world(c2w).astype(np.float32), k, size)
        return NovelViews(views.rgb, views.depth / into.scale, views.confidence)

    return render


def format_novel_views(result: dict[str, Any]) -> str:
    """The summary as a small table, sources in a fixed order."""
    summary = result["summary"]
    lines = [
        f"{result.get('model', '')}: {len(result['held_out'])} frames held out of {result['frames_registered']} "
        f"(every {result.get('every', EVERY)}th)",
        f"{'source':<16}{'PSNR (dB)':>10}{'SSIM':>8}",
    ]
    for name in [s for s in SOURCES_SHOWN if s in summary] + [s for s in summary if s not in SOURCES_SHOWN]:
        lines.append(f"{name:<16}{summary[name]['psnr']:10.2f}{summary[name]['ssim']:8.3f}")
    return "\n".join(lines)
