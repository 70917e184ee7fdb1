"""What a new user meets in the first hour (issue 20), each with real events on a real X server:
input sets that replace or add, cameras placed and looked through, progress, screenshots of the
whole window, the confidence filter, and the demonstration-model notice."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from gui import ROOT, SAMPLES, drop, frame, load_and_reconstruct, wait_idle
from PIL import Image
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QFileSystemModel, QInputDialog, QMessageBox, QTreeView
from videos import write_video

from app import dialogs
from app.exports import qimage_to_array
from app.main_window import MainWindow
from app.script import ScriptedRun
from app.viewer3d import SELECTED_COLOR
from zipmap_core import engines
from zipmap_core.io.inputs import VideoSampling, load_inputs
from zipmap_core.io.metric import camera_endpoint, distance, units
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.model.frusta import frustum_corners
from zipmap_core.options import STUDIO_WINDOW
from zipmap_core.resources import BUNDLED_MODEL

BACKGROUND = np.array([0x1E, 0x1E, 0x24])


def menu_action(window, *path: str):
    """The QAction at `path` in the menu bar (for example "File", "Open video…")."""
    actions = window.menuBar().actions()
    for name in path:
        act = next(a for a in actions if a.text().replace("&", "") == name)
        actions = act.menu().actions() if act.menu() else []
    return act


def press(qtbot, window, key) -> None:
    """A key pressed in the 3D view of the active window (menu shortcuts need an active window)."""
    with qtbot.waitActive(window):
        window.activateWindow()
    window.view.canvas.native.setFocus()
    qtbot.keyClick(window.view.canvas.native, key)


def wide_scene(frames: int = 1, hw: tuple[int, int] = (56, 112)) -> Reconstruction:
    """A 2:1 photo seen by `frames` cameras side by side: a red ramp with white side borders."""
    h, w = hw
    img = np.zeros((frames, h, w, 3), np.uint8)
    img[..., 0] = np.linspace(60, 255, w, dtype=np.float32)[None, None, :].astype(np.uint8)
    img[:, :, :6] = img[:, :, -6:] = 255
    k = np.array([[80, 0, w / 2], [0, 80, h / 2], [0, 0, 1]], np.float32)
    ext = np.tile(np.eye(4, dtype=np.float32)[:3], (frames, 1, 1))
    ext[:, 0, 3] = -0.3 * np.arange(frames)
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    cam = np.stack([(xs - w / 2) / 80 * 2, (ys - h / 2) / 80 * 2, np.full_like(xs, 2.0)], -1)
    cam = np.broadcast_to(cam, (frames, h, w, 3)).copy()
    world = cam + np.stack([0.3 * np.arange(frames), np.zeros(frames), np.zeros(frames)], -1)[:, None, None, :].astype(np.float32)
    conf = np.ones((frames, h, w), np.float32) + np.random.default_rng(0).random((frames, h, w), np.float32)
    return Reconstruction(
        [f"wide{i}.png" for i in range(frames)],
        img,
        ext,
        np.stack([k] * frames),
        cam[..., 2].copy(),
        conf,
        cam,
        world,
        np.array([[w, h]] * frames),
    )


# ---- 2: opening replaces, adding is explicit; the command line does not switch the question off ----


def test_a_command_line_video_keeps_the_sampling_question_and_open_replaces_the_scene(qtbot, window, tmp_path, monkeypatch):
    window.loader.ask_video_sampling = True  # as in the app (the fixture turns it off)
    first = write_video(tmp_path / "first.mp4", 12, fps=4.0)
    second = write_video(tmp_path / "second.mp4", 10, fps=4.0)
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (asked.append(a[1]), ("2 per second", True))[1])
    status: dict = {"code": 0}
    ScriptedRun(window, [str(first)], (2.0, None), status).start()  # `zipmap-studio first.mp4 --fps 2`
    qtbot.waitUntil(lambda: window.recon is not None and not window.jobs.running, timeout=60000)
    assert status["code"] == 0 and not asked, "the command line's sampling must not ask"
    assert window.recon.num_frames == 6 and window.loader.ask_video_sampling

    monkeypatch.setattr(dialogs, "_run", lambda dialog: [str(second)])
    menu_action(window, "File", "Open video…").trigger()
    wait_idle(qtbot, window)
    assert asked == ["Video sampling"], "File > Open video must ask how to sample"
    assert [f.source.name for f in window.loader.frames] == ["second.mp4"] * 5  # replaced, not 6 + 5
    assert window.recon is None and window.view.drawn_points == 0, "the old scene was made from other frames"
    assert window.inputs.list.count() == 5


def test_add_to_inputs_and_a_ctrl_drop_append_while_a_plain_drop_replaces(qtbot, window, monkeypatch):
    drop(window, SAMPLES[:2])
    wait_idle(qtbot, window)
    drop(window, SAMPLES[2:4], Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, window)
    assert [f.name for f in window.loader.frames] == [p.name for p in SAMPLES[:4]]
    monkeypatch.setattr(dialogs, "_run", lambda dialog: [str(SAMPLES[4])])
    menu_action(window, "File", "Add to inputs", "Images…").trigger()
    wait_idle(qtbot, window)
    assert len(window.loader.frames) == 5 and "1 added, 5 images loaded" in window.status_info.text()
    drop(window, SAMPLES[5:6])
    wait_idle(qtbot, window)
    assert [f.name for f in window.loader.frames] == [SAMPLES[5].name]


def test_a_load_that_fails_keeps_the_inputs_and_the_scene(qtbot, window, tmp_path):
    load_and_reconstruct(qtbot, window, SAMPLES[:3])
    empty = tmp_path / "empty"
    empty.mkdir()
    drop(window, [empty])
    wait_idle(qtbot, window)
    assert len(window.loader.frames) == 3 and window.recon is not None
    assert "current inputs are kept" in window.messages[-1]


# ---- 4: cameras, looking through, novel-view size, progress, whole-window screenshots -------------------


def test_v_puts_the_new_camera_in_the_picture_not_at_the_eye(qtbot, window, tmp_path):
    load_and_reconstruct(qtbot, window, SAMPLES[:4])
    press(qtbot, window, Qt.Key.Key_V)  # the View menu's shortcut, as a user presses it
    assert len(window.cameras.virtual_cameras) == 1
    cam = window.cameras.virtual_cameras[0]
    corners = frustum_corners(cam.c2w, cam.intrinsics(), (cam.height, cam.width), 0.15 * window.view.scene_scale)
    screen = window.view.virtual.get_transform("visual", "canvas").map(corners)
    xy = screen[:, :2] / screen[:, 3:4]
    w, h = window.view.canvas.size
    assert (screen[:, 3] > 0).all(), "the frustum must be in front of the eye"
    assert (xy[:, 0] > 0.1 * w).all() and (xy[:, 0] < 0.9 * w).all() and (xy[:, 1] > 0.1 * h).all() and (xy[:, 1] < 0.9 * h).all()
    shot = frame(window)
    Image.fromarray(shot.astype(np.uint8)).save(tmp_path / "camera_from_view.png")
    green = np.abs(shot - np.array(SELECTED_COLOR[:3]) * 255).sum(-1) < 60
    ys, xs = np.nonzero(green)
    assert len(xs) > 50, "the selected camera's frustum is not drawn"
    assert xs.min() > 0.05 * w and xs.max() < 0.95 * w and ys.min() > 0.05 * h and ys.max() < 0.95 * h


def test_looking_through_a_wide_photo_shows_all_of_it_at_its_aspect(qtbot, window, tmp_path):
    window.set_reconstruction(wide_scene(1, (42, 126)))  # 3:1, wider than the canvas
    window.view_panel.show_guides.setChecked(False)
    press(qtbot, window, Qt.Key.Key_N)  # look through input camera 0
    shot = frame(window)
    Image.fromarray(shot.astype(np.uint8)).save(tmp_path / "look_through.png")
    w, h = window.view.canvas.size
    assert w / h < 2.8, "the canvas must be narrower than the photo for this test"
    photo = np.abs(shot - BACKGROUND).sum(-1) > 40
    ys, xs = np.nonzero(photo)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 3.0) < 0.15, f"the 3:1 photo shows at {width / height:.2f}:1"
    assert width >= 0.95 * w  # fills the canvas's width, letterboxed above and below
    white = (shot > 235).all(-1)
    row = (ys.min() + ys.max()) // 2
    assert white[row, : w // 8].any() and white[row, -w // 8 :].any(), "both white side borders must be visible"


def test_novel_views_take_the_scenes_size_and_field_of_view(qtbot, window):
    scene = wide_scene(2, (42, 98))
    window.set_reconstruction(scene)
    h, w = window.novel.size()
    assert (h, w) == scene.image_hw and window.novel.fov.value() == pytest.approx(scene.field_of_view(), abs=0.01)
    window.cameras.add_from_view()
    qtbot.waitUntil(lambda: window.novel.last is not None, timeout=20000)
    assert window.novel.last.rgb.shape[1:3] == (h, w)


def test_progress_reads_done_when_a_run_is_done_and_not_after_a_cancel(qtbot, window):
    load_and_reconstruct(qtbot, window, SAMPLES[:3])
    bar = window.progress.bar
    assert bar.value() == bar.maximum() and bar.isTextVisible() and "reconstruct: done" in window.progress.label.text()
    window.reconstruct()
    window.cancel()
    wait_idle(qtbot, window, 60000)
    assert "cancelled" in window.progress.label.text() and not bar.isTextVisible()


def test_whole_window_screenshot_includes_the_3d_view(qtbot, window, tmp_path):
    load_and_reconstruct(qtbot, window, SAMPLES[:4])
    path = window.exports.save_window_screenshot(tmp_path / "window.png")
    shot = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
    assert shot.shape[:2] == (window.height(), window.width())
    origin = window.view.widget.mapTo(window, window.view.widget.rect().topLeft())
    vh, vw = window.view.widget.height(), window.view.widget.width()
    inset = shot[origin.y() : origin.y() + vh, origin.x() : origin.x() + vw]
    view = frame(window)
    assert inset.shape == view.shape
    assert np.abs(inset - view).mean() < 12, "the window grab must carry the GL view's pixels"
    panels = shot[:, : max(origin.x() - 4, 1)]
    assert panels.std() > 10  # the scene column is there too
    twice = window.exports.save_window_screenshot(tmp_path / "window2x.png", scale=2)
    assert Image.open(twice).size == (2 * window.width(), 2 * window.height())


def test_qimage_to_array_keeps_rows_and_channels():
    from PySide6.QtGui import QImage

    image = QImage(5, 3, QImage.Format.Format_RGB32)  # 5 px wide: rows are padded in RGB888
    image.fill(0)
    image.setPixelColor(4, 2, Qt.GlobalColor.red)
    arr = qimage_to_array(image)
    assert arr.shape == (3, 5, 3) and tuple(arr[2, 4]) == (255, 0, 0) and arr[:2].sum() == 0


# ---- 5: the confidence filter ------------------------------------------------------------------------


def test_the_confidence_filter_never_hides_every_shown_point(qtbot, window):
    scene = wide_scene(2)
    scene.depth_conf[1] = 1.0 + 1e-3 * scene.depth_conf[1]  # frame 1 is less confident than all of frame 0
    scene.depth_conf[1, :4, :4] = np.nan
    window.set_reconstruction(scene)
    window.view.set_frame_visible(0, False)
    window.view_panel.confidence.setValue(90)
    shown = window.view.drawn_points
    assert abs(shown - 0.1 * 56 * 112) <= 2, f"{shown} points: the filter must rank among the points shown"
    window.view_panel.confidence.setValue(99)
    assert window.view.drawn_points >= 1


def test_colour_by_confidence_spreads_bunched_confidences_over_the_map(qtbot, window, tmp_path):
    scene = wide_scene(1)
    scene.depth_conf[:] = 1.0
    scene.depth_conf[0, :, ::2] = 1.0000001  # float32-quantised confidences: two values only
    window.set_reconstruction(scene)
    window.view_panel.color_mode.setCurrentText("confidence")
    colours = window.view.point_colors(scene.confidence_mask(0))
    assert len(np.unique(colours.round(3), axis=0)) == 2
    lo = colours[np.argmin(colours[:, :3].sum(1)), :3] * 255
    assert np.abs(lo - BACKGROUND).sum() > 90, "the lowest confidence must stay visible on the background"


def test_a_model_with_flat_confidence_says_so_beside_the_slider(qtbot, window):
    scene = wide_scene(1)
    window.set_reconstruction(scene)
    assert window.view_panel.flat_confidence.isHidden()
    scene = wide_scene(1)
    scene.depth_conf[:] = 1.00002
    window.set_reconstruction(scene)
    assert not window.view_panel.flat_confidence.isHidden()


# ---- 8: the demonstration model says what it is --------------------------------------------------------


def test_the_bundled_model_says_it_is_a_demonstration_once_when_it_is_what_makes_the_scene(qtbot, tmp_path, monkeypatch):
    """Without official weights the default engine (auto) runs COLMAP: the bundled model loaded
    beside it makes no scene, and nothing calls it a demonstration. Choosing the network (the
    bundled one) shows the notice in the model panel, and in a box the first time only."""
    if not BUNDLED_MODEL.exists():
        pytest.skip("the bundled model is not in this checkout")
    from real_scenes import empty_hub_cache

    empty_hub_cache(tmp_path, monkeypatch)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitUntil(lambda: first.rec is not None, timeout=20000)
    panel = first.model_panel
    assert first.rec.path == BUNDLED_MODEL and first.state.engine == "auto"
    assert panel.demo_notice.isHidden() and not any("demonstration model" in m for m in first.messages)
    assert not panel.official_button.isHidden(), "the official weights stay offered while the bundled model is loaded"
    panel.engine.setCurrentIndex(panel.engine.findData("zipmap"))
    assert not panel.demo_notice.isHidden() and not panel.classical_button.isHidden()
    assert sum("demonstration model" in m for m in first.messages) == 1
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    again.model_panel.engine.setCurrentIndex(again.model_panel.engine.findData("zipmap"))
    qtbot.waitUntil(lambda: again.rec is not None, timeout=20000)
    assert not again.model_panel.demo_notice.isHidden()
    assert not any("demonstration model" in m for m in again.messages), "the box comes once, not every start"


def test_another_model_hides_the_demonstration_notice(qtbot, window):
    assert window.model_panel.demo_notice.isHidden() and window.model_panel.official_button.isHidden()


def textured_video(path, frames: int):
    """A pan across a textured wall, so every window adds visible points."""
    import av

    rng = np.random.default_rng(1)
    wall = (rng.random((16, 64, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 224, 128, "yuv420p"
        for i in range(frames):
            image = np.ascontiguousarray(wall[:, 8 * i : 8 * i + 224])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_live_mode_grows_the_cloud_window_by_window_and_ends_as_a_scene(qtbot, window, tmp_path):
    clip = textured_video(tmp_path / "walk.mp4", 12)
    shots, sizes = [], []

    def grown(recon):  # runs after the window drew this window's reconstruction
        sizes.append(recon.num_frames)
        shots.append(frame(window))

    job = window.live.start(str(clip), 4, VideoSampling(fps=None))
    job.step.connect(grown)
    qtbot.waitUntil(lambda: not job.running, timeout=60000)
    assert sizes == [4, 8, 12] and window.recon.num_frames == 12
    assert window.view.drawn_points > 0 and "live mode done: 12 frames" in window.status_info.text()
    Image.fromarray(shots[0].astype(np.uint8)).save(tmp_path / "live_first.png")
    Image.fromarray(shots[-1].astype(np.uint8)).save(tmp_path / "live_last.png")
    changed = np.abs(shots[-1] - shots[0]).sum(-1) > 30
    assert changed.mean() > 0.005, "the view must grow between windows"
    assert window.recon.state is not None and window.recon.metadata["streaming"]
    window.cameras.add_from_view()  # the ended stream is an ordinary scene: novel views work
    qtbot.waitUntil(lambda: window.novel.last is not None, timeout=20000)


def gated_frames(monkeypatch, first: int):
    """Live mode's frame source held after `first` frames until the returned event is set: the
    test, not the machine's speed, decides how far the stream has got."""
    import threading

    from zipmap_core.io import inputs

    gate = threading.Event()
    real = inputs.iter_inputs

    def frames(*args, **kwargs):
        for i, f in enumerate(real(*args, **kwargs)):
            if i == first:
                while not gate.wait(0.05):
                    cancel = kwargs.get("cancel") or (args[3] if len(args) > 3 else None)
                    if cancel is not None and cancel.cancelled:
                        return
            yield f

    monkeypatch.setattr(inputs, "iter_inputs", frames)  # live mode imports it where it runs
    return gate


