"""The user's masks applied to a scene, after whichever engine made it: a masked pixel has no
depth and no confidence (so no point, no dense depth, no part in a novel view), and the scene
keeps the masks (`Reconstruction.masks`) for the renderers. The classical engine also keeps
COLMAP's features off them (`sfm.engine`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.masks import MaskSet
from ..io.reconstruction import Reconstruction

VIDEO_TIME = "#t="  # a video frame's name: "clip.mp4#t=1.50s"


def frame_source(name: str) -> Path:
    """The file a frame came from, by its name."""
    return Path(name.split(VIDEO_TIME)[0])


def scene_masks(recon: Reconstruction, masks: MaskSet) -> np.ndarray:
    """bool [S, H, W]: the pixels of `recon`'s frames the masks keep, at its images' geometry."""
    mode = str(recon.metadata.get("mode", "crop"))
    return masks.stack(recon.names, [frame_source(n) for n in recon.names], recon.original_wh, mode, recon.image_hw)


def apply_masks(recon: Reconstruction, keep: np.ndarray) -> Reconstruction:
    """`recon` with no depth and no confidence where `keep` is False (point maps derived again)."""
    depth = np.where(keep, recon.depth, 0).astype(np.float32)
    return recon.with_depth(depth, np.where(keep, recon.depth_conf, 0).astype(np.float32), masks=keep)
