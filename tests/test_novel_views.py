"""Novel views: camera paths, the `zipmap render` CLI, and the point-cloud fallback."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from scenes import truth_reconstruction

from zipmap_core import cli
from zipmap_core.io.checkpoints import save_model
from zipmap_core.metrics import psnr
from zipmap_core.model.config import tiny_config
from zipmap_core.model.zipmap import ZipMap
from zipmap_core.pipeline.camera_path import (
    look_at,
    orbit_path,
    path_through,
    scene_centre,
)
from zipmap_core.pipeline.reconstructor import Reconstructor
from zipmap_core.pipeline.splat import splat_render

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "resources" / "samples" / "images").glob("*.png"))


def test_look_at_is_a_proper_opencv_camera():
    c2w = look_at(np.array([0.0, -1.0, -3.0]), np.zeros(3))
    rot = c2w[:, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-6)
    forward = rot[:, 2]
    np.testing.assert_allclose(forward, np.array([0, 1, 3]) / np.sqrt(10), atol=1e-6)
    assert rot[1, 1] > 0  # image "down" points along world +y (down) when looking level-ish


def test_path_through_hits_the_keys_and_stays_rigid():
    keys = [look_at(np.array([x, 0.0, -2.0]), np.zeros(3)) for x in (-1.0, 0.0, 1.0)]
    path = path_through(keys, 9)
    for i, k in zip((0, 4, 8), keys):
        np.testing.assert_allclose(path[i], k, atol=1e-5)
    for pose in path:
        np.testing.assert_allclose(pose[:, :3] @ pose[:, :3].T, np.eye(3), atol=1e-5)


def test_orbit_path_circles_and_looks_at_the_centre():
    recon = truth_reconstruction()
    poses = orbit_path(recon, 8)
    centre = scene_centre(recon)
    dist = np.linalg.norm(poses[:, :, 3] - centre, axis=1)
    assert dist.std() < 1e-3 * dist.mean()
    to_centre = (centre - poses[:, :, 3]) / dist[:, None]
    np.testing.assert_allclose(np.einsum("nk,nk->n", poses[:, :, 2], to_centre), 1.0, atol=1e-5)
    # upright: the orbit's cameras point "down" (their y axis) where the input cameras do
    down = recon.cam_to_world[:, :3, 1].mean(0)
    assert (poses[:, :, 1] @ down > 0.5).all(), poses[:, :, 1] @ down


def test_point_cloud_fallback_reproduces_an_input_view():
    recon = truth_reconstruction(views=4)
    views = splat_render(recon, recon.cam_to_world[:1], recon.intrinsics[:1], recon.image_hw)
    covered = views.confidence[0] > 0
    assert covered.mean() > 0.95
    target = recon.images[0].astype(np.float32) / 255
    # other frames' points interleave at texture edges, so the match is close, not exact
    assert psnr(views.rgb[0][covered], target[covered]) > 20
    mean_colour = np.broadcast_to(target.reshape(-1, 3).mean(0), target.shape)
    assert psnr(views.rgb[0][covered], target[covered]) > psnr(mean_colour[covered], target[covered]) + 5
    rel = np.abs(views.depth[0][covered] - recon.depth[0][covered]) / recon.depth[0][covered]
    assert np.median(rel) < 0.05 and np.mean(rel < 0.1) > 0.9


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("render")
    ckpt = save_model(ZipMap(tiny_config()), folder / "tiny.safetensors")
    rec = Reconstructor.from_checkpoint(ckpt, "cpu")
    recon = rec.reconstruct(SAMPLES[:4])
    return rec, recon, recon.save(folder / "scene.zipmap"), ckpt


def test_render_cli_orbit_writes_frames_video_and_cameras(tmp_path, tiny_scene):
    _, _recon, scene, ckpt = tiny_scene
    out = tmp_path / "orbit"
    assert cli.main(["render", str(scene), "--orbit", "5", "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "-q"]) == 0
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == 5 and len(list((out / "frames").glob("*_depth.npy"))) == 5
    cap = cv2.VideoCapture(str(out / "path.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 5
    with av.open(str(out / "path.mp4")) as video:  # H.264 in yuv420p: what browsers and players play
        codec = video.streams.video[0].codec_context
        assert (codec.name, codec.pix_fmt) == ("h264", "yuv420p")
    assert (out / "path.mp4").read_bytes()[:4096].find(b"moov") >= 0  # index first: plays while it loads
    meta = json.loads((out / "path.json").read_text())
    assert meta["source"] == "scene state" and len(meta["c2w"]) == 5


def test_render_cli_c2w_file_matches_the_api(tmp_path, tiny_scene):
    rec, recon, scene, ckpt = tiny_scene
    poses = recon.cam_to_world[:2]
    (tmp_path / "cams.json").write_text(json.dumps({"c2w": poses.tolist(), "intrinsics": recon.intrinsics[0].tolist()}))
    out = tmp_path / "views"
    assert (
        cli.main(
            ["render", str(scene), "--c2w", str(tmp_path / "cams.json"), "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "-q"]
        )
        == 0
    )
    api = rec.render_views(recon, poses[1:2], recon.intrinsics[:1], recon.image_hw)
    depth = np.load(out / "frames" / "frame_0001_depth.npy")
    np.testing.assert_allclose(depth, api.depth[0], rtol=1e-4)


def test_render_cli_rejects_bad_camera_files(tmp_path, tiny_scene, capsys):
    _, _, scene, ckpt = tiny_scene
    (tmp_path / "bad.json").write_text(json.dumps({"c2w": [[1, 2], [3, 4]]}))
    code = cli.main(["render", str(scene), "--c2w", str(tmp_path / "bad.json"), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt)])
    assert code == 2 and "3x4 or 4x4" in capsys.readouterr().err


def test_videos_of_odd_sizes_are_h264_that_reads_back(tmp_path):
    from zipmap_core.pipeline.camera_path import VideoFile, count_video_frames

    path = tmp_path / "odd.mp4"
    with VideoFile(path, 24.0, (85, 113)) as video:  # yuv420p needs even sizes: padded by its edge
        for i in range(7):
            video.write(np.full((85, 113, 3), 30 * i, np.uint8))
    video.verify(7)
    assert count_video_frames(path) == 7 and count_video_frames(tmp_path / "missing.mp4") == 0
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert frames[0].shape == (86, 114, 3)
    assert [round(float(f.mean())) for f in frames] == pytest.approx([30 * i for i in range(7)], abs=3)


def test_a_default_render_is_a_full_orbit_worth_watching(tmp_path, recon, tiny_checkpoint):
    """Without --orbit or --size: 96 views (4 s at 24 fps) at the scene's aspect, 448 px wide;
    what is asked for stays as asked."""
    import json

    import av

    scene = recon.save(tmp_path / "s.zipmap")
    assert cli.main(["render", str(scene), "-o", str(tmp_path / "r"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q"]) == 0
    assert len(json.loads((tmp_path / "r" / "path.json").read_text())["c2w"]) == 96
    with av.open(str(tmp_path / "r" / "path.mp4")) as video:
        stream = video.streams.video[0]
        frames = sum(1 for _ in video.decode(video=0))
        assert (stream.width, stream.height) == (448, 294) and frames == 96  # 42x28 scene: 3:2
    assert (
        cli.main(
            [
                "render",
                str(scene),
                "-o",
                str(tmp_path / "small"),
                "--orbit",
                "4",
                "--size",
                "56x28",
                "--checkpoint",
                str(tiny_checkpoint),
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    assert len(json.loads((tmp_path / "small" / "path.json").read_text())["c2w"]) == 4