def test_live_mode_pauses_and_cancels_between_windows_keeping_the_scene_so_far(qtbot, window, tmp_path, monkeypatch):
    clip = textured_video(tmp_path / "walk.mp4", 24)
    gate = gated_frames(monkeypatch, first=4)
    job = window.live.start(str(clip), 2, VideoSampling(fps=None))
    qtbot.waitUntil(lambda: window.recon is not None and window.recon.num_frames == 4, timeout=30000)
    window.live.toggle_pause()  # asked while the stream waits for frame 5
    gate.set()  # every frame is now there: only the pause holds the stream
    qtbot.waitUntil(lambda: job.paused, timeout=10000)
    qtbot.waitUntil(lambda: window.recon.num_frames == 6, timeout=10000)  # the window under way ends
    qtbot.wait(700)
    assert window.recon.num_frames == 6, "a paused stream must not grow"
    window.cancel()
    qtbot.waitUntil(lambda: not job.running, timeout=30000)
    assert window.recon is not None and window.recon.num_frames == 6
    assert "cancelled" in window.status_info.text()


def test_a_long_stream_draws_photos_on_a_bounded_number_of_frusta(qtbot, window):
    from app.framing import MAX_IMAGE_PLANES

    window.set_reconstruction(wide_scene(3 * MAX_IMAGE_PLANES // 2, (14, 28)))
    planes = window.view.image_planes
    frames = sorted(planes)
    assert len(planes) <= MAX_IMAGE_PLANES and frames == list(range(0, 3 * MAX_IMAGE_PLANES // 2, 2))  # every other, evenly
    window.view.set_frame_visible(frames[1], False)
    assert not planes[frames[1]].visible and planes[frames[2]].visible == window.view.show_images


def test_a_growing_live_scene_keeps_the_photos_it_draws_and_drops_every_other_as_it_doubles(qtbot, window):
    """A live stream's scene grows window by window: the photos already on their frusta stay (a
    new set each window made a hundred textured meshes and GL programs a window)."""
    from app.framing import MAX_IMAGE_PLANES

    full = wide_scene(2 * MAX_IMAGE_PLANES + 8, (14, 28))
    first = dataclasses.replace(
        full,
        names=full.names[:MAX_IMAGE_PLANES],
        images=full.images[:MAX_IMAGE_PLANES],
        extrinsics=full.extrinsics[:MAX_IMAGE_PLANES],
        intrinsics=full.intrinsics[:MAX_IMAGE_PLANES],
        depth=full.depth[:MAX_IMAGE_PLANES],
        depth_conf=full.depth_conf[:MAX_IMAGE_PLANES],
        original_wh=full.original_wh[:MAX_IMAGE_PLANES],
        points_cam=None,
        points_world=None,
        points_from_depth=True,
    )
    window.set_reconstruction(first)
    before = dict(window.view.image_planes)
    assert sorted(before) == list(range(MAX_IMAGE_PLANES))
    window.set_reconstruction(full, keep_view=True)
    after = window.view.image_planes
    assert sorted(after) == list(range(0, full.num_frames, 4)) and len(after) <= MAX_IMAGE_PLANES
    assert all(after[i] is before[i] for i in after if i in before)  # the same meshes, not made again


def test_official_weights_offline_fall_back_to_the_bundled_model_without_a_traceback(qtbot, tmp_path, monkeypatch, capsys):
    from zipmap_core.io import download

    monkeypatch.setattr(download, "hub_reachable", lambda timeout_s=3.0: False)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow("official", settings=settings)
    ended, fell_back = [], []
    w.models.load_ended.connect(ended.append)  # the load starts once the event loop runs
    w.models.fell_back.connect(fell_back.append)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.rec is not None, timeout=30000)
    assert w.rec.path == BUNDLED_MODEL and not w.models.loading
    assert ended == [True], "the load ends once, when the bundled model has loaded (a script waits for that)"
    assert len(fell_back) == 1 and "offline" in fell_back[0] and "\n" not in fell_back[0]
    said = "\n".join(w.messages)
    assert "appears to be offline" in said and "Using the bundled demonstration model instead" in said
    assert w.model_panel.official_button.isVisible(), "every way to get weights stays available"
    assert "Traceback" not in capsys.readouterr().err


def test_a_model_that_fails_to_load_keeps_the_one_before(qtbot, window, tmp_path):
    before = window.rec
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    window.models.load(str(bad))
    qtbot.waitUntil(lambda: not window.models.loading, timeout=20000)
    assert window.rec is before and "the model loaded before is kept" in window.messages[-1]
    assert window.message_box.isVisible() and "broken.safetensors" in window.message_box.text()
    qtbot.wait(50)
    window.grab().save(str(tmp_path / "failed_load.png"))
    window.message_box.grab().save(str(tmp_path / "failed_load_message.png"))


def test_the_official_download_shows_its_progress_and_cancels(qtbot, window, tmp_path, monkeypatch):
    from test_bounds import fake_hub

    fake_hub(monkeypatch, tmp_path, chunks=400, pause_s=0.02)  # 8 s unless cancelled
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("state_query", True))
    before = window.rec
    window.models.download_dialog()
    qtbot.waitUntil(lambda: " GB, " in window.progress.label.text(), timeout=10000)
    assert " of 5.50 GB, " in window.progress.label.text() and window.progress.bar.maximum() == 5245
    label = window.progress.label
    qtbot.wait(50)
    assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()), "the download line is cut off"
    window.grab().save(str(tmp_path / "download.png"))
    window.cancel()
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=10000)
    assert window.status_info.text().startswith("download cancelled") and window.rec is before
    assert not (tmp_path / "checkpoint_state_query.pt").exists()


