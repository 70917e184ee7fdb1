"""Raw per-frame network outputs -> a `Reconstruction`: cameras aligned to the first frame,
camera-frame and world points, colours and the scale of the scene state."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError, ModelOutputError
from ..io.preprocess import unit_bytes
from ..io.reconstruction import Reconstruction
from ..io.scene_file import first_non_finite, first_non_finite_state
from ..model.geometry import (
    camera_to_world,
    depth_to_camera_points,
    invert_rigid,
    pose_encoding_to_cameras,
    to_homogeneous,
)
from ..options import POINT_SOURCES


def check_point_source(points_from: str) -> None:
    if points_from not in POINT_SOURCES:
        raise InputError(f"points_from must be one of {', '.join(POINT_SOURCES)}, got {points_from!r}")


def to_colours(images: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Model images [N, 3, H, W] -> contiguous uint8 colours [N, H, W, 3]: the bytes themselves
    when the pipeline's uint8 batch is given (laid out that way, so no copy), else the floats
    rounded a few frames at a time (the temporaries stay in cache)."""
    if images.dtype == torch.uint8:
        return images.permute(0, 2, 3, 1).contiguous()
    n, _, h, w = images.shape
    out = torch.empty((n, h, w, 3), dtype=torch.uint8, device=images.device)
    for a in range(0, n, chunk):
        out[a : a + chunk].copy_(unit_bytes(images[a : a + chunk].permute(0, 2, 3, 1)))
    return out


def assemble_frames(
    images: torch.Tensor,
    pose_enc: torch.Tensor,
    depth: torch.Tensor,
    depth_conf: torch.Tensor,
    local_points: torch.Tensor | None,
    points_from: str,
    reference: torch.Tensor | None = None,
    with_points: bool = True,
) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """Per-frame arrays of a run of frames, computed where the network's outputs are (the GPU
    when there is one) and brought to the host once. Cameras are re-expressed in the frame of
    `reference` (the first frame's camera-to-world, 4x4); without one, this run's first frame
    becomes it. Returns (arrays, reference), so a stream can append runs that agree. Without
    `with_points`, depth-unprojected point maps are left for the Reconstruction to derive when
    (and if) they are read."""
    check_point_source(points_from)
    h, w = images.shape[-2:]
    extrinsics, intrinsics = pose_encoding_to_cameras(pose_enc.float(), (h, w))
    if reference is None:
        reference = to_homogeneous(invert_rigid(extrinsics[:1]))[0]
    extrinsics = (to_homogeneous(extrinsics) @ reference.to(extrinsics))[..., :3, :4]
    colours = to_colours(images)
    host = {"images": colours, "extrinsics": extrinsics, "intrinsics": intrinsics, "depth": depth.float(), "depth_conf": depth_conf.float()}
    if points_from == "point_head":
        if local_points is None:
            raise InputError("points_from='point_head' needs the point head's output; run the model with point_head=True")
        host["points_cam"] = local_points.float()
    elif with_points:
        host["points_cam"] = depth_to_camera_points(depth.float(), intrinsics)
    if "points_cam" in host:
        host["points_world"] = camera_to_world(host["points_cam"], extrinsics)
    arrays = {k: v.cpu().numpy() for k, v in host.items()}
    check_outputs(arrays)
    return arrays, reference


class NonFiniteOutputError(ModelOutputError):
    """The network produced NaN or infinity: nothing built from it is kept or written."""


def check_outputs(arrays: dict[str, np.ndarray]) -> None:
    """Refuses a run of frames whose cameras or depth hold NaN or infinity (names which)."""
    bad = first_non_finite(arrays)
    if bad:
        raise NonFiniteOutputError(
            f"the model produced NaN or infinite numbers ({bad}); nothing was written; the checkpoint may be damaged"
        )


def max_translation(extrinsics: np.ndarray) -> float:
    """The largest absolute camera-to-world translation component of world-to-camera poses."""
    return float(invert_rigid(torch.from_numpy(extrinsics))[..., 3].abs().max()) if len(extrinsics) else 0.0


def state_scale(largest_translation: float, frames: int) -> float:
    """The unit of the scene state's queries: the largest absolute camera translation component
    (1 for a single frame, or when every camera sits at the origin)."""
    return largest_translation if frames > 1 and largest_translation > 1e-8 else 1.0


def host_states(states: list | None) -> list[dict[str, np.ndarray]] | None:
    """The network's per-layer fast weights as host arrays (None when it kept no state)."""
    if not states or states[0] is None:
        return None
    host = [{k: v.float().cpu().numpy() for k, v in layer.items()} for layer in states]
    bad = first_non_finite_state(host)
    if bad:
        raise NonFiniteOutputError(f"the model produced NaN or infinite numbers ({bad}); nothing was written")
    return host


def assemble(
    names: list[str],
    images: torch.Tensor,
    pose_enc: torch.Tensor,
    depth: torch.Tensor,
    depth_conf: torch.Tensor,
    local_points: torch.Tensor | None,
    points_from: str,
    original_wh: np.ndarray,
) -> Reconstruction:
    """Raw per-frame predictions -> aligned cameras and world points."""
    made, _ = assemble_frames(images.to(depth.device), pose_enc, depth, depth_conf, local_points, points_from, with_points=False)
    arrays: dict[str, Any] = dict(made)
    return Reconstruction(
        names=list(names),
        original_wh=original_wh,
        state_scale=state_scale(max_translation(arrays["extrinsics"]), len(names)),
        **arrays,
        points_from_depth=points_from == "depth",
    )
