"""A scene's metric scale. A reconstruction from photos alone is right up to one unknown factor;
a user who knows one length in the scene (a measured segment, or how far apart two of the
cameras stood) fixes it.

The factor is applied to the scene itself (`Reconstruction.rescaled`), so that the scene's unit
becomes the metre. That way every consumer is metric without knowing about scale: the viewer's
measurements, every export (a glTF's unit is the metre by its specification), a scene file saved
and reopened, `zipmap render --c2w` poses, and the novel-view depth (the state query's
`state_scale` takes the factor too). The manifest's metadata keeps what the scale was set from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .reconstruction import Reconstruction

METRIC_KEY = "metric_scale"  # the metadata entry: {"metres_per_unit", "reference"}
MIN_SEGMENT = 1e-6  # of the scene's median depth: a shorter segment fixes no scale


@dataclass(frozen=True)
class Endpoint:
    """One end of a measurement: a world position, and the input camera whose centre it is."""

    xyz: np.ndarray
    camera: int | None = None

    def label(self, names: list[str] | None = None) -> str:
        if self.camera is not None:
            name = f" ({names[self.camera]})" if names and 0 <= self.camera < len(names) else ""
            return f"camera {self.camera + 1}{name}"
        x, y, z = (float(v) for v in self.xyz)
        return f"point ({x:.3g}, {y:.3g}, {z:.3g})"

    def rescaled(self, factor: float) -> Endpoint:
        return Endpoint(np.asarray(self.xyz, np.float64) * factor, self.camera)


def camera_endpoint(recon: Reconstruction, index: int) -> Endpoint:
    """The centre of input camera `index` (1-based in what users read, 0-based here)."""
    if not 0 <= index < recon.num_frames:
        raise InputError(f"there is no camera {index + 1}: the scene has {recon.num_frames}")
    return Endpoint(recon.cam_to_world[index][:3, 3].astype(np.float64), index)


def distance(a: Endpoint, b: Endpoint) -> float:
    return float(np.linalg.norm(np.asarray(a.xyz, np.float64) - np.asarray(b.xyz, np.float64)))


def is_metric(recon: Reconstruction) -> bool:
    return isinstance(recon.metadata.get(METRIC_KEY), dict)


def units(recon: Reconstruction) -> str:
    """What a length in this scene is counted in: "m", or "units" before a scale is set."""
    return "m" if is_metric(recon) else "units"


def format_length(value: float, recon: Reconstruction) -> str:
    return f"{value:.4g} {units(recon)}"


def metric_factor(length: float, true_metres: float, scene_depth: float = 1.0) -> float:
    """Metres per scene unit that make a segment `length` long (scene units) `true_metres` long.
    Checked, because the factor multiplies every coordinate of the scene and its exports."""
    if not (isinstance(true_metres, (int, float)) and math.isfinite(true_metres) and true_metres > 0):
        raise InputError(f"the true length must be a positive number of metres, got {true_metres!r}")
    if not (math.isfinite(length) and length > MIN_SEGMENT * scene_depth):
        raise InputError("the measured segment has no length: pick two different points or cameras")
    return float(true_metres) / float(length)


def apply_metric_scale(recon: Reconstruction, a: Endpoint, b: Endpoint, true_metres: float) -> tuple[Reconstruction, float]:
    """(`recon` in metres, the factor its lengths took), from the segment `a`-`b` (scene units)
    being `true_metres` long; the viewer scales what it placed in the scene by the same factor.
    A scene that was metric already is scaled again (a better reference replaces the first)."""
    length = distance(a, b)
    factor = metric_factor(length, true_metres, recon.median_depth())
    before = metres_per_unit(recon) if is_metric(recon) else 1.0
    reference = f"{a.label()} to {b.label()} = {true_metres:.4g} m"
    return recon.rescaled(factor, {METRIC_KEY: {"metres_per_unit": before * factor, "reference": reference}}), factor


def metres_per_unit(recon: Reconstruction) -> float:
    """How many metres one unit of the engine's own output was (the factors applied so far)."""
    entry: Any = recon.metadata.get(METRIC_KEY)
    value = entry.get("metres_per_unit") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else float("nan")


def scale_note(recon: Reconstruction | None) -> str:
    """The status bar's word on units: short, as the status bar has little room."""
    if recon is None:
        return ""
    if not is_metric(recon):
        return "scale: arbitrary units"
    reference = recon.metadata[METRIC_KEY].get("reference")
    return f"scale: metres ({reference[:60]})" if isinstance(reference, str) else "scale: metres"
