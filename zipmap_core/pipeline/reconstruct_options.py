"""What a reconstruction is asked to do, as one typed value checked once where it is built: the
options every engine reads, and a section for what only the network reads. The command line and
the app build one the same way; each engine then says which it cannot take (`Engine.refuse`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InputError
from ..io.inputs import VideoSampling
from ..io.preprocess import check_mode_and_size
from ..options import MAX_FRAMES, POINT_SOURCES

if TYPE_CHECKING:
    from ..io.intrinsics import KnownIntrinsics
    from ..io.known_poses import KnownPoses
    from ..io.masks import MaskSet


@dataclass(frozen=True)
class NetworkOptions:
    """What only the network reads: its TTT order, its scene state and where points come from."""

    window_size: int | None = None  # TTT window in frames; 0: bidirectional; None: the model's default
    keep_state: bool | None = None  # keep the scene state (None: when the model can render from it)
    points_from: str = "depth"  # world points from unprojected depth, or the point head

    def __post_init__(self) -> None:
        if self.points_from not in POINT_SOURCES:
            raise InputError(f"points_from must be one of {', '.join(POINT_SOURCES)}, got {self.points_from!r}")
        if self.window_size is not None and not 0 <= self.window_size <= MAX_FRAMES:
            raise InputError(f"window_size must be 0 (bidirectional) to {MAX_FRAMES} frames, got {self.window_size}")

    def differences(self) -> list[str]:
        """The options set away from their defaults, as a user names them: what an engine without
        the network refuses by name."""
        said = []
        if self.window_size:
            said.append(f"--window-size {self.window_size}")
        if self.keep_state is False:
            said.append("--no-state")
        if self.points_from != "depth":
            said.append(f"--points-from {self.points_from}")
        return said


@dataclass(frozen=True)
class ReconstructOptions:
    """Every engine's options. `resolution` None: the engine's own (the model's input width, or
    the classical engine's); `max_frames`: at most this many frames, evenly spaced; `poses`: known
    cameras (their intrinsics with them); `dense` None: the dense stage runs where the cameras are
    measured (the engine says)."""

    mode: str = "crop"
    resolution: int | None = None
    max_frames: int | None = None
    sampling: VideoSampling | None = None
    intrinsics: KnownIntrinsics | None = None
    poses: KnownPoses | None = None
    masks: MaskSet | None = None  # black = ignore: no features, no depth, no part in novel views there
    dense: bool | None = None
    network: NetworkOptions = field(default_factory=NetworkOptions)

    def __post_init__(self) -> None:
        check_mode_and_size(self.mode, self.resolution or 14)
        if self.max_frames is not None and not 1 <= self.max_frames <= MAX_FRAMES:
            raise InputError(f"max_frames must be 1 to {MAX_FRAMES}, got {self.max_frames}")
        if self.intrinsics is not None and self.poses is not None:
            raise InputError("--poses gives each camera's intrinsics with it; leave out --intrinsics")
        if self.intrinsics is not None and self.network.points_from != "depth":
            raise InputError(
                "known intrinsics are used to unproject depth; the point head's points do not take them (use points_from='depth')"
            )
