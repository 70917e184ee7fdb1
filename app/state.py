"""The app's state, free of Qt: the scene, the model, what the user is told, and the records of
what they placed. Views and controllers subscribe to its signals (psygnal, what napari's evented
models are built on) instead of reaching into the window, and any of them can change it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal

from zipmap_core.options import ENGINES, NOVEL_VIEW_SOURCES, PATCH

if TYPE_CHECKING:
    from zipmap_core.io.inputs import Frame
    from zipmap_core.io.masks import MaskSet
    from zipmap_core.io.metric import Endpoint
    from zipmap_core.io.novel_views import NovelViews
    from zipmap_core.io.reconstruction import Reconstruction
    from zipmap_core.pipeline.reconstructor import Reconstructor


@dataclass
class VirtualCamera:
    """A camera placed by the user: camera-to-world (OpenCV axes), vertical field of view, size;
    `k`: intrinsics of its own (a camera placed at a registered one), else from the field of view."""

    c2w: np.ndarray
    fov_y_deg: float = 60.0
    width: int = 112
    height: int = 84
    name: str = "virtual"
    k: np.ndarray | None = None

    def intrinsics(self) -> np.ndarray:
        if self.k is not None:
            return np.asarray(self.k, np.float32).copy()
        from zipmap_core.model.geometry import intrinsics_from_fov  # torch: loaded by the time a camera is placed in a scene

        return intrinsics_from_fov(self.fov_y_deg, (self.height, self.width)).numpy()


@dataclass
class ViewSettings:
    """How the 3D view draws the scene, as the view panel sets it."""

    confidence_percentile: float = 0.0
    point_size: float = 3.0
    color_mode: str = "rgb"
    show_images: bool = True
    show_guides: bool = True
    fly: bool = False


class AppState:
    """What the window shows and works on. Changing it goes through its methods, which emit:

    - `scene_changed(recon, keep_view)`: a new scene (None: none); `keep_view` while a live scene grows
    - `scene_rescaled(recon, factor)`: the same scene in other units (a metric scale was set)
    - `model_changed(rec)`: a model was loaded
    - `engine_changed(engine, refine)`: the engine Reconstruct runs was chosen
    - `source_changed(source, available)`: where novel views come from, and what the scene offers
    - `masks_changed(masks or None)`: the masks Reconstruct passes (File > Add masks…)
    - `message(text)`: something the user must read (a box and the status bar)
    - `status(text)`: a line for the status bar
    """

    scene_changed = Signal(object, bool)
    model_changed = Signal(object)
    inputs_changed = Signal(list)
    cameras_changed = Signal(list, int)
    views_changed = Signal(object)
    view_changed = Signal(str, object)
    message = Signal(str)
    status = Signal(str)
    measure_changed = Signal(list)
    scene_rescaled = Signal(object, float)
    engine_changed = Signal(str, bool)
    source_changed = Signal(str, list)
    masks_changed = Signal(object)

    def __init__(self) -> None:
        self.recon: Reconstruction | None = None
        self.rec: Reconstructor | None = None
        self.frames: list[Frame] = []  # the input set a reconstruction will use
        self.cameras: list[VirtualCamera] = []  # placed by the user in the current scene
        self.selected = -1  # the virtual camera looked through (-1: none)
        self.views: NovelViews | None = None  # the latest novel views rendered
        self.view = ViewSettings()
        self.messages: list[str] = []  # every message, newest last
        self.mode, self.resolution = "crop", 518  # the model input the user chose
        self.engine, self.refine = ENGINES[0], False  # which engine makes the scene (auto); COLMAP refinement after the network
        self.source = NOVEL_VIEW_SOURCES[-1]  # where novel views come from (the scene's best, unless the user chose)
        self.sources: list[str] = [self.source]  # what the current scene and model offer
        self.masks: MaskSet | None = None  # passed to Reconstruct: black = ignore
        self.measure: list[Endpoint] = []  # the ends of the measured segment (0, 1 or 2)

    # - `inputs_changed(frames)`, `cameras_changed(cameras, selected)`, `views_changed(views or None)`,
    #   `view_changed(setting, value)`, `measure_changed(ends)`

    def set_source(self, source: str, available: list[str]) -> None:
        """The novel views' source, one of `available` (what the scene and the model offer)."""
        if source not in available or not set(available) <= set(NOVEL_VIEW_SOURCES):
            raise ValueError(f"no novel-view source {source!r} among {available}")
        self.source, self.sources = source, list(available)
        self.source_changed.emit(source, self.sources)

    def set_masks(self, masks: MaskSet | None) -> None:
        self.masks = masks
        self.masks_changed.emit(masks)

    def set_view(self, setting: str, value: object) -> None:
        """One of `ViewSettings`' fields."""
        if not hasattr(self.view, setting):
            raise AttributeError(f"no view setting {setting!r}")
        setattr(self.view, setting, value)
        self.view_changed.emit(setting, value)

    def set_frames(self, frames: list[Frame]) -> None:
        self.frames = list(frames)
        self.inputs_changed.emit(self.frames)

    def set_cameras(self, cameras: list[VirtualCamera], selected: int) -> None:
        """The virtual cameras and the one looked through (-1: none)."""
        self.cameras, self.selected = list(cameras), selected
        self.cameras_changed.emit(self.cameras, selected)

    def update_camera(self, index: int, **fields: object) -> None:
        """Changes fields of virtual camera `index` (its pose, field of view, size). The camera stays
        the same object, so what holds it sees the change; the list is published again."""
        cam = self.cameras[index]
        for name, value in fields.items():
            if not hasattr(cam, name):
                raise AttributeError(f"a virtual camera has no {name!r}")
            setattr(cam, name, value)
        self.cameras_changed.emit(self.cameras, self.selected)

    def set_views(self, views: NovelViews | None) -> None:
        self.views = views
        self.views_changed.emit(views)

    def set_scene(self, recon: Reconstruction | None, keep_view: bool = False) -> None:
        self.recon = recon
        self.scene_changed.emit(recon, keep_view)

    def rescale_scene(self, recon: Reconstruction, factor: float) -> None:
        """`recon` is the current scene with every length times `factor`: the virtual cameras and
        the measurement placed in it scale along, so they stay where they were in the picture."""
        self.recon = recon
        for cam in self.cameras:
            cam.c2w = cam.c2w.copy()
            cam.c2w[:, 3] *= factor
        self.measure = [end.rescaled(factor) for end in self.measure]
        self.scene_rescaled.emit(recon, factor)

    def set_measure(self, ends: list[Endpoint]) -> None:
        self.measure = list(ends)
        self.measure_changed.emit(self.measure)

    def set_model(self, rec: Reconstructor) -> None:
        self.rec = rec
        self.model_changed.emit(rec)

    def set_model_input(self, mode: str, resolution: int) -> None:
        """(crop or pad, model image width, rounded down to whole patches)."""
        self.mode, self.resolution = mode, max(PATCH, int(resolution) // PATCH * PATCH)

    def model_input(self) -> tuple[str, int]:
        return self.mode, self.resolution

    def set_engine(self, engine: str, refine: bool) -> None:
        """(one of `ENGINES`, whether COLMAP refines the network's cameras: the network's runs only)."""
        if engine not in ENGINES:
            raise ValueError(f"no engine {engine!r}; choose from {', '.join(ENGINES)}")
        self.engine, self.refine = engine, bool(refine) and engine == "zipmap"
        self.engine_changed.emit(self.engine, self.refine)

    def notify(self, text: str) -> None:
        self.messages.append(text)
        self.message.emit(text)

    def say(self, text: str) -> None:
        self.status.emit(text)