def test_a_new_scene_resets_the_novel_view_scale_bars(qtbot, window):
    depth = window.novel.depth
    depth.show_array(np.linspace(5.0, 10.0, 64, dtype=np.float32).reshape(8, 8))
    lo, hi = depth.bar.levels()
    assert 5.0 <= lo < hi <= 10.0
    window.set_reconstruction(wide_scene(2))  # a new scene clears the views and their ranges
    assert depth.data is None and tuple(depth.bar.levels()) == (0.0, 1.0)
    assert tuple(window.novel.confidence.bar.levels()) == (0.0, 1.0)


def test_looking_through_a_camera_names_it_and_dims_the_others(qtbot, window, tmp_path):
    window.set_reconstruction(wide_scene(4))
    press(qtbot, window, Qt.Key.Key_N)
    press(qtbot, window, Qt.Key.Key_N)  # camera 2 of 4
    assert window.status_info.text().startswith("looking through camera 2 of 4: ")
    per, count = window.view._frustum_vertices
    alpha = window.view.frusta.color[:, 3]
    assert count == 4 and (alpha[per : 2 * per] == 1.0).all() and (np.delete(alpha, np.s_[per : 2 * per]) < 0.5).all()
    window.grab().save(str(tmp_path / "looking_through.png"))
    press(qtbot, window, Qt.Key.Key_R)  # back to the overview: every camera alike
    assert (window.view.frusta.color[:, 3] == 1.0).all()


