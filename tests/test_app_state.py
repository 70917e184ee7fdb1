"""The app's Qt-free state (issue 26): every change goes through a method that emits, so views
and controllers subscribe instead of reaching into the window. No Qt, no display needed."""

from __future__ import annotations

import numpy as np
import pytest

from app.state import AppState, VirtualCamera


def test_changes_reach_every_subscriber_with_what_changed(recon):
    state, seen = AppState(), []
    state.scene_changed.connect(lambda r, keep: seen.append(("scene", r, keep)))
    state.inputs_changed.connect(lambda frames: seen.append(("inputs", len(frames))))
    state.cameras_changed.connect(lambda cams, sel: seen.append(("cameras", len(cams), sel)))
    state.views_changed.connect(lambda views: seen.append(("views", views)))
    state.message.connect(lambda text: seen.append(("message", text)))
    state.set_scene(recon, keep_view=True)
    state.set_frames(["a", "b"])
    state.set_cameras([VirtualCamera(np.eye(4)[:3])], 0)
    state.set_views(None)
    state.notify("hello")
    assert seen == [("scene", recon, True), ("inputs", 2), ("cameras", 1, 0), ("views", None), ("message", "hello")]
    assert state.recon is recon and state.frames == ["a", "b"] and state.selected == 0 and state.messages == ["hello"]


def test_the_model_input_is_whole_patches():
    state = AppState()
    state.set_model_input("pad", 120)
    assert state.model_input() == ("pad", 112)
    state.set_model_input("crop", 3)
    assert state.model_input() == ("crop", 14)


def test_view_settings_change_by_name_and_say_so():
    import pytest

    state, seen = AppState(), []
    state.view_changed.connect(lambda setting, value: seen.append((setting, value)))
    state.set_view("point_size", 7)
    state.set_view("color_mode", "depth")
    assert seen == [("point_size", 7), ("color_mode", "depth")] and state.view.point_size == 7
    with pytest.raises(AttributeError, match="no view setting 'sparkle'"):
        state.set_view("sparkle", True)


def test_a_virtual_camera_changes_through_the_state_and_stays_the_same_object():
    import pytest

    state, seen = AppState(), []
    cam = VirtualCamera(np.eye(4)[:3])
    state.set_cameras([cam], 0)
    state.cameras_changed.connect(lambda cams, selected: seen.append((cams[0].fov_y_deg, selected)))
    moved = np.eye(4)[:3].copy()
    moved[0, 3] = 2.0
    state.update_camera(0, c2w=moved, fov_y_deg=40.0)
    assert seen == [(40.0, 0)] and state.cameras[0] is cam and cam.c2w[0, 3] == 2.0
    with pytest.raises(AttributeError, match="no 'zoom'"):
        state.update_camera(0, zoom=2)


def test_the_novel_view_source_is_one_the_scene_offers_and_refinement_is_the_networks():
    state = AppState()
    said = []
    state.source_changed.connect(lambda source, available: said.append((source, available)))
    state.set_source("photos", ["photos", "points"])
    assert (state.source, state.sources) == ("photos", ["photos", "points"]) and said == [("photos", ["photos", "points"])]
    with pytest.raises(ValueError):
        state.set_source("state", ["photos", "points"])
    assert state.engine == "auto" and not state.refine  # the default engine: the best this machine can give
    state.set_engine("colmap", True)
    assert (state.engine, state.refine) == ("colmap", False)
    state.set_engine("zipmap", True)
    assert (state.engine, state.refine) == ("zipmap", True)
    masks = []
    state.masks_changed.connect(masks.append)
    state.set_masks(None)
    assert masks == [None] and state.masks is None


def test_the_studio_command_line_defaults_to_the_auto_engine():
    from app.__main__ import build_parser

    assert build_parser().parse_args([]).engine == "auto"
    assert build_parser().parse_args(["--engine", "colmap"]).engine == "colmap"
