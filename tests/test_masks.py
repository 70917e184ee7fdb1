"""Masks as input (issue 38): black in a mask keeps a moving thing out of COLMAP's features, out
of the dense depth and out of the novel views; bad masks are one line and write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clitools import assert_one_line_error, run_cli
from PIL import Image

from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.sfm.test_scenes import textured_room

HW = (240, 320)
BOX = 70  # pixels: the side of the "moving" patch


@pytest.fixture(scope="module")
def moving(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A textured room with a textured patch that moves across the pictures (a subject the
    cameras do not explain), its pictures and its masks (black on the patch)."""
    root = tmp_path_factory.mktemp("moving")
    room = textured_room(8, seed=11, hw=HW)
    patch = np.random.default_rng(5).integers(0, 255, (BOX, BOX, 3), dtype=np.uint8)
    pictures, masks = root / "pictures", root / "masks"
    pictures.mkdir()
    masks.mkdir()
    boxes = np.zeros((room.num_frames, *HW), bool)
    for i, (name, image) in enumerate(zip(room.names, room.images)):
        top, left = 40 + 10 * i, 30 + 25 * i
        image = image.copy()
        image[top : top + BOX, left : left + BOX] = patch
        boxes[i, top : top + BOX, left : left + BOX] = True
        Image.fromarray(image).save(pictures / name)
        Image.fromarray(np.where(boxes[i], 0, 255).astype(np.uint8)).save(masks / f"{name}.png")  # COLMAP's name
    return pictures, masks, boxes


def _scaled(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(b).resize(hw[::-1], Image.Resampling.NEAREST)) for b in boxes])


def test_masked_pixels_get_no_features_no_depth_and_the_scene_keeps_the_masks(moving, tmp_path, capsys):
    pictures, masks, boxes = moving
    out = tmp_path / "out"
    code, err = run_cli(["reconstruct", str(pictures), "-o", str(out), "--engine", "colmap", "--masks", str(masks), "-q"], capsys)
    assert code == 0, err
    scene = Reconstruction.load(out / "scene.zipmap")
    masked = ~scene.masks
    inside = _scaled(boxes, scene.image_hw)[[int(n[5:8]) for n in scene.names]]
    assert masked.any() and np.mean(masked == inside) > 0.99  # the masks, at the scene's geometry
    t = scene.tracks
    u = np.clip(t.pixels[:, 0].astype(int), 0, scene.image_hw[1] - 1)
    v = np.clip(t.pixels[:, 1].astype(int), 0, scene.image_hw[0] - 1)
    assert not masked[t.observations[:, 1], v, u].any()  # no feature on a masked pixel
    assert scene.dense_points is not None and not (scene.depth[masked] > 0).any()  # no depth there
    assert (scene.depth[~masked] > 0).mean() > 0.5


def test_a_masked_pixel_of_a_photo_is_never_drawn_into_a_view():
    from zipmap_core.dense import render_from_photos

    room = textured_room(4, seed=2, hw=(120, 160))
    images = room.images.copy()
    keep = np.ones(images.shape[:3], bool)
    images[:, 30:90, 40:120] = (255, 0, 0)  # red where the masks say "ignore"
    keep[:, 30:90, 40:120] = False
    conf = np.ones(room.depth.shape, np.float32)
    args = (room.depth, conf, room.extrinsics, room.intrinsics, room.cam_to_world[1:2], room.intrinsics[1:2], (120, 160))
    unmasked = render_from_photos(images, *args, sources=[0, 2, 3]).rgb[0]
    masked = render_from_photos(images, *args, sources=[0, 2, 3], keep=keep).rgb[0]
    red = lambda rgb: np.mean((rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.1))  # noqa: E731
    assert red(unmasked) > 0.05 and red(masked) == 0.0


def test_the_network_scene_has_no_depth_on_masked_pixels(moving, tmp_path, capsys, tiny_checkpoint):
    pictures, masks, _ = moving
    out = tmp_path / "net"
    code, err = run_cli(
        ["reconstruct", str(pictures), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--masks", str(masks), "-q"], capsys
    )
    assert code == 0, err
    scene = Reconstruction.load(out / "scene.zipmap")
    assert scene.masks is not None and (~scene.masks).any()
    assert not (scene.depth[~scene.masks] > 0).any() and len(scene.point_cloud()[0]) == int(scene.masks.sum())


@pytest.mark.parametrize("fault", ["missing", "size", "not a picture"])
def test_bad_masks_are_one_line_and_write_nothing(moving, tmp_path, capsys, fault):
    pictures, masks, _ = moving
    bad = tmp_path / "masks"
    bad.mkdir()
    files = sorted(masks.iterdir())
    for f in files[1:] if fault == "missing" else files:
        (bad / f.name).write_bytes(f.read_bytes())
    if fault == "size":
        Image.new("L", (100, 100), 255).save(bad / files[2].name)
    if fault == "not a picture":
        (bad / files[3].name).write_bytes(b"not a png at all")
    out = tmp_path / "out"
    code, err = run_cli(["reconstruct", str(pictures), "-o", str(out), "--engine", "colmap", "--masks", str(bad)], capsys)
    assert_one_line_error(code, err)
    assert {"missing": "no mask for", "size": "100x100", "not a picture": "not a readable image"}[fault] in err
    assert not out.exists()


def test_a_split_into_several_models_names_the_frames_of_each():
    from zipmap_core.sfm.engine import engine_summary

    scene = Reconstruction(
        names=["a.png", "b.png"],
        images=np.zeros((2, 4, 4, 3), np.uint8),
        extrinsics=np.tile(np.eye(3, 4), (2, 1, 1)),
        intrinsics=np.tile(np.eye(3), (2, 1, 1)),
        depth=np.ones((2, 4, 4), np.float32),
        depth_conf=np.ones((2, 4, 4), np.float32),
        metadata={
            "colmap": {"registered": 2, "frames": 5, "models": 2, "model_sizes": [2, 3], "model_frames": [["a", "b"], ["c", "d", "e"]]}
        },
    )
    line = engine_summary(scene)
    assert "model 1: a, b" in line and "model 2: c, d, e" in line