# ---- 28: a deliberate cancel is no dialog; a message takes the keyboard ----


def visible_boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def until_cancelled(*args, cancel, **kwargs):
    """A reconstruction that runs until it is cancelled."""
    while True:
        cancel.check()
        time.sleep(0.01)


def test_a_deliberate_esc_is_said_in_the_status_bar_without_a_dialog(qtbot, window, monkeypatch):
    monkeypatch.setattr(engines, "reconstruct_scene", until_cancelled)  # the window imports it where it runs
    assert window.loader.load([str(p) for p in SAMPLES[:2]]) is not None
    wait_idle(qtbot, window)
    window.reconstruct()
    assert window.jobs.running
    press(qtbot, window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=10000)
    assert window.status_info.text().startswith("reconstruction cancelled")
    assert visible_boxes(window) == [] and not any("cancel" in m for m in window.messages)


def test_a_message_takes_the_keyboard_return_closes_it_and_a_burst_is_one_box(qtbot, window):
    window.state.set_frames([])
    window.reconstruct()  # nothing to reconstruct: a message the user must read
    box = window.message_box
    assert visible_boxes(window) == [box] and "Add photos" in box.text()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is box, timeout=5000)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=5000)
    for text in ("first", "second", "third"):
        window.notify(text)
    assert visible_boxes(window) == [box] and box.text() == "third"


