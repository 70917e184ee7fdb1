"""What the GPU path needs and a CPU can check (issue 19): no host synchronisation in the trunk's
loop, the scene state kept on the device between renders, camera paths rendered in batches, and
no float64 where Apple's MPS has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zipmap_core.model.config import tiny_config
from zipmap_core.model.heads import dpt_head
from zipmap_core.model.rope import RotaryEmbedding2D, patch_positions, position_limit
from zipmap_core.model.zipmap import ZipMap
from zipmap_core.pipeline import camera_path
from zipmap_core.pipeline.camera_path import orbit_path, render_path
from zipmap_core.pipeline.reconstructor import Reconstructor

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "resources" / "samples" / "images").glob("*.png"))


@pytest.fixture(scope="module")
def rec_and_scene():
    torch.manual_seed(3)
    rec = Reconstructor(ZipMap(tiny_config()).eval(), "cpu")
    return rec, rec.reconstruct(SAMPLES[:4])


def test_the_trunk_never_reads_positions_back_from_the_device(monkeypatch):
    model = ZipMap(tiny_config()).eval()
    images = torch.rand(1, 3, 3, 56, 56)
    with torch.no_grad():
        expected = model(images, window_size=0, chunk_frames=1).depth

    def no_sync(self, *args, **kwargs):
        raise AssertionError("a .max() in the loop: a device-to-host copy per chunk on a GPU")

    monkeypatch.setattr(torch.Tensor, "max", no_sync)
    with torch.no_grad():
        depth = model(images, window_size=0, chunk_frames=1).depth
    torch.testing.assert_close(depth, expected, rtol=0, atol=0)


def test_rope_with_a_known_limit_equals_the_measured_one():
    rope = RotaryEmbedding2D(100.0)
    pos = patch_positions(2, 3, 5, 5, torch.device("cpu"))
    x = torch.randn(2, 4, pos.shape[1], 16)
    assert position_limit(3, 5) == int(pos.max()) + 1
    torch.testing.assert_close(rope(x, pos, position_limit(3, 5)), rope(x, pos), rtol=0, atol=0)


def test_the_scene_state_stays_on_the_device_between_renders(rec_and_scene, monkeypatch):
    rec, recon = rec_and_scene
    uploads = []
    real = torch.as_tensor
    monkeypatch.setattr(torch, "as_tensor", lambda *a, **k: (uploads.append(1), real(*a, **k))[1])
    poses = orbit_path(recon, 2)
    k = recon.intrinsics[:2]
    first = rec.render_views(recon, poses, k)
    per_scene = len(uploads)
    second = rec.render_views(recon, poses, k)
    np.testing.assert_array_equal(first.rgb, second.rgb)
    state_tensors = 3 * len(recon.state)
    assert per_scene >= state_tensors and len(uploads) - per_scene < state_tensors, "the state was uploaded again"
    other = type(recon)(**{**{f: getattr(recon, f) for f in ("names", "images", "extrinsics", "intrinsics", "depth",
                                                                "depth_conf", "points_cam", "points_world", "original_wh")},
                           "state": [dict(layer) for layer in recon.state], "state_scale": recon.state_scale})
    before = len(uploads)
    rec.render_views(other, poses, k)
    assert len(uploads) - before >= state_tensors, "another scene's state must be uploaded"


def test_camera_paths_render_in_batches_with_the_same_pixels(rec_and_scene, tmp_path, monkeypatch):
    rec, recon = rec_and_scene
    poses = orbit_path(recon, 10)
    calls = []
    real = rec.render_views
    monkeypatch.setattr(rec, "render_views", lambda r, c2w, *a, **k: (calls.append(len(c2w)), real(r, c2w, *a, **k))[1])
    folder = render_path(rec, recon, poses, recon.intrinsics[0], recon.image_hw, tmp_path / "path")
    assert calls == [camera_path.RENDER_BATCH, 10 - camera_path.RENDER_BATCH]
    one = real(recon, poses[9:10], recon.intrinsics[:1])
    saved = np.load(folder / "frames" / "frame_0009_depth.npy")
    np.testing.assert_allclose(saved, one.depth[0], rtol=1e-4, atol=1e-5)  # batched = one at a time
    assert len(list((folder / "frames").glob("frame_*_depth.npy"))) == 10


def test_no_float64_on_apples_mps(monkeypatch):
    assert dpt_head.wide_float(torch.device("mps")) == torch.float32
    assert dpt_head.wide_float(torch.device("cpu")) == torch.float64
    values = torch.linspace(-0.9, 0.9, 257)
    wide = dpt_head._sincos(values, 64)
    monkeypatch.setattr(dpt_head, "wide_float", lambda device: torch.float32)
    narrow = dpt_head._sincos(values, 64)
    torch.testing.assert_close(narrow, wide, rtol=0, atol=2e-6)
