"""A virtual camera's view of a scene, from one of three sources, each named where it is shown:

- `state`: ZipMap's scene state queried from the camera (a model with a novel-view head, and a
  scene that kept its state);
- `photos`: the input photos warped by their dense depth and blended (`dense.render_from_photos`),
  for any scene whose depth is dense (the dense stage's, or the network's);
- `points`: the scene's points splatted (every scene; a classical scene without the dense stage
  has its triangulated points only).

The default is the best the scene has: the photos once the dense stage measured its depth
(they are the real pixels: 36 dB on held-out frames of the shipped video, `zipmap eval
--novel-views`), else the scene state, else the photos on the network's depth, else the points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..cancel import CancelToken
from ..dense import render_from_photos
from ..errors import InputError
from ..io.novel_views import NovelViews
from ..io.reconstruction import Reconstruction
from ..options import NOVEL_VIEW_SOURCES
from .splat import splat_render

if TYPE_CHECKING:
    from .reconstructor import Reconstructor

LABELS = {"state": "scene state", "photos": "photos", "points": "points"}
CONFIDENCE_TOP = 90  # a network's confidence (1 + exp(x)) is scaled to [0, 1] at this percentile


def available_sources(rec: Reconstructor | None, recon: Reconstruction) -> list[str]:
    """The sources `recon` can be seen from with the model `rec` (None: no model loaded)."""
    found = []
    if rec is not None and rec.model.can_render and recon.state is not None:
        found.append("state")
    if not recon.is_sparse:
        found.append("photos")
    return [*found, "points"]


def best_source(rec: Reconstructor | None, recon: Reconstruction) -> str:
    """What a view shows unless the user chooses (see the module's docstring)."""
    found = available_sources(rec, recon)
    if recon.dense_points is not None:
        return "photos"
    return found[0]


def why_unavailable(source: str, rec: Reconstructor | None, recon: Reconstruction) -> str:
    if source == "state":
        if recon.state is None:
            return "this scene kept no scene state (made without a novel-view model, or with --no-state)"
        return "the loaded model has no novel-view head; load the model that made the scene"
    return "this scene has COLMAP's sparse points only: run the dense stage (--dense) to see it from the photos"


def render_views(
    rec: Reconstructor | None,
    recon: Reconstruction,
    c2w: np.ndarray,
    k: np.ndarray,
    size: tuple[int, int],
    source: str | None = None,
    draft: bool = False,
    cancel: CancelToken | None = None,
) -> tuple[str, NovelViews]:
    """(source label, views) of cameras `c2w` [V, 3, 4] with intrinsics `k` [V, 3, 3] (or one
    [3, 3] for all) at `size` (h, w); `source` None: `best_source`; `draft`: a faster, coarser
    photo render (while a camera is being dragged); `cancel`: checked between views."""
    source = source or best_source(rec, recon)
    if source not in NOVEL_VIEW_SOURCES:
        raise InputError(f"no novel-view source {source!r}; choose from {', '.join(NOVEL_VIEW_SOURCES)}")
    if source not in available_sources(rec, recon):
        raise InputError(f"cannot show the {LABELS[source]}: {why_unavailable(source, rec, recon)}")
    ks = np.broadcast_to(np.asarray(k, np.float32), (len(c2w), 3, 3))
    if source == "state":
        assert rec is not None
        return LABELS[source], rec.render_views(recon, c2w, ks, size, cancel=cancel)
    if source == "photos":
        weights = photo_weights(recon)
        views = render_from_photos(
            recon.images,
            recon.depth,
            weights,
            recon.extrinsics,
            recon.intrinsics,
            c2w,
            ks,
            size,
            draft=draft,
            keep=recon.masks,
            cancel=cancel,
        )
        return LABELS[source], views
    return LABELS[source], splat_render(recon, c2w, ks, size)


def photo_weights(recon: Reconstruction) -> np.ndarray:
    """Per-pixel weights in [0, 1] for blending photos: the dense stage's confidence as it is, a
    network's (1 + exp(x), unbounded) scaled by its CONFIDENCE_TOP percentile."""
    conf = np.where(np.isfinite(recon.depth_conf), recon.depth_conf, 0).astype(np.float32)
    if recon.dense_points is not None:
        return conf
    top = np.percentile(conf[recon.depth > 0], CONFIDENCE_TOP) if (recon.depth > 0).any() else 1.0
    return np.clip(conf / max(float(top), 1e-12), 0, 1)