# ---- 28: the default window needs no scrolling; file dialogs show their columns ----


def test_the_scene_column_fits_the_default_window_unscrolled(qtbot, window):
    window.model_panel.set_demo(True)  # the tallest the model tab gets: notice and three buttons
    window.resize(*STUDIO_WINDOW)
    qtbot.waitUntil(lambda: window.size().width() == STUDIO_WINDOW[0], timeout=5000)
    qtbot.wait(50)  # the layout pass after the resize
    assert window.scene_column.verticalScrollBar().maximum() == 0
    assert window.model_panel.reconstruct_button.isVisible() and window.model_panel.official_button.isVisible()
    for tab in range(window.tabs.count()):  # every tab fits as well, the measuring one included
        window.tabs.setCurrentIndex(tab)
        qtbot.wait(20)
        assert window.scene_column.verticalScrollBar().maximum() == 0, window.tabs.tabText(tab)


def test_file_dialogs_show_the_size_type_and_date_columns_whole(qtbot, window, tmp_path):
    for i in range(3):
        (tmp_path / f"a_rather_long_photo_name_{i:03d}.png").write_bytes(b"\0" * (123_456 * (i + 1)))
    dialog = dialogs.build(window, "Open images", QFileDialog.FileMode.ExistingFiles, "Images (*.png)")
    fitted = []
    model = dialog.findChild(QFileSystemModel)
    model.directoryLoaded.connect(lambda folder: fitted.append(folder))
    dialog.setDirectory(str(tmp_path))
    dialog.show()
    qtbot.waitUntil(lambda: str(tmp_path) in fitted, timeout=5000)
    qtbot.wait(50)
    tree = dialog.findChild(QTreeView)
    header = tree.header()
    assert header.count() == 4
    for column in range(1, 4):  # size, type, date modified: nothing cut to an ellipsis
        assert header.sectionSize(column) >= tree.sizeHintForColumn(column), header.model().headerData(column, Qt.Orientation.Horizontal)
    assert header.sectionViewportPosition(3) + header.sectionSize(3) <= tree.viewport().width()
    assert header.sectionSize(0) >= tree.sizeHintForColumn(0)  # and the names whole too
    dialog.grab().save(str(tmp_path / "file_dialog.png"))
    dialog.reject()


