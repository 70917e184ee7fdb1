"""The dense stage in the product (issue 36): the classical engine's scenes of real footage get
dense depth and a fused cloud by default, every export carries it, the mesh export works, the
photos' novel views beat the baselines on held-out frames of the shipped video, known cameras
give accurate dense depth, and a cancel in the dense stage keeps the previous outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from clitools import assert_one_line_error, run_cli
from PIL import Image

from zipmap_core.cancel import Cancelled
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.resources import REAL_SAMPLE
from zipmap_core.sfm.test_scenes import textured_room

VIDEO = ["--video-frames", "24"]


@pytest.fixture(scope="module")
def real_scene(tmp_path_factory) -> Path:
    """The shipped video's scene by the classical engine, with every export."""
    out = tmp_path_factory.mktemp("real") / "out"
    from zipmap_core import cli

    code = cli.main(
        ["reconstruct", str(REAL_SAMPLE), *VIDEO, "--engine", "colmap", "-o", str(out), "-q", "--export", "ply,glb,mesh,colmap,nerfstudio"]
    )
    assert code == 0
    return out


def test_a_classical_scene_is_dense_by_default_and_every_export_carries_it(real_scene):
    scene = Reconstruction.load(real_scene / "scene.zipmap")
    assert scene.dense_points is not None and scene.metadata["dense"]["stereo_share"] > 0.5
    assert (scene.depth > 0).mean() > 0.5  # depth over most of the picture, not at a few thousand points
    dense = scene.dense_points.num_points
    assert dense > 50 * scene.tracks.num_points
    ply = trimesh.load(real_scene / "points.ply")
    assert len(ply.vertices) == dense
    fused = trimesh.load(real_scene / "colmap" / "fused.ply")  # beside the sparse model, as COLMAP's dense workspace
    assert len(fused.vertices) == dense and (real_scene / "colmap" / "sparse" / "0" / "points3D.bin").exists()
    ns = json.loads((real_scene / "nerfstudio" / "transforms.json").read_text())
    assert len(trimesh.load(real_scene / "nerfstudio" / ns["ply_file_path"]).vertices) == dense
    glb = trimesh.load(real_scene / "scene.glb")
    assert sum(len(g.vertices) for g in glb.geometry.values() if isinstance(g, trimesh.PointCloud)) == dense
    mesh = trimesh.load(real_scene / "mesh.ply")  # the mesh export works on a classical scene, and re-opens
    assert len(mesh.faces) > 10_000


def test_a_classical_scene_renders_from_its_photos_by_default_and_says_so(real_scene, tmp_path, capsys):
    scene = Reconstruction.load(real_scene / "scene.zipmap")
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps({"c2w": scene.cam_to_world[[5]].tolist(), "intrinsics": scene.intrinsics[5].tolist()}))
    code, err = run_cli(["render", str(real_scene / "scene.zipmap"), "--c2w", str(cams), "-o", str(tmp_path / "r"), "-q"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "path.json").read_text())["source"] == "photos"
    rendered = np.asarray(Image.open(tmp_path / "r" / "frames" / "frame_0000.png"), np.float32)
    assert np.abs(rendered - scene.images[5]).mean() < 6  # an input camera sees its own photo again
    code, err = run_cli(
        ["render", str(real_scene / "scene.zipmap"), "--c2w", str(cams), "-o", str(tmp_path / "s"), "--source", "state"], capsys
    )
    assert_one_line_error(code, err)
    assert "scene state" in err and not (tmp_path / "s").exists()


def test_held_out_frames_of_the_real_video_are_rendered_best_from_the_photos(tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", "--novel-views", str(REAL_SAMPLE), *VIDEO, "--engine", "colmap", "--json", str(out), "-o", str(tmp_path / "views")]
    code, err = run_cli([*args, "-q"], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert {"photos", "points", "nearest_frame", "mean_colour"} <= set(summary)
    assert summary["photos"]["psnr"] >= 30 and summary["photos"]["psnr"] >= summary["nearest_frame"]["psnr"] + 3
    assert summary["photos"]["ssim"] > summary["nearest_frame"]["ssim"]
    assert len(result["frames"]) == 6 and all("photos" in f for f in result["frames"])
    assert len(list((tmp_path / "views").glob("*.png"))) == 6


def _room_pictures(folder: Path, room: Reconstruction) -> None:
    folder.mkdir()
    for name, image in zip(room.names, room.images):
        Image.fromarray(image).save(folder / name)


def _absrel(depth: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(AbsRel over the pixels returned, share returned), truth resized to the depth's size."""
    t = np.stack([np.asarray(Image.fromarray(d).resize(depth.shape[:0:-1], Image.Resampling.NEAREST)) for d in truth])
    got = depth > 0
    return float(np.mean(np.abs(depth[got] - t[got]) / t[got])), float(got.mean())


def test_dense_depth_of_a_room_from_its_true_cameras_and_from_colmaps(tmp_path, capsys):
    room = textured_room(10, seed=5, hw=(240, 320))
    pictures = tmp_path / "room"
    _room_pictures(pictures, room)
    from zipmap_core.io.exporters import export

    export(room, "nerfstudio", tmp_path / "ns")
    known = tmp_path / "known"
    code, err = run_cli(
        ["reconstruct", str(pictures), "-o", str(known), "--engine", "colmap", "--poses", str(tmp_path / "ns"), "-q"], capsys
    )
    assert code == 0, err
    absrel, returned = _absrel(Reconstruction.load(known / "scene.zipmap").depth, room.depth)
    assert absrel <= 0.05 and returned >= 0.7, (absrel, returned)
    own = tmp_path / "own"
    code, err = run_cli(["reconstruct", str(pictures), "-o", str(own), "--engine", "colmap", "-q"], capsys)
    assert code == 0, err
    scene = Reconstruction.load(own / "scene.zipmap")
    keep = [room.names.index(n) for n in scene.names]
    t = room.depth[keep]
    scale = np.median(t[:, ::8, ::8]) / np.median(scene.depth[scene.depth > 0])  # COLMAP's unit is its own: one scale
    absrel, returned = _absrel(scene.depth * scale, t)
    assert absrel <= 0.05 and returned >= 0.7, (absrel, returned)


def test_a_cancel_in_the_dense_stage_keeps_the_previous_outputs(tmp_path, capsys, monkeypatch):
    room = textured_room(6, seed=6, hw=(240, 320))
    pictures = tmp_path / "room"
    _room_pictures(pictures, room)
    out = tmp_path / "out"
    assert run_cli(["reconstruct", str(pictures), "-o", str(out), "--engine", "colmap", "--no-dense", "-q"], capsys)[0] == 0
    before = (out / "scene.zipmap").read_bytes()
    from zipmap_core.pipeline import dense_stage

    def cancelled(*args, progress=None, cancel=None, **kwargs):
        raise Cancelled("reconstruction cancelled")

    monkeypatch.setattr(dense_stage, "dense_depth", cancelled)
    code, err = run_cli(["reconstruct", str(pictures), "-o", str(out), "--engine", "colmap", "-q"], capsys)
    assert code == 130 and "cancelled" in err
    assert (out / "scene.zipmap").read_bytes() == before
