"""The app on real photos (issues 36 and 38): novel views from the source the scene has (the
photos by default for a classical dense scene, at the scene's own size and field of view; a draft
while a camera moves), the fused cloud in the 3D view, the `auto` engine by default (COLMAP and the
dense stage without official weights, and no demonstration notice over its scene), and masks."""

from __future__ import annotations

import numpy as np
import pytest
from gui import SAMPLES, frame, load_and_reconstruct, wait_idle
from PIL import Image
from PySide6.QtCore import QSettings, Qt
from real_scenes import cache_official, empty_hub_cache, held_out_scene

from app.main_window import MainWindow
from zipmap_core.engines import FALLBACK
from zipmap_core.metrics import psnr
from zipmap_core.resources import BUNDLED_MODEL

RENDER_TIMEOUT = 60000


@pytest.fixture(scope="module")
def held():
    """The shipped video registered by COLMAP, frame 11 taken out, the dense stage on the rest."""
    return held_out_scene()


def enabled_sources(window) -> list[str]:
    box = window.novel.source
    return [box.itemData(i) for i in range(box.count()) if box.model().item(i).isEnabled()]


def wait_render(qtbot, window) -> None:
    """Until the selected camera's view is on the panel and no render runs, waits or is due."""
    cams = window.cameras
    qtbot.waitUntil(
        lambda: window.novel.last is not None and not cams.renderer.busy and not cams.renderer.pending and not cams.rest.isActive(),
        timeout=RENDER_TIMEOUT,
    )


def sharpness(rgb: np.ndarray) -> float:
    return float(np.abs(np.diff(rgb, axis=1)).mean() + np.abs(np.diff(rgb, axis=0)).mean())


# ---- novel views: the source, the size, the draft ------------------------------------------------------


def test_the_source_choice_offers_what_the_scene_has_and_says_which_it_shows(qtbot, window, held, tiny_checkpoint):
    novel = window.novel
    assert not novel.source.isEnabled()  # no scene: nothing to choose from
    load_and_reconstruct(qtbot, window, SAMPLES[:4])
    assert novel.source.isEnabled()
    # the network's scene with a novel-view model: every source, the scene state first
    assert enabled_sources(window) == ["state", "photos", "points"] and novel.source.currentData() == "state"
    window.cameras.add_from_view()
    wait_render(qtbot, window)
    assert novel.status.text().startswith("from the scene state: ")
    seen = {"state": novel.rgb.data.copy()}
    for key in ("photos", "points"):
        novel.source.setCurrentIndex(novel.source.findData(key))
        qtbot.waitUntil(lambda key=key: novel.status.text().startswith(f"from the {key}: "), timeout=RENDER_TIMEOUT)
        assert window.state.source == key
        seen[key] = novel.rgb.data.copy()
    assert not np.allclose(seen["state"], seen["photos"]) and not np.allclose(seen["photos"], seen["points"])
    # a new model: the scene's best again
    window.load_model(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: window.state.source == "state" and novel.source.currentData() == "state", timeout=RENDER_TIMEOUT)
    wait_render(qtbot, window)
    # a classical dense scene has no scene state: greyed, and its photos are shown
    window.set_reconstruction(held.scene)
    assert enabled_sources(window) == ["photos", "points"] and novel.source.currentData() == "photos"
    novel.source.setCurrentIndex(novel.source.findData("state"))  # chosen anyway (a script can)
    assert window.state.source == "photos" and novel.source.currentData() == "photos"


def test_a_classical_scene_is_seen_from_its_photos_at_its_own_size_and_field_of_view(qtbot, window, held):
    scene = held.scene
    window.set_reconstruction(scene)
    h, w = scene.image_hw
    assert window.novel.size() == (h, w) == (294, 518) and window.novel.fov.value() == pytest.approx(scene.field_of_view(), abs=0.01)
    window.cameras.add_from_view()
    wait_render(qtbot, window)
    assert window.novel.last.rgb.shape[1:3] == (h, w)
    assert window.novel.status.text() == f"from the photos: {w}x{h}"


