"""A metric scale from one known length: the scene, its file, every export and the novel-view
depth come out in metres, each re-read and compared with the unscaled scene."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pycolmap
import pytest
import trimesh
from scenes import truth_reconstruction

from zipmap_core.errors import InputError
from zipmap_core.io.exporters import export
from zipmap_core.io.metric import (
    Endpoint,
    apply_metric_scale,
    camera_endpoint,
    distance,
    format_length,
    metres_per_unit,
    scale_note,
    units,
)
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.io.tracks import Tracks

TRUE_M = 2.5


@pytest.fixture(scope="module")
def recon() -> Reconstruction:
    return truth_reconstruction(views=4)


@pytest.fixture(scope="module")
def metric(recon) -> tuple[Reconstruction, float]:
    """`recon` with cameras 1 and 3 set TRUE_M apart, and the factor that took."""
    a, b = camera_endpoint(recon, 0), camera_endpoint(recon, 2)
    return apply_metric_scale(recon, a, b, TRUE_M)


def test_the_chosen_segment_becomes_its_true_length_and_every_length_scales_alike(recon, metric):
    scaled, f = metric
    assert f == pytest.approx(TRUE_M / distance(camera_endpoint(recon, 0), camera_endpoint(recon, 2)), rel=1e-12)
    assert f != pytest.approx(1.0, abs=0.05)  # the test would not see a missed scale otherwise
    assert distance(camera_endpoint(scaled, 0), camera_endpoint(scaled, 2)) == pytest.approx(TRUE_M, rel=1e-5)
    assert distance(camera_endpoint(scaled, 1), camera_endpoint(scaled, 3)) == pytest.approx(
        f * distance(camera_endpoint(recon, 1), camera_endpoint(recon, 3)), rel=1e-5
    )
    np.testing.assert_allclose(scaled.depth, recon.depth * f, rtol=1e-6)
    np.testing.assert_allclose(scaled.points_world, recon.points_world * f, rtol=1e-4, atol=1e-5 * f)
    np.testing.assert_array_equal(scaled.extrinsics[:, :3, :3], recon.extrinsics[:, :3, :3])  # angles stay
    np.testing.assert_array_equal(scaled.intrinsics, recon.intrinsics)
    np.testing.assert_array_equal(scaled.images, recon.images)
    assert scaled.state_scale == pytest.approx(recon.state_scale * f)
    assert units(recon) == "units" and units(scaled) == "m" and format_length(1.25, scaled) == "1.25 m"
    assert scale_note(recon) == "scale: arbitrary units"
    assert scale_note(scaled) == "scale: metres (camera 1 to camera 3 = 2.5 m)"
    assert recon.metadata == {} and units(recon) == "units"  # the original is untouched


def test_a_second_reference_rescales_the_metric_scene_and_the_factors_compose(metric):
    scaled, f = metric
    point = Endpoint(scaled.points_world[0, 5, 7])
    again, _ = apply_metric_scale(scaled, camera_endpoint(scaled, 0), point, 1.0)
    g = 1.0 / distance(camera_endpoint(scaled, 0), point)
    assert metres_per_unit(again) == pytest.approx(f * g, rel=1e-6)
    assert "camera 1 to point (" in scale_note(again)


def test_the_scale_is_kept_in_the_scene_file(tmp_path, metric):
    scaled, f = metric
    back = Reconstruction.load(scaled.save(tmp_path / "metric.zipmap"))
    assert units(back) == "m" and metres_per_unit(back) == pytest.approx(f) and scale_note(back) == scale_note(scaled)
    assert distance(camera_endpoint(back, 0), camera_endpoint(back, 2)) == pytest.approx(TRUE_M, rel=1e-5)


@pytest.mark.parametrize("true_m", [0.0, -1.0, float("nan"), float("inf")])
def test_a_true_length_that_is_no_length_is_refused(recon, true_m):
    with pytest.raises(InputError, match="positive number of metres"):
        apply_metric_scale(recon, camera_endpoint(recon, 0), camera_endpoint(recon, 1), true_m)


def test_a_segment_of_no_length_and_a_camera_that_is_not_there_are_refused(recon):
    with pytest.raises(InputError, match="no length"):
        apply_metric_scale(recon, camera_endpoint(recon, 1), camera_endpoint(recon, 1), 1.0)
    with pytest.raises(InputError, match="there is no camera 9: the scene has 4"):
        camera_endpoint(recon, 8)


def test_colmap_points_scale_and_their_pixels_do_not(recon):
    tracks = Tracks(
        np.array([[0.1, 0.2, 2.0], [0.0, -0.1, 3.0]], np.float32),
        np.full((2, 3), 200, np.uint8),
        np.array([0.3, 0.4], np.float32),
        np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32),
        np.array([[10, 12], [11, 12], [30, 40], [31, 40]], np.float32),
    )
    sparse = dataclasses.replace(recon, tracks=tracks)
    out = sparse.rescaled(3.0)
    np.testing.assert_allclose(out.tracks.xyz, tracks.xyz * 3.0)
    np.testing.assert_array_equal(out.tracks.pixels, tracks.pixels)
    np.testing.assert_array_equal(out.tracks.error, tracks.error)


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    """The one factor between two arrays of coordinates (least squares), checked to fit."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    k = float(a @ b / (a @ a))
    assert np.abs(b - k * a).max() <= 1e-4 * np.abs(b).max(), "not one factor"
    return k


