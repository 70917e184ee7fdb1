"""Every export re-opened with its own library and checked against the Reconstruction."""

from __future__ import annotations

import json
import os

import numpy as np
import pycolmap
import pytest
import trimesh
from scenes import truth_reconstruction
from scipy.spatial import cKDTree

from zipmap_core import cli
from zipmap_core.io.atomic import WriteError
from zipmap_core.io.exporters import (
    OPENCV_TO_OPENGL,
    export,
    export_mesh,
    export_ply,
    fuse_tsdf,
)
from zipmap_core.io.reconstruction import Reconstruction


@pytest.fixture(scope="module")
def recon() -> Reconstruction:
    return truth_reconstruction()


def test_ply_points_colours_confidence_and_threshold(tmp_path, recon):
    path = export_ply(recon, tmp_path / "p.ply", percentile=30)
    cloud = trimesh.load(path)
    pts, cols, conf = recon.point_cloud(30)
    assert len(cloud.vertices) == len(pts) < recon.depth.size
    np.testing.assert_allclose(cloud.vertices, pts, atol=1e-5)
    assert np.array_equal(cloud.colors[:, :3], cols)
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_allclose(raw["confidence"], conf, rtol=1e-6)
    assert path.read_bytes()[:200].count(b"binary_little_endian") == 1
    assert oct(path.stat().st_mode & 0o777) != "0o600"


def test_glb_has_points_and_one_frustum_per_camera(tmp_path, recon):
    path = export(recon, "glb", tmp_path / "s.glb")
    scene = trimesh.load(path)
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    paths = [g for g in scene.geometry.values() if isinstance(g, trimesh.path.Path3D)]
    assert len(clouds) == 1 and len(clouds[0].vertices) == recon.depth.size
    assert len(paths) == recon.num_frames
    apexes = sorted(
        tuple(np.round(p.vertices[np.argmin(np.linalg.norm(p.vertices - c[:3, 3], axis=1))], 4)) for p, c in zip(paths, recon.cam_to_world)
    )
    expected = sorted(tuple(np.round(c[:3, 3], 4)) for c in recon.cam_to_world)
    np.testing.assert_allclose(apexes, expected, atol=1e-4)


def test_colmap_binary_and_text_poses_intrinsics_points(tmp_path, recon):
    for text in (False, True):
        folder = export(recon, "colmap", tmp_path / f"colmap_{text}", text=text, max_points=2000)
        model = pycolmap.Reconstruction(str(folder / "sparse" / "0"))
        assert model.num_images() == recon.num_frames and model.num_points3D() > 1000
        for image in model.images.values():
            i = image.image_id - 1
            assert (folder / "images" / image.name).exists()
            np.testing.assert_allclose(image.cam_from_world().matrix(), recon.extrinsics[i], atol=1e-5)
            cam = model.cameras[image.camera_id]
            k = recon.intrinsics[i]
            np.testing.assert_allclose(cam.params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]], rtol=1e-6)
            assert (cam.width, cam.height) == (recon.image_hw[1], recon.image_hw[0])
        # each point projects onto the pixel its track names
        _pid, point = next(iter(model.points3D.items()))
        el = point.track.elements[0]
        image = model.images[el.image_id]
        xy = image.points2D[el.point2D_idx].xy
        proj = model.cameras[image.camera_id].img_from_cam(image.cam_from_world() * point.xyz)
        np.testing.assert_allclose(proj, xy, atol=1e-3)


def test_nerfstudio_transforms(tmp_path, recon):
    folder = export(recon, "nerfstudio", tmp_path / "ns")
    meta = json.loads((folder / "transforms.json").read_text())
    assert len(meta["frames"]) == recon.num_frames
    for i, frame in enumerate(meta["frames"]):
        assert (folder / frame["file_path"]).exists()
        c2w = np.array(frame["transform_matrix"]) @ np.linalg.inv(OPENCV_TO_OPENGL)
        np.testing.assert_allclose(c2w[:3], recon.cam_to_world[i], atol=1e-5)
        assert frame["fl_x"] == pytest.approx(float(recon.intrinsics[i, 0, 0]))
    assert len(trimesh.load(folder / meta["ply_file_path"]).vertices) > 0


def test_tsdf_mesh_lies_on_the_true_surface(tmp_path, recon):
    mesh = fuse_tsdf(recon, percentile=0)
    voxel = mesh.metadata["voxel_size"]
    truth = recon.points_world.reshape(-1, 3)
    d_mesh_to_truth = cKDTree(truth).query(mesh.vertices)[0]
    d_truth_to_mesh = cKDTree(mesh.vertices).query(truth[::5])[0]
    chamfer = 0.5 * (d_mesh_to_truth.mean() + d_truth_to_mesh.mean())
    extent = np.linalg.norm(truth.max(0) - truth.min(0))
    print(f"TSDF mesh: Chamfer {chamfer:.4f}, voxel {voxel:.4f}, scene diagonal {extent:.3f}")
    assert chamfer < 1.5 * voxel and chamfer < 0.01 * extent, (chamfer, voxel, extent)
    assert mesh.visual.vertex_colors[:, :3].std() > 5  # textured, not one flat colour
    for suffix in ("ply", "obj", "glb"):
        path = export_mesh(recon, tmp_path / f"m.{suffix}", percentile=0)
        loaded = trimesh.load(path, force="mesh")
        assert len(loaded.faces) == len(mesh.faces)


def test_unwritable_target_is_reported(tmp_path, recon):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for fmt, target in (("ply", blocker / "p.ply"), ("colmap", blocker / "col")):
        with pytest.raises(WriteError, match="cannot write"):
            export(recon, fmt, target)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("user data")
    with pytest.raises(WriteError, match=r"holds files ZipMap did not write \(keep\.txt\)"):
        export(recon, "nerfstudio", occupied)
    assert os.listdir(occupied) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["a_file", "occupied"]


def test_full_disk_and_cancel_leave_no_partial_file(tmp_path, recon, monkeypatch):
    import trimesh.exchange.ply as tply

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tply, "export_ply", full)
    with pytest.raises(WriteError, match="disk is full"):
        export_ply(recon, tmp_path / "p.ply")
    monkeypatch.undo()

    class Stop(Exception):
        pass

    def cancel(stage, done, total):
        if done == 2:
            raise Stop()

    for fmt, target in (("colmap", "c"), ("mesh", "m.ply"), ("nerfstudio", "n")):
        with pytest.raises(Stop):
            export(recon, fmt, tmp_path / target, progress=cancel)
    assert os.listdir(tmp_path) == []


def test_cli_export_every_format(tmp_path, recon, capsys):
    scene = recon.save(tmp_path / "scene.zipmap")
    for fmt, target in (("ply", "a.ply"), ("glb", "a.glb"), ("mesh", "a.obj"), ("colmap", "col"), ("nerfstudio", "ns")):
        assert cli.main(["export", str(scene), "--format", fmt, "-o", str(tmp_path / target), "-q"]) == 0
        assert (tmp_path / target).exists()
    assert cli.main(["export", str(tmp_path / "missing.zipmap"), "--format", "ply", "-o", str(tmp_path / "x.ply")]) == 2
    assert "not found" in capsys.readouterr().err