def test_moving_a_camera_shows_a_draft_then_the_full_render_once_it_rests(qtbot, window, held, monkeypatch):
    from vispy.util import keys

    scene = held.scene
    window.set_reconstruction(scene)
    window.cameras.add(scene.cam_to_world[5], scene.intrinsics[5])
    wait_render(qtbot, window)
    shown = []
    show = window.novel.show_views
    monkeypatch.setattr(window.novel, "show_views", lambda views, label: (shown.append((label, views.rgb[0].copy())), show(views, label)))
    canvas = window.view.canvas
    press = canvas.events.mouse_press(pos=(200, 200), button=1, modifiers=(keys.ALT,))
    last = press
    for step in range(1, 6):  # an Alt-drag to the right, in five moves
        alt = (keys.ALT,)
        last = canvas.events.mouse_move(pos=(200 + 8 * step, 200), button=1, buttons=[1], modifiers=alt, press_event=press, last_event=last)
        qtbot.wait(10)
    canvas.events.mouse_release(pos=(240, 200), button=1, modifiers=(keys.ALT,))
    wait_render(qtbot, window)
    labels = [label for label, _ in shown]
    drafts = [i for i, label in enumerate(labels) if "draft" in label]
    assert drafts and drafts[0] < len(labels) - 1 and "draft" not in labels[-1], labels
    assert labels[-1] == "from the photos: 518x294"
    draft, full = shown[drafts[-1]][1], shown[-1][1]
    assert draft.shape == full.shape == (294, 518, 3)
    assert sharpness(full) > 1.1 * sharpness(draft), "the full render must be sharper than the draft it replaces"


def test_the_app_shows_a_held_out_camera_from_the_photos(qtbot, window, held, tmp_path):
    """The frame taken out of the scene, seen at its registered camera from the other photos."""
    window.set_reconstruction(held.scene)
    window.cameras.add(held.c2w, held.k)
    wait_render(qtbot, window)
    rgb = window.novel.last.rgb[0]
    assert rgb.shape == held.photo.shape and window.novel.status.text() == "from the photos: 518x294"
    score = psnr(rgb, held.photo.astype(np.float32) / 255)
    assert score >= 28, f"{score:.1f} dB against the held-out photo"
    assert not any("failed" in m for m in window.messages), window.messages
    side = np.concatenate([(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), held.photo], 1)
    Image.fromarray(side).save(tmp_path / "held_out_view.png")


# ---- the 3D view: a dense scene's fused cloud --------------------------------------------------------------


def test_the_viewer_draws_a_dense_scenes_fused_cloud_and_its_controls_keep_their_meaning(qtbot, window, held):
    scene, dense = held.scene, held.scene.dense_points
    empty = frame(window)
    window.set_reconstruction(scene)
    view = window.view
    assert view.drawn_points == dense.num_points < int((scene.depth > 0).sum())  # each surface point once
    assert np.allclose(np.sort(view._drawn_positions, 0), np.sort(dense.xyz, 0))
    rgb = frame(window)
    assert (np.abs(rgb - empty).sum(-1) > 30).mean() > 0.05, "the fused cloud covers the view"
    view.set_frame_visible(0, False)  # what the inputs panel's check box does: the points frame 0 measured go
    assert view.drawn_points == int((dense.frame != 0).sum())
    view.set_frame_visible(0, True)
    window.view_panel.confidence.setValue(50)
    cut = np.percentile(dense.confidence, 50, method="lower")
    assert view.drawn_points == int((dense.confidence >= cut).sum()) < dense.num_points
    window.view_panel.confidence.setValue(0)
    for mode in ("depth", "confidence", "frame"):
        window.view_panel.color_mode.setCurrentText(mode)
        assert view.drawn_points == dense.num_points
        assert (np.abs(frame(window) - rgb).sum(-1) > 30).mean() > 0.02, mode


