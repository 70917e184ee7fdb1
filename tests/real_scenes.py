"""Real scenes for the app's tests and its looked-at screenshots: the shipped video registered by
COLMAP, one frame taken out of it, and the dense stage run on the rest; and a Hugging Face cache
with nothing in it (no official weights on this machine)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HELD = 11  # the frame taken out of the 24: mid-pan, seen from both sides
FRAMES = 24


@dataclass
class HeldOut:
    scene: object  # Reconstruction of the other frames, with the dense stage's depth and fused points
    photo: np.ndarray  # uint8 [H, W, 3]: the frame taken out
    c2w: np.ndarray  # [3, 4]: its registered camera
    k: np.ndarray  # [3, 3]: its intrinsics
    name: str


def held_out_scene(held: int = HELD, frames: int = FRAMES) -> HeldOut:
    """The shipped video's `frames` frames registered by the classical engine, frame `held` taken
    out of the scene (its tracks too), and the dense stage run on the others: what the app must
    show from the photos at the removed frame's camera."""
    import torch  # noqa: F401  (pycolmap imported before torch breaks feature extraction)

    from zipmap_core.engines import make_engine, reconstruct_scene
    from zipmap_core.io.inputs import VideoSampling
    from zipmap_core.pipeline.dense_stage import densify
    from zipmap_core.pipeline.reconstruct_options import ReconstructOptions
    from zipmap_core.resources import REAL_SAMPLE

    options = ReconstructOptions(sampling=VideoSampling(fps=None, max_frames=frames), dense=False)
    registered = reconstruct_scene(make_engine("colmap"), [str(REAL_SAMPLE)], options)
    keep = np.ones(registered.num_frames, bool)
    keep[held] = False
    rest = replace(
        registered,
        names=[n for n, kept in zip(registered.names, keep) if kept],
        images=registered.images[keep],
        extrinsics=registered.extrinsics[keep],
        intrinsics=registered.intrinsics[keep],
        depth=registered.depth[keep],
        depth_conf=registered.depth_conf[keep],
        original_wh=registered.original_wh[keep],
        points_cam=None,
        points_world=None,
        tracks=registered.tracks.keep_frames(keep),
    )
    scene = densify(rest).ensure_points()
    return HeldOut(scene, registered.images[held], registered.cam_to_world[held], registered.intrinsics[held], registered.names[held])


def empty_hub_cache(folder: Path, monkeypatch=None) -> Path:
    """A Hugging Face cache with nothing in it, offline (as `test_auto_engine.empty_cache`)."""
    import os

    import huggingface_hub.constants as hc

    cache = folder / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    if monkeypatch is not None:
        monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # a script of its own
        hc.HF_HUB_CACHE, hc.HF_HUB_OFFLINE = str(cache), True
        os.environ["HF_HUB_OFFLINE"] = "1"
    return cache


def cache_official(cache: Path, checkpoint: Path) -> Path:
    """`checkpoint` placed where huggingface_hub caches the official state-query download."""
    import shutil

    repo = cache / "models--coast01--ZipMap"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    return Path(shutil.copy(checkpoint, snapshot / "checkpoint_state_query.pt"))