def test_every_export_is_in_metres(tmp_path, recon, metric):
    scaled, f = metric
    for fmt, target in (("ply", "c.ply"), ("glb", "c.glb"), ("mesh", "m.ply"), ("colmap", "colmap"), ("nerfstudio", "ns")):
        plain = export(recon, fmt, tmp_path / "plain" / target, percentile=0)
        metres = export(scaled, fmt, tmp_path / "metric" / target, percentile=0)
        if fmt in ("ply", "mesh"):
            k = _ratio(trimesh.load(plain, force="mesh" if fmt == "mesh" else None).vertices, trimesh.load(metres).vertices)
        elif fmt == "glb":
            k = _ratio(trimesh.load(plain).to_geometry().vertices, trimesh.load(metres).to_geometry().vertices)
        elif fmt == "colmap":
            models = [pycolmap.Reconstruction(str(p / "sparse" / "0")) for p in (plain, metres)]
            centres = [np.array([im.projection_center() for _, im in sorted(m.images.items())]) for m in models]
            points = [np.array([p.xyz for _, p in sorted(m.points3D.items())]) for m in models]
            k = _ratio(centres[0], centres[1])
            assert _ratio(points[0], points[1]) == pytest.approx(f, rel=1e-4)
        else:
            frames = [json.loads((p / "transforms.json").read_text())["frames"] for p in (plain, metres)]
            k = _ratio(
                [fr["transform_matrix"][i][3] for fr in frames[0] for i in range(3)],
                [fr["transform_matrix"][i][3] for fr in frames[1] for i in range(3)],
            )
        assert k == pytest.approx(f, rel=1e-4), fmt


def test_novel_view_depth_is_in_metres_and_the_picture_is_the_same(tiny_rec, tmp_path):
    from zipmap_core.resources import SAMPLE_SCENE

    images = sorted((SAMPLE_SCENE / "images").glob("*.png"))[:3]
    recon = tiny_rec.reconstruct(images, resolution=112)
    scaled, f = apply_metric_scale(recon, camera_endpoint(recon, 0), camera_endpoint(recon, 2), TRUE_M)
    assert f == pytest.approx(TRUE_M / distance(camera_endpoint(recon, 0), camera_endpoint(recon, 2)), rel=1e-12)
    c2w = recon.cam_to_world[1:2].copy()
    c2w[:, :, 3] += 0.3 * c2w[:, :, 0]  # off the input cameras
    metric_c2w = c2w.copy()
    metric_c2w[:, :, 3] *= f  # the same camera, in metres
    plain = tiny_rec.render_views(recon, c2w, recon.intrinsics[1:2], recon.image_hw)
    metres = tiny_rec.render_views(scaled, metric_c2w, recon.intrinsics[1:2], recon.image_hw)
    np.testing.assert_allclose(metres.depth, plain.depth * f, rtol=1e-3)
    np.testing.assert_allclose(metres.rgb, plain.rgb, atol=1e-4)