# ---- the auto engine ----------------------------------------------------------------------------------------


def bare_window(qtbot, tmp_path) -> MainWindow:
    """The window as a new user starts it: no checkpoint named, no settings."""
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    w.loader.ask_video_sampling = False
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.rec is not None and not w.models.loading, timeout=30000)
    return w


def test_auto_without_official_weights_makes_a_dense_colmap_scene_from_real_photos_without_the_demo_notice(qtbot, tmp_path, monkeypatch):
    if not BUNDLED_MODEL.exists():
        pytest.skip("the bundled model is not in this checkout")
    from zipmap_core.io.inputs import VideoSampling
    from zipmap_core.resources import REAL_SAMPLE

    empty_hub_cache(tmp_path, monkeypatch)
    w = bare_window(qtbot, tmp_path)
    panel = w.model_panel
    assert w.rec.path == BUNDLED_MODEL and panel.engine.currentData() == "auto" == w.state.engine
    assert panel.engine_note.text().startswith("Runs COLMAP + dense depth from the photos (auto: no official weights")
    assert panel.demo_notice.isHidden() and w.status_info.text().startswith("ready: drop photos, a folder or a video")
    assert "Reconstruct runs COLMAP + dense depth" in w.status_info.text()
    w.loader.load([str(REAL_SAMPLE)], sampling=VideoSampling(fps=None, max_frames=12))
    qtbot.waitUntil(lambda: len(w.loader.frames) == 12 and not w.jobs.current.running, timeout=60000)
    w.reconstruct()
    qtbot.waitUntil(lambda: w.recon is not None and not w.jobs.current.running, timeout=180000)
    recon = w.recon
    assert recon.metadata["engine"] == "colmap" and recon.dense_points is not None and "no official weights" in recon.metadata["auto"]
    status = w.status_info.text()
    assert "made by COLMAP + dense depth (auto: no official weights" in status and "COLMAP registered" in status
    assert panel.demo_notice.isHidden() and not any("demonstration" in m for m in w.messages)
    assert w.novel.source.currentData() == "photos" and enabled_sources(w) == ["photos", "points"]
    assert w.view.drawn_points == recon.dense_points.num_points
    w.inputs.list.item(0).setCheckState(Qt.CheckState.Unchecked)  # the inputs panel hides what frame 0 measured
    assert w.view.drawn_points == int((recon.dense_points.frame != 0).sum())
    # the network, chosen by name, is the bundled one: now the notice applies, once in a box
    panel.engine.setCurrentIndex(panel.engine.findData("zipmap"))
    assert not panel.demo_notice.isHidden() and sum("demonstration model" in m for m in w.messages) == 1
    panel.engine.setCurrentIndex(panel.engine.findData("auto"))
    assert panel.demo_notice.isHidden()


def test_pictures_colmap_cannot_register_are_made_by_the_bundled_network_and_then_its_notice_shows(qtbot, tmp_path, monkeypatch):
    if not BUNDLED_MODEL.exists():
        pytest.skip("the bundled model is not in this checkout")
    empty_hub_cache(tmp_path, monkeypatch)
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # unrelated noise: no two see the same things
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / f"n{i}.png")
    w = bare_window(qtbot, tmp_path)
    assert w.model_panel.demo_notice.isHidden()
    w.loader.load([str(folder)])
    wait_idle(qtbot, w)
    w.reconstruct()
    qtbot.waitUntil(lambda: w.recon is not None and not w.jobs.current.running, timeout=120000)
    recon = w.recon
    assert recon.metadata.get("engine") != "colmap" and recon.metadata["model"] == w.rec.description
    assert recon.metadata["auto"].startswith(FALLBACK)
    status = w.status_info.text()
    assert f"made by {w.rec.description} (auto: {FALLBACK}" in status, status
    assert not w.model_panel.demo_notice.isHidden() and sum("demonstration model" in m for m in w.messages) == 1


