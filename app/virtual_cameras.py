"""Virtual cameras: placing (Ctrl+click, V), selecting (click, list), moving (Alt+drag, keys),
their novel views (rendered in the background, newest request only), saving a view, and
rendering a camera path. The rendering itself is the engine's `camera_path.render_frames`.

A new scene's cameras take its own size and field of view, and its views come from the best
source it has (`novel_views.best_source`) until the user chooses another; while a camera moves
its photo renders are drafts (`draft=True`), and the full render follows once it rests."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, QTimer

from zipmap_core.io.atomic import atomic_path

from . import dialogs
from .exports import save_png
from .jobs import Job
from .picking import is_click
from .state import VirtualCamera

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from zipmap_core.cancel import CancelToken
    from zipmap_core.io.novel_views import NovelViews
    from zipmap_core.io.reconstruction import Reconstruction

    from .job_runner import JobRunner
    from .novel_view import NovelViewPanel
    from .state import AppState
    from .viewer3d import SceneView


def render_frames(*args: Any, cancel: CancelToken | None = None) -> tuple[str, NovelViews]:
    """The engine's renderer, imported where it runs: the window is on screen before torch loads
    (so is every engine call in this module); `cancel` stops it between views."""
    from zipmap_core.pipeline.camera_path import render_frames as render

    return render(*args, cancel=cancel)


REST_MS = 250  # a moved camera rests (its full render starts) once no move came for this long
STEP_BACK = 0.6  # of the scene depth: a new camera's frustum (0.15 deep) fills part of the view
KEY_MOVES = {
    Qt.Key.Key_I: dict(forward=1),
    Qt.Key.Key_K: dict(forward=-1),
    Qt.Key.Key_J: dict(right=-1),
    Qt.Key.Key_L: dict(right=1),
    Qt.Key.Key_U: dict(down=-1),
    Qt.Key.Key_O: dict(down=1),
    Qt.Key.Key_Comma: dict(yaw_deg=-5),
    Qt.Key.Key_Period: dict(yaw_deg=5),
}


class VirtualCameraController:
    def __init__(self, state: AppState, jobs: JobRunner, view: SceneView, novel: NovelViewPanel, parent: QWidget) -> None:
        self.state, self.jobs, self.view, self.novel, self.parent = state, jobs, view, novel, parent
        state.scene_changed.connect(self.new_scene)  # a new scene: its cameras go, its best source is shown
        state.model_changed.connect(lambda *_: self.choose_best_source(render=True))
        state.source_changed.connect(novel.show_sources)
        novel.source_chosen.connect(self.choose_source)
        self.rest = QTimer()  # a moved camera's full render, once it rests
        self.rest.setSingleShot(True)
        self.rest.setInterval(REST_MS)
        self.rest.timeout.connect(lambda: self.request_render())
        state.cameras_changed.connect(view.set_virtual_cameras)  # the view draws what the state holds
        # same cameras, new units (the state scaled them): published again, and rendered again
        state.scene_rescaled.connect(lambda *_: (state.set_cameras(state.cameras, state.selected), self.request_render()))
        self._generation = 0  # of the scene; renders requested for an older one are dropped
        self.renderer = jobs.latest_only(render_frames, "novel view")  # waits while a reconstruction has the model
        self.renderer.result.connect(self._show_render)
        self.renderer.failed.connect(lambda msg: state.notify(f"Rendering failed: {msg}"))
        events = view.canvas.events
        novel.add_from_view.connect(self.add_from_view)
        novel.selection_changed.connect(self.select)
        novel.settings_changed.connect(self._settings_changed)
        novel.remove_requested.connect(self.remove)
        novel.save_requested.connect(self.save_novel_view_dialog)
        novel.path_requested.connect(self.render_path_dialog)
        events.mouse_press.connect(self._on_mouse_press)
        events.mouse_release.connect(self._on_mouse_release)
        events.mouse_move.connect(self._on_mouse_drag)

    # the cameras and the selection live in the app state, and change through its methods
    @property
    def virtual_cameras(self) -> list[VirtualCamera]:
        return self.state.cameras

    @property
    def selected(self) -> int:
        return self.state.selected

    @property
    def current(self) -> VirtualCamera | None:
        return self.virtual_cameras[self.selected] if 0 <= self.selected < len(self.virtual_cameras) else None

    def new_scene(self, recon: Reconstruction | None, keep_view: bool = False) -> None:
        """The old scene's cameras go; new ones take this scene's size and field of view, and
        its views come from the best source it has."""
        self.clear()
        if recon is not None:
            self.novel.set_camera_settings(recon.image_hw, recon.field_of_view())
        self.novel.source.setEnabled(recon is not None)  # no scene, no source to choose
        self.choose_best_source()

    def choose_best_source(self, render: bool = False) -> None:
        """The scene's best source with the model loaded (a new scene, a new model); `render`:
        the selected camera's view again, from it."""
        recon = self.state.recon
        if recon is None:
            return
        from zipmap_core.pipeline.novel_views import available_sources, best_source

        self.state.set_source(best_source(self.state.rec, recon), available_sources(self.state.rec, recon))
        if render:
            self.request_render()

    def choose_source(self, source: str) -> None:
        """The user's choice in the panel; one the scene lacks keeps the one shown."""
        if source not in self.state.sources:
            if self.state.recon is not None:
                from zipmap_core.pipeline.novel_views import LABELS, why_unavailable

                self.state.say(f"cannot show the {LABELS[source]}: {why_unavailable(source, self.state.rec, self.state.recon)}")
            self.novel.show_sources(self.state.source, self.state.sources)
            return
        self.state.set_source(source, self.state.sources)
        self.request_render()

    def clear(self) -> None:
        """A new scene: its virtual cameras and their views go (a render still in flight too)."""
        self._generation += 1
        self.rest.stop()
        self.renderer.drop()
        self._publish([], -1)
        self.state.set_views(None)
        self.novel.clear_views("new scene: place a virtual camera (Ctrl+click or V)")

    # ---- placing, selecting, moving ------------------------------------------------------------------
    def add(self, c2w: np.ndarray, k: np.ndarray | None = None) -> None:
        """A camera at `c2w` of the panel's size and field of view (`k`: intrinsics of its own)."""
        h, w = self.novel.size()
        name = f"virtual {len(self.virtual_cameras) + 1}"
        cam = VirtualCamera(np.asarray(c2w, np.float32)[:3, :4], float(self.novel.fov.value()), w, h, name, k)
        self._publish([*self.virtual_cameras, cam], len(self.virtual_cameras))
        self.request_render()

    def add_from_view(self) -> None:
        """A camera where the eye is; the view then steps back so its frustum is in front of the
        eye, in the picture, not two lines at the edges of it."""
        if self.state.recon is not None:
            self.add(self.view.view_c2w())
            self.view.step_back(STEP_BACK * self.view.scene_scale)

    def place_at(self, canvas_xy: tuple[float, float]) -> bool:
        """Camera at the current viewpoint looking at the point under the cursor."""
        point = self.view.pick_point(canvas_xy)
        if point is None:
            return False
        from zipmap_core.pipeline.camera_path import look_at

        eye, _ = self.view.camera_pose()
        self.add(look_at(eye, point))
        return True

    def select(self, index: int, from_list: bool = True) -> None:
        self._publish(self.virtual_cameras, index, names=not from_list)
        self.request_render()

    def select_at(self, canvas_xy: tuple[float, float]) -> bool:
        """Selects the virtual camera whose frustum was clicked (the list follows)."""
        index = self.view.virtual_at(canvas_xy)
        if index is None:
            return False
        if index != self.selected:
            self.select(index, from_list=False)
        return True

    def remove(self, index: int) -> None:
        cams = self.virtual_cameras
        if 0 <= index < len(cams):
            self._publish(cams[:index] + cams[index + 1 :], min(self.selected, len(cams) - 2))

    def move(self, forward: float = 0, right: float = 0, down: float = 0, yaw_deg: float = 0) -> None:
        """Moves the selected virtual camera in its own frame (steps of 5% of the scene depth)."""
        cam = self.current
        if cam is None:
            return
        step = 0.05 * self.view.scene_scale
        c2w = cam.c2w.copy()
        c2w[:, 3] += step * (forward * c2w[:, 2] + right * c2w[:, 0] + down * c2w[:, 1])
        if yaw_deg:
            a = math.radians(yaw_deg)
            rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], np.float32)
            c2w[:, :3] = c2w[:, :3] @ rot
        self.state.update_camera(self.selected, c2w=c2w)
        if self.novel.live.isChecked() and self.state.source == "photos":
            self.request_render(draft=True)  # a draft while it moves (the other sources have none) ...
        elif self.novel.live.isChecked():
            self.request_render()
            return
        self.rest.start()  # ... and the full render once it rests (restarted by every move)

    def handle_key(self, key) -> bool:
        if key not in KEY_MOVES:
            return False
        self.move(**KEY_MOVES[key])
        return True

    def _settings_changed(self) -> None:
        cam = self.current
        if cam is not None:
            height, width = self.novel.size()
            fov = float(self.novel.fov.value())
            self.state.update_camera(self.selected, fov_y_deg=fov, height=height, width=width, k=None)  # its own intrinsics go
            self.request_render()

    def _publish(self, cams: list[VirtualCamera], selected: int, names: bool = True) -> None:
        """The state's new cameras; `names`: the panel's list follows (not when the list chose)."""
        if names:
            self.novel.set_camera_names([c.name for c in cams], selected)
        self.state.set_cameras(cams, selected)

    # ---- novel views ------------------------------------------------------------------------------------
    def request_render(self, draft: bool = False) -> None:
        """The selected camera's view from the chosen source; `draft`: a fast, coarse one (a
        camera moving)."""
        cam = self.current
        if self.state.recon is None or cam is None:
            return
        if not draft:
            self.rest.stop()
        key = (self._generation, self.selected, time.monotonic(), draft)
        args = (self.state.rec, self.state.recon, cam.c2w[None].copy(), cam.intrinsics(), (cam.height, cam.width), self.state.source, draft)
        self.renderer.request(key, *args, uses_model=self.state.source == "state")  # photos and points need no model

    def _show_render(self, key, value) -> None:
        if key[0] != self._generation:
            return
        label, views = value
        self.state.set_views(views)
        draft = " — a draft while the camera moves" if key[3] else ""
        self.novel.show_views(views, f"from the {label}: {views.rgb.shape[2]}x{views.rgb.shape[1]}{draft}")

    def save_novel_view_dialog(self) -> None:
        if self.state.views is None:
            self.state.notify("Place a virtual camera first.")
            return
        path = dialogs.save_file(self.parent, "Save novel view", "novel_view.png", "PNG (*.png)")
        if path:
            self.save_novel_view(path)

    def save_novel_view(self, path: str | Path) -> list[Path]:
        """RGB PNG, depth as 16-bit PNG (millimetres of scene units, scale in a JSON) and .npy."""
        from zipmap_core.io.metric import units
        from zipmap_core.io.preprocess import unit_bytes_np

        views, recon = self.state.views, self.state.recon
        assert views is not None
        path = Path(path)
        stem = path.with_suffix("")
        rgb = unit_bytes_np(views.rgb[0])
        depth = views.depth[0]
        scale = 1000.0 if np.nanmax(depth) * 1000 < 65535 else 65535 / float(np.nanmax(depth))
        out = [save_png(rgb, path), save_png((np.clip(depth * scale, 0, 65535) + 0.5).astype(np.uint16), f"{stem}_depth.png")]
        with atomic_path(f"{stem}_depth.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, depth.astype(np.float32))
        with atomic_path(f"{stem}_depth.json") as tmp:
            unit = units(recon) if recon is not None else "units"
            tmp.write_text(json.dumps({"depth_png_units_per_scene_unit": scale, "scene_unit": unit}))
        return [*out, Path(f"{stem}_depth.npy")]

    def render_path_dialog(self) -> None:
        if self.state.recon is None:
            return
        folder = dialogs.folder(self.parent, "Render camera path into folder")
        if not folder:
            return
        from zipmap_core.pipeline.camera_path import orbit_path, path_through, render_path

        cams = self.virtual_cameras
        poses = path_through([c.c2w for c in cams], 60) if len(cams) >= 2 else orbit_path(self.state.recon, 60)
        h, w = self.novel.size()
        k = VirtualCamera(np.eye(4)[:3], float(self.novel.fov.value()), w, h).intrinsics()
        job = Job(render_path, self.state.rec, self.state.recon, poses, k, (h, w), folder, source=self.state.source)
        job.succeeded.connect(lambda p: self.state.say(f"rendered path to {p}"))
        job.failed.connect(lambda msg: self.state.notify(f"Path rendering failed:\n{msg}"))
        self.jobs.run(job, "render path", uses_model=self.state.source == "state")

    # ---- mouse ------------------------------------------------------------------------------------------
    def _on_mouse_press(self, event) -> None:
        if event.button == 1 and "Control" in [k.name for k in event.modifiers]:
            self.place_at(tuple(event.pos[:2]))

    def _on_mouse_release(self, event) -> None:
        """A plain left click (no drag) on a virtual camera's frustum selects it; a drag orbits."""
        if event.button == 1 and not event.modifiers and is_click(event):
            self.select_at(tuple(event.pos[:2]))

    def _on_mouse_drag(self, event) -> None:
        """Alt+left drag moves the selected virtual camera across its image plane, Alt+right drag
        forward and back; the turntable ignores modified left and right drags, so the view stays."""
        last = getattr(event, "last_event", None)
        buttons = getattr(event, "buttons", None) or []
        if last is None or not buttons or "Alt" not in [k.name for k in event.modifiers]:
            return
        dx, dy = (np.asarray(event.pos[:2], float) - np.asarray(last.pos[:2], float)) / max(self.view.canvas.size[0], 1)
        # a drag across the whole canvas moves the camera by the scene's scale (20 steps of 5 %)
        if 1 in buttons:
            self.move(right=20 * dx, down=20 * dy)
        elif 2 in buttons:
            self.move(forward=-20 * dy)