# ---- 28: measuring and a metric scale ----


def frustum_on_screen(window, index: int) -> QPoint:
    """Where input camera `index`'s frustum is drawn (what a click picks it by)."""
    recon = window.recon
    centre = frustum_corners(recon.cam_to_world[index], recon.intrinsics[index], recon.image_hw, 0.12 * window.view.scene_scale).mean(0)
    screen = window.view.frusta.get_transform("visual", "canvas").map(centre[None])[0]
    x, y = (screen[:2] / screen[3]).round().astype(int)
    return QPoint(int(x), int(y))


def shift_click(qtbot, window, where: QPoint) -> None:
    qtbot.mouseClick(window.view.widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, where)


def test_measuring_between_cameras_and_giving_the_true_length_makes_the_scene_metric(qtbot, window, tmp_path):
    window.set_reconstruction(wide_scene(4))  # cameras 0.3 units apart in a row
    window.tabs.setCurrentWidget(window.measure_panel)
    window.cameras.add_from_view()
    virtual = window.cameras.virtual_cameras[0].c2w.copy()
    window.view.reset_view()
    shift_click(qtbot, window, frustum_on_screen(window, 0))
    assert "Shift+click the second end" in window.measure_panel.length.text()
    shift_click(qtbot, window, frustum_on_screen(window, 3))
    assert [e.camera for e in window.state.measure] == [0, 3]
    assert window.measure_panel.length.text() == "Distance: 0.9 units"
    assert window.status_info.text().startswith("measured 0.9 units: camera 1 (wide0.png) to camera 4 (wide3.png)")
    assert window.measure.line.visible and window.measure.text.text.strip() == "0.9 units"
    assert "arbitrary" in window.status_scale.text()
    before = frame(window)
    qtbot.wait(50)  # the status bar's layout pass
    window.grab().save(str(tmp_path / "measurement.png"))

    window.measure_panel.true_length.setValue(1.8)
    qtbot.mouseClick(window.measure_panel.scale_button, Qt.MouseButton.LeftButton)
    recon = window.recon
    assert units(recon) == "m" and distance(camera_endpoint(recon, 0), camera_endpoint(recon, 3)) == pytest.approx(1.8, rel=1e-5)
    assert window.status_scale.text() == "scale: metres (camera 1 to camera 4 = 1.8 m)"
    assert window.measure_panel.length.text() == "Distance: 1.8 m" and window.measure.text.text.strip() == "1.8 m"
    np.testing.assert_allclose(window.cameras.virtual_cameras[0].c2w[:, 3], virtual[:, 3] * 2.0, rtol=1e-5)  # placed things scale along
    assert window.novel.depth.plot.titleLabel.text == "Depth (m)"
    after = frame(window)
    assert np.abs(after - before).max(-1).mean() < 0.02 * 255, "the picture is kept: only the units changed"
    qtbot.wait(50)
    window.grab().save(str(tmp_path / "scaled.png"))

    reopened = Reconstruction.load(recon.save(tmp_path / "metric.zipmap"))
    window.set_reconstruction(reopened)
    assert window.status_scale.text() == "scale: metres (camera 1 to camera 4 = 1.8 m)" and window.state.measure == []