def test_at_start_official_weights_on_this_machine_are_loaded_instead_of_the_bundled_model(qtbot, tmp_path, monkeypatch, tiny_checkpoint):
    cache = empty_hub_cache(tmp_path, monkeypatch)
    cache_official(cache, tiny_checkpoint)  # the tiny model stands in for the official weights
    w = bare_window(qtbot, tmp_path)
    assert w.rec.description == "tiny test model" and w.rec.path != BUNDLED_MODEL
    note = w.model_panel.engine_note.text()
    assert note == "Runs the network: tiny test model (auto: the official weights are on this machine)", note
    assert w.model_panel.demo_notice.isHidden()


# ---- masks ----------------------------------------------------------------------------------------------------


def write_masks(folder, names, size=None, left_black=0.25):
    """A mask a picture, COLMAP's name (`a.png.png`), black on the left `left_black` of it."""
    folder.mkdir(exist_ok=True)
    for name in names:
        w, h = size or Image.open(name).size
        mask = np.full((h, w), 255, np.uint8)
        mask[:, : int(w * left_black)] = 0
        Image.fromarray(mask).save(folder / f"{name.name}.png")
    return folder


def test_masks_flow_into_the_reconstruction_and_stay_with_the_scene(qtbot, window, tmp_path):
    photos = SAMPLES[:3]
    load_and_reconstruct(qtbot, window, photos)
    before = window.recon
    assert window.inputs.masks_row.isHidden()
    job = window.masks.add(write_masks(tmp_path / "masks", photos))
    assert job is not None
    wait_idle(qtbot, window)
    assert window.state.masks is not None and not window.inputs.masks_row.isHidden()
    assert "masks" in window.inputs.masks_label.text() and window.recon is before
    window.reconstruct()
    qtbot.waitUntil(lambda: window.recon is not before and not window.jobs.current.running, timeout=120000)
    recon = window.recon
    w = recon.image_hw[1]
    assert recon.masks is not None and not recon.masks[:, :, : w // 5].any() and recon.masks[:, :, w // 2 :].all()
    assert (recon.depth[~recon.masks] == 0).all() and (recon.depth[recon.masks] > 0).mean() > 0.9
    assert "masked: " in window.status_info.text()
    saved = recon.save(tmp_path / "masked.zipmap")
    from zipmap_core.io.reconstruction import Reconstruction

    assert np.array_equal(Reconstruction.load(saved).masks, recon.masks)  # the scene keeps its masks
    window.inputs.clear_masks_button.click()
    assert window.state.masks is None and window.inputs.masks_row.isHidden()


def test_bad_masks_are_one_message_and_change_nothing(qtbot, window, tmp_path):
    photos = SAMPLES[:3]
    window.loader.load([str(p) for p in photos])
    wait_idle(qtbot, window)
    missing = write_masks(tmp_path / "missing", photos[:2])
    wrong = write_masks(tmp_path / "wrong", photos, size=(40, 30))
    broken = write_masks(tmp_path / "broken", photos)
    (broken / f"{photos[1].name}.png").write_bytes(b"not a picture at all")
    good = write_masks(tmp_path / "good", photos)
    cases = (
        (missing, f"holds no mask for {photos[2].name}"),
        (wrong, "is 40x30, but its picture"),
        (broken, f"mask {photos[1].name}.png"),
    )
    for i, (folder, said) in enumerate(cases):
        before = list(window.messages)
        window.masks.add(folder)
        wait_idle(qtbot, window)
        new = window.messages[len(before) :]
        assert len(new) == 1 and said in new[0] and "Masks not added" in new[0], new
        if i == 0:
            assert window.state.masks is None and window.inputs.masks_row.isHidden()
            window.masks.add(good)
            wait_idle(qtbot, window)
        assert window.state.masks is not None and window.state.masks.folder == good
