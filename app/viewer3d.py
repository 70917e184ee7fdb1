"""The 3D view: coloured point cloud (a dense scene's fused cloud, else every frame's depth map:
`cloud.scene_cloud`), textured camera frusta, virtual cameras, axes and grid.

World coordinates are the reconstruction's (OpenCV axes of frame 0: x right, y down, z forward).
A fixed node transform turns them z-up for VisPy's turntable, so "up" is the photographer's up.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from vispy import app as vispy_app
from vispy import scene
from vispy.visuals.filters import TextureFilter
from vispy.visuals.transforms import MatrixTransform

from zipmap_core.model.frusta import frustum_corners, frustum_segments

from .cloud import COLOR_MODES, map_colours, scene_cloud
from .framing import MAX_FIT_STEP_BACK, fit_distance, fit_fov_deg, floor_grid, grows, planes_shown
from .picking import nearest_frustum, nearest_point
from .state import VirtualCamera

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction

# row-vector matrix: (x, y, z) -> (x, z, -y)
OPENCV_TO_ZUP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float32)
FRUSTUM_COLOR = (1.0, 0.55, 0.0, 1.0)
VIRTUAL_COLOR = (0.9, 0.1, 0.9, 1.0)
SELECTED_COLOR = (0.1, 0.9, 0.2, 1.0)
DIMMED_ALPHA = 0.2  # the other input cameras' frusta while looking through one
# While the user drags or zooms, at most this many points are drawn (an even random subset);
# the full cloud returns once the camera has been still for IDLE_S. Software GL costs about a
# microsecond per point, so 2 M points would otherwise take seconds per frame.
INTERACTIVE_POINTS = 60_000
# the most points drawn at rest: beyond, an even subset (a long live stream at 2,000 frames holds
# ~5 M; each redraw uploads every point drawn, and the memory that costs grew with the stream)
MAX_DRAWN_POINTS = 2_000_000
IDLE_S = 0.3


class SceneView:
    """Owns a VisPy SceneCanvas; `widget` goes into the Qt layout."""

    def __init__(self, size: tuple[int, int] = (800, 600)) -> None:
        self.canvas = scene.SceneCanvas(keys=None, size=size, bgcolor="#1e1e24", show=False)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(fov=45, elevation=20, azimuth=30, up="+z")
        self.world = scene.Node(parent=self.view.scene)
        self.world.transform = MatrixTransform(OPENCV_TO_ZUP)
        self.points = scene.visuals.Markers(parent=self.world, antialias=0)
        self.points.set_gl_state("translucent", depth_test=True)
        self.points_lod = scene.visuals.Markers(parent=self.world, antialias=0)
        self.points_lod.set_gl_state("translucent", depth_test=True)
        self.points_lod.visible = False
        self.interactive_points = INTERACTIVE_POINTS
        self.interacting = False
        self._idle_timer = vispy_app.Timer(IDLE_S, connect=self._end_interaction, iterations=1, start=False)
        self.frusta = scene.visuals.Line(parent=self.world, connect="segments", color=FRUSTUM_COLOR, width=1.5)
        self.virtual = scene.visuals.Line(parent=self.world, connect="segments", color=VIRTUAL_COLOR, width=2.5)
        self.grid = scene.visuals.Line(parent=self.world, connect="segments", color=(0.5, 0.5, 0.55, 0.5), width=1)
        self.axes = scene.visuals.XYZAxis(parent=self.world, width=2)
        self.image_planes: dict[int, scene.visuals.Mesh] = {}  # frame -> its photo
        self.recon: Reconstruction | None = None
        self.percentile = 0.0
        self.point_size = 3.0
        self.color_mode = "rgb"
        self.hidden_frames: set[int] = set()
        self.show_images = True
        self.drawn_points = 0
        self._drawn_positions = np.zeros((0, 3), np.float32)
        self.virtual_cameras: list[VirtualCamera] = []
        self.selected_virtual = -1
        self._scale = 1.0
        self.frusta.visible = self.virtual.visible = self.grid.visible = False
        for event in (self.canvas.events.mouse_move, self.canvas.events.mouse_wheel, self.canvas.events.key_press):
            event.connect(self._on_user_input)

    @property
    def widget(self):
        return self.canvas.native

    @property
    def scene_scale(self) -> float:
        """The scene's median depth: the unit for frustum sizes and camera steps."""
        return self._scale

    # ---- content --------------------------------------------------------------------------------
    def set_reconstruction(self, recon: Reconstruction | None, reset_camera: bool = True) -> None:
        grown = grows(self.recon, recon)  # the same scene with frames added (live mode): its photos stay
        self.recon = recon
        self.looking_through: int | None = None  # the input camera the view looks through, if any
        self.hidden_frames = set()
        if not grown:
            self._drop_planes(list(self.image_planes))
        if recon is None:
            self.points.visible = self.points_lod.visible = self.frusta.visible = self.grid.visible = False
            self.drawn_points = 0
            self.canvas.update()
            return
        self._scale = recon.median_depth()
        self._build_frusta()
        self._build_grid()
        self.axes.transform = scene.transforms.STTransform(scale=(0.3 * self._scale,) * 3)
        self.update_points()
        if reset_camera:
            self.reset_view()
        else:
            self.canvas.update()

    def _build_frusta(self) -> None:
        recon = self.recon
        assert recon is not None
        size = 0.12 * self._scale
        c2w = recon.cam_to_world
        segs = []
        shown = planes_shown(recon.num_frames)
        self._drop_planes([i for i in self.image_planes if i not in shown])
        for i in range(recon.num_frames):
            corners = frustum_corners(c2w[i], recon.intrinsics[i], recon.image_hw, size)
            segs.append(frustum_segments(corners).reshape(-1, 3))
            if i not in shown or i in self.image_planes:  # a growing scene's photos already drawn stay
                continue
            quad = corners[1:]
            mesh = scene.visuals.Mesh(
                vertices=quad, faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32), color=(1, 1, 1, 1), parent=self.world, shading=None
            )
            texcoords = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
            mesh.attach(TextureFilter(recon.images[i], texcoords))
            mesh.visible = self.show_images
            self.image_planes[i] = mesh
        self._frustum_vertices = (len(segs[0]), len(segs))  # (vertices a frustum, frusta)
        self.frusta.set_data(pos=np.concatenate(segs), connect="segments")
        self._color_frusta()
        self.frusta.visible = True

    def _drop_planes(self, frames: list[int]) -> None:
        for i in frames:
            self.image_planes.pop(i).parent = None

    def _build_grid(self) -> None:
        assert self.recon is not None
        self.grid.set_data(pos=floor_grid(self.recon.points_world.reshape(-1, 3), self._scale), connect="segments")
        self.grid.visible = True

    def _color_frusta(self) -> None:
        """Every frustum orange; while looking through one input camera, the others dimmed."""
        per, count = self._frustum_vertices
        colors = np.tile(np.asarray(FRUSTUM_COLOR, np.float32), (count * per, 1))
        if self.looking_through is not None:
            colors[:, 3] = DIMMED_ALPHA
            colors[self.looking_through * per : (self.looking_through + 1) * per, 3] = 1.0
        self.frusta.set_data(color=colors)

    def point_colors(self, mask: np.ndarray) -> np.ndarray:
        """RGBA of the depth maps' points under `mask` in the current colour mode."""
        assert self.recon is not None
        return map_colours(self.recon, mask, self.color_mode)

    def update_points(self) -> None:
        recon = self.recon
        if recon is None:
            return
        shown = [i for i in range(recon.num_frames) if i not in self.hidden_frames]
        pos, colors = scene_cloud(recon, self.percentile, shown, self.color_mode)
        if len(pos) > MAX_DRAWN_POINTS:  # an even subset: each upload (and software GL's copies of it) stays bounded
            pick = np.linspace(0, len(pos) - 1, MAX_DRAWN_POINTS).astype(np.int64)
            pos, colors = pos[pick], colors[pick]
        self._drawn_positions = pos
        self.drawn_points = len(pos)
        if len(pos):
            self.points.set_data(pos, face_color=colors, size=self.point_size, edge_width=0)
            self._set_lod(pos, colors)
        self._show_cloud()
        for i, mesh in self.image_planes.items():
            mesh.visible = self.show_images and i not in self.hidden_frames
        self.canvas.update()

    def _set_lod(self, pos: np.ndarray, colors: np.ndarray) -> None:
        if len(pos) <= self.interactive_points:
            return
        pick = np.random.default_rng(0).choice(len(pos), self.interactive_points, replace=False)
        # the subset's points stand for several each: draw them a little larger
        size = self.point_size * min(1.5, math.sqrt(len(pos) / self.interactive_points))
        self.points_lod.set_data(pos[pick], face_color=colors[pick], size=size, edge_width=0)

    @property
    def uses_lod(self) -> bool:
        return self.drawn_points > self.interactive_points

    def _show_cloud(self) -> None:
        lod = self.interacting and self.uses_lod
        self.points.visible = self.drawn_points > 0 and not lod
        self.points_lod.visible = self.drawn_points > 0 and lod

    def _on_user_input(self, event) -> None:
        moving = event.type != "mouse_move" or bool(getattr(event, "buttons", None))
        if moving:
            self.begin_interaction()

    def begin_interaction(self) -> None:
        """Switches to the decimated cloud until the camera has been still for IDLE_S."""
        if not self.interacting:
            self.interacting = True
            self._show_cloud()
        self._idle_timer.stop()
        self._idle_timer.start()

    def _end_interaction(self, _event=None) -> None:
        self.interacting = False
        self._show_cloud()
        self.canvas.update()

    def set_confidence_percentile(self, p: float) -> None:
        self.percentile = float(p)
        self.update_points()

    def set_point_size(self, size: float) -> None:
        self.point_size = float(size)
        self.update_points()

    def set_color_mode(self, mode: str) -> None:
        if mode not in COLOR_MODES:
            raise ValueError(f"colour mode must be one of {COLOR_MODES}")
        self.color_mode = mode
        self.update_points()

    def set_frame_visible(self, index: int, visible: bool) -> None:
        (self.hidden_frames.discard if visible else self.hidden_frames.add)(index)
        self.update_points()

    def set_show_images(self, show: bool) -> None:
        self.show_images = show
        self.update_points()

    def set_show_guides(self, show: bool) -> None:
        self.axes.visible = self.grid.visible = show and self.recon is not None
        self.canvas.update()

    # ---- cameras --------------------------------------------------------------------------------
    def set_fly_mode(self, fly: bool) -> None:
        state = self.camera_pose()
        self.view.camera = scene.FlyCamera(fov=45) if fly else scene.TurntableCamera(fov=45, up="+z")
        if state is not None and not fly:
            self.look_from(*state)
        self.canvas.update()

    def reset_view(self) -> None:
        """Frames the scene from behind and above the first camera, as the photographer stood,
        stepping back (at most MAX_FIT_STEP_BACK times) until the bulk of the cloud is in the
        picture: a tall scene is not cropped, a scattered cloud does not shrink to a speck."""
        recon = self.recon
        if recon is None:
            return
        if self.looking_through is not None:  # no longer looking through one camera: all alike again
            self.looking_through = None
            self._color_frusta()
        pts = self._drawn_positions if len(self._drawn_positions) else recon.points_world.reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(1)]
        centre = np.median(pts, axis=0) if len(pts) else recon.cam_to_world[:, :3, 3].mean(0)
        c2w = recon.cam_to_world[0]
        back = c2w[:3, 3] - c2w[:3, 2] * 1.2 * self._scale - c2w[:3, 1] * 0.6 * self._scale
        near = max(float(np.linalg.norm(centre - back)), 1e-9)
        direction = (centre - back) / near
        fitted = fit_distance(pts, centre, direction, self.view.camera.fov)
        self.look_from(centre - direction * float(np.clip(fitted, near, MAX_FIT_STEP_BACK * near)), centre)

    def to_scene(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(self.world.transform.map(np.asarray(p, np.float32))[..., :3])

    def to_world(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(self.world.transform.imap(np.asarray(p, np.float32))[..., :3])

    def look_from(self, eye: np.ndarray, target: np.ndarray, fov: float | None = None) -> None:
        """Turntable camera at `eye` (world) looking at `target` (world)."""
        cam = self.view.camera
        if not isinstance(cam, scene.TurntableCamera):
            self.view.camera = cam = scene.TurntableCamera(fov=45, up="+z")
        e, t = self.to_scene(eye), self.to_scene(target)
        d = t - e
        dist = float(np.linalg.norm(d)) or 1.0
        f = d / dist
        elevation = math.degrees(math.asin(np.clip(-f[2], -1, 1)))
        azimuth = math.degrees(math.atan2(-f[0], f[1])) if abs(f[2]) < 0.9999 else cam.azimuth
        if fov:
            cam.fov = float(np.clip(fov, 5, 120))
        cam.center = tuple(t)
        cam.distance = dist
        cam.elevation, cam.azimuth = elevation, azimuth
        cam.scale_factor = dist
        self.canvas.update()

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(eye, target) of the current view in world coordinates."""
        cam = self.view.camera
        tr = cam.transform
        eye = np.asarray(tr.map([0, 0, 0])[:3])
        ahead = np.asarray(tr.map([0, 0, -1])[:3])
        dist = getattr(cam, "distance", None) or 1.0
        return self.to_world(eye), self.to_world(eye + (ahead - eye) / max(np.linalg.norm(ahead - eye), 1e-9) * dist)

    def view_c2w(self) -> np.ndarray:
        """The 3D view's own camera as camera-to-world [3, 4] in OpenCV axes."""
        tr = self.view.camera.transform
        o = np.asarray(tr.map([0, 0, 0])[:3])
        fwd = np.asarray(tr.map([0, 0, -1])[:3]) - o
        up = np.asarray(tr.map([0, 1, 0])[:3]) - o
        right = np.asarray(tr.map([1, 0, 0])[:3]) - o
        rot_scene = np.stack([right, -up, fwd], 1)
        rot_scene /= np.linalg.norm(rot_scene, axis=0, keepdims=True)
        m = OPENCV_TO_ZUP[:3, :3].astype(np.float64)  # world row-vector -> scene
        rot_world = m @ rot_scene  # columns back into world coordinates
        return np.concatenate((rot_world, self.to_world(o)[:, None]), 1).astype(np.float32)

    def look_through(self, index: int) -> None:
        """Views the scene from input camera `index`, its whole photo in the picture at its own
        aspect: the view's angle covers the photo's wider side against the canvas's shape."""
        recon = self.recon
        if recon is None:
            return
        self.looking_through = index
        self._color_frusta()
        c2w = recon.cam_to_world[index]
        fov = fit_fov_deg(recon.intrinsics[index], recon.image_hw, self.canvas.size)
        self.look_from(c2w[:3, 3], c2w[:3, 3] + c2w[:3, 2] * self._scale, fov)

    def step_back(self, distance: float) -> None:
        """Moves the eye back along its line of sight, looking the same way (what stood at the eye,
        such as a camera just placed there, comes into the picture)."""
        cam = self.view.camera
        if isinstance(cam, scene.TurntableCamera):
            cam.distance = (cam.distance or cam.scale_factor or 1.0) + distance
            cam.scale_factor = cam.distance
            self.canvas.update()

    def frame_at(self, canvas_xy: tuple[float, float], radius_px: float = 36) -> int | None:
        """The input camera whose frustum is nearest the click."""
        recon = self.recon
        if recon is None:
            return None
        size = 0.12 * self._scale
        corners = [frustum_corners(c2w, k, recon.image_hw, size) for c2w, k in zip(recon.cam_to_world, recon.intrinsics)]
        return nearest_frustum(self.frusta.get_transform("visual", "canvas"), corners, canvas_xy, radius_px)

    def virtual_at(self, canvas_xy: tuple[float, float], radius_px: float = 36) -> int | None:
        """The virtual camera whose frustum is nearest the click."""
        size = 0.15 * self._scale
        corners = [frustum_corners(c.c2w, c.intrinsics(), (c.height, c.width), size) for c in self.virtual_cameras]
        return nearest_frustum(self.frusta.get_transform("visual", "canvas"), corners, canvas_xy, radius_px)

    def pick_point(self, canvas_xy: tuple[float, float], radius_px: float = 8) -> np.ndarray | None:
        """The nearest drawn point under the cursor (world coordinates), front-most among ties."""
        eye, _ = self.camera_pose()
        return nearest_point(self.points.get_transform("visual", "canvas"), self._drawn_positions, eye, canvas_xy, radius_px)

    # ---- virtual cameras -------------------------------------------------------------------------
    def set_virtual_cameras(self, cams: list[VirtualCamera], selected: int = -1) -> None:
        self.virtual_cameras = list(cams)
        self.selected_virtual = selected
        if not cams:
            self.virtual.visible = False
            self.canvas.update()
            return
        segs, colors = [], []
        size = 0.15 * self._scale
        for i, cam in enumerate(cams):
            corners = frustum_corners(cam.c2w, cam.intrinsics(), (cam.height, cam.width), size)
            s = frustum_segments(corners).reshape(-1, 3)
            segs.append(s)
            colors.append(np.tile(SELECTED_COLOR if i == selected else VIRTUAL_COLOR, (len(s), 1)))
        self.virtual.set_data(pos=np.concatenate(segs), color=np.concatenate(colors).astype(np.float32), connect="segments")
        self.virtual.visible = True
        self.canvas.update()

    # ---- images -----------------------------------------------------------------------------------
    def render_image(self, scale: float = 1.0) -> np.ndarray:
        """RGBA uint8 [H, W, 4] of the view; scale > 1 renders offscreen at a larger size."""
        if self.interacting:  # an image is always of the full cloud
            self._idle_timer.stop()
            self._end_interaction()
        w, h = self.canvas.size
        if scale == 1.0:
            return self.canvas.render(alpha=False)
        # VisPy's ViewBox keeps its on-screen pixel viewport when rendering into a larger
        # framebuffer, so the canvas itself is laid out at the larger size for this one pass
        big = (round(w * scale), round(h * scale))
        self.canvas.size = big
        try:
            return self.canvas.render(alpha=False)
        finally:
            self.canvas.size = (w, h)