def test_a_shift_click_on_a_point_measures_to_it_a_shift_drag_does_not_and_a_third_click_starts_again(qtbot, window, monkeypatch):
    window.set_reconstruction(wide_scene(2))
    window.view.reset_view()
    pos = window.view._drawn_positions
    screen = window.view.points.get_transform("visual", "canvas").map(pos[len(pos) // 3][None])[0]
    point = QPoint(*(int(v) for v in (screen[:2] / screen[3]).round()))
    shift_click(qtbot, window, point)
    assert len(window.state.measure) == 1 and window.state.measure[0].camera is None
    widget = window.view.widget
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, point)
    qtbot.mouseMove(widget, point + QPoint(40, 0))
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, point + QPoint(40, 0))
    assert len(window.state.measure) == 1, "a drag pans; it picks nothing"
    window.measure_panel.camera_a.setValue(1)
    window.measure_panel.camera_b.setValue(2)
    qtbot.mouseClick(window.measure_panel.cameras_button, Qt.MouseButton.LeftButton)
    assert [e.camera for e in window.state.measure] == [0, 1] and window.measure_panel.length.text() == "Distance: 0.3 units"
    shift_click(qtbot, window, frustum_on_screen(window, 1))  # a third end: a new measurement
    assert [e.camera for e in window.state.measure] == [1]
    shift_click(qtbot, window, frustum_on_screen(window, 0))
    recon = window.recon
    monkeypatch.setattr(engines, "reconstruct_scene", until_cancelled)
    window.state.set_frames(load_inputs(SAMPLES[:1]).frames)  # something to run on, the scene kept (the stand-in run never reads it)
    window.reconstruct()
    qtbot.mouseClick(window.measure_panel.scale_button, Qt.MouseButton.LeftButton)
    assert window.recon is recon and "a task is running" in window.messages[-1], "a running task would replace the scaled scene"
    window.cancel()
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=10000)
    qtbot.mouseClick(window.measure_panel.clear_button, Qt.MouseButton.LeftButton)
    assert window.state.measure == [] and not window.measure.line.visible and not window.measure.ends.visible


# ---- 28: the window first, the model in the background ----


def test_the_window_is_on_screen_before_the_model_and_exit_waits_for_the_model(tmp_path, tiny_checkpoint):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "QT_API": "pyside6", "HOME": str(tmp_path)}  # settings of its own
    command = [sys.executable, "-m", "app", "--exit", "--startup-report", "--checkpoint", str(tiny_checkpoint)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model_loaded"] is True
    assert report["started"] < report["window_on_screen"] < report["model_ready"], report
    assert "Traceback" not in done.stderr


# ---- 29: the memory a run needs, said before it runs ----


def test_reconstruct_says_the_memory_it_needs_and_does_not_start_a_run_that_cannot_fit(qtbot, window, monkeypatch):
    from zipmap_core.pipeline import memory_budget

    drop(window, SAMPLES[:3])
    wait_idle(qtbot, window)
    started = []
    monkeypatch.setattr(memory_budget, "available_bytes", lambda device: 1)
    monkeypatch.setattr(window.jobs, "run", lambda job, name, **_: started.append(name))
    window.reconstruct()
    assert started == [] and window.messages[-1].startswith(
        "Reconstruction not started: this run does not fit the memory: 3 frames need about"
    )
    monkeypatch.setattr(memory_budget, "available_bytes", lambda device: 64 * 2**30)
    window.reconstruct()
    assert started == ["reconstruct"] and window.status_info.text().startswith("reconstructing: 3 frames need about")
