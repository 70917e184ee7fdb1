"""Known cameras as input (`--poses`): COLMAP models and nerfstudio files read back as the
cameras they hold, the classical engine triangulating with them in their frame and units, a
network scene brought onto them, and every bad file refused in one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitools import assert_one_line_error, run_cli
from PIL import Image

from zipmap_core.errors import InputError
from zipmap_core.io.exporters import export
from zipmap_core.io.known_poses import read_known_poses
from zipmap_core.io.similarity import Similarity, fit_similarity
from zipmap_core.sfm.test_scenes import textured_room

HW = (240, 320)


@pytest.fixture(scope="module")
def room():
    """A textured room, its cameras in millimetres and turned away from frame 0 = identity."""
    truth = textured_room(6, seed=3, hw=HW)
    turn = Similarity(1000.0, _rotation([0.3, -0.2, 0.1]), np.array([120.0, -40.0, 900.0]))
    return truth.transformed(turn)


def _rotation(rotvec: list[float]) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotvec).as_matrix()


@pytest.fixture(scope="module")
def exported(room, tmp_path_factory) -> dict[str, Path]:
    """The room as a nerfstudio folder, a binary and a text COLMAP model, and its pictures."""
    root = tmp_path_factory.mktemp("known")
    export(room, "nerfstudio", root / "ns")
    export(room, "colmap", root / "colmap_bin")
    export(room, "colmap", root / "colmap_txt", text=True)
    return {
        "nerfstudio": root / "ns" / "transforms.json",
        "colmap": root / "colmap_bin" / "sparse" / "0",
        "colmap_text": root / "colmap_txt" / "sparse" / "0",
        "pictures": root / "ns" / "images",
    }


def _frames_as_loaded(folder: Path) -> tuple[list[str], list]:
    from zipmap_core.io.inputs import Preparation, load_inputs

    inputs = load_inputs([folder], prepare=Preparation("crop", HW[1]))
    crops = [f.model_input("crop", HW[1])[1] for f in inputs.frames]
    return inputs.names(), crops


@pytest.mark.parametrize("kind", ["nerfstudio", "colmap", "colmap_text"])
def test_a_camera_file_reads_back_the_cameras_it_was_written_from(room, exported, kind):
    poses = read_known_poses(exported[kind])
    order = np.argsort(poses.names)
    np.testing.assert_allclose(poses.extrinsics[order], room.extrinsics, rtol=1e-5, atol=1e-3)  # millimetres
    np.testing.assert_allclose(poses.intrinsics[order], room.intrinsics, rtol=1e-5, atol=1e-4)
    names, crops = _frames_as_loaded(exported["pictures"])  # 320x238 model images: the rows scale by 238 / 240
    w2c, k = poses.for_frames(names, crops)
    np.testing.assert_allclose(w2c, room.extrinsics, rtol=1e-5, atol=1e-3)
    sy = crops[0].resized_wh[1] / HW[0]
    np.testing.assert_allclose(k[:, 1, 1], room.intrinsics[:, 1, 1] * sy, rtol=1e-5)


def test_the_classical_engine_keeps_known_cameras_in_their_frame_and_units(room, exported, tmp_path, capsys):
    out = tmp_path / "scene"
    args = ["reconstruct", str(exported["pictures"]), "-o", str(out), "--engine", "colmap", "--poses", str(exported["nerfstudio"])]
    code, err = run_cli([*args, "--no-dense", "-q"], capsys)
    assert code == 0, err
    from zipmap_core.io.reconstruction import Reconstruction

    scene = Reconstruction.load(out / "scene.zipmap")
    h, w = scene.image_hw  # the classical engine sees the frames 518 wide
    np.testing.assert_allclose(scene.extrinsics, room.extrinsics, rtol=1e-5, atol=1e-2)  # as given, not normalised
    np.testing.assert_allclose(scene.intrinsics[:, 0], room.intrinsics[:, 0] * w / HW[1], rtol=1e-3)
    np.testing.assert_allclose(scene.intrinsics[:, 1], room.intrinsics[:, 1] * h / HW[0], rtol=1e-3)
    assert scene.tracks is not None and scene.tracks.num_points > 300
    # the triangulated points lie on the true surface, in millimetres
    d = scene.depth
    truth = np.stack([np.asarray(Image.fromarray(t).resize(d.shape[:0:-1], Image.Resampling.NEAREST)) for t in room.depth])
    seen = d > 0
    assert np.median(np.abs(d[seen] - truth[seen]) / truth[seen]) < 0.01
    assert scene.metadata["poses"]["cameras"] == room.num_frames


def test_a_network_scene_is_brought_onto_known_cameras(room, exported, tiny_rec):
    from zipmap_core.io.inputs import Preparation, load_inputs
    from zipmap_core.pipeline.reconstruct_options import ReconstructOptions

    poses = read_known_poses(exported["nerfstudio"])
    inputs = load_inputs([exported["pictures"]], prepare=Preparation("crop", 112))
    plain = tiny_rec.run(inputs, ReconstructOptions(resolution=112))
    onto = tiny_rec.run(inputs, ReconstructOptions(resolution=112, poses=poses))
    fit = fit_similarity(plain.extrinsics, room.extrinsics)
    np.testing.assert_allclose(onto.extrinsics, fit.world_to_camera(plain.extrinsics), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(onto.depth, plain.depth * fit.scale, rtol=1e-4)
    # the cameras' centres land where the known ones are, as far as a similarity can put them
    centres = -np.einsum("nji,nj->ni", onto.extrinsics[:, :, :3], onto.extrinsics[:, :, 3])
    known = -np.einsum("nji,nj->ni", room.extrinsics[:, :, :3], room.extrinsics[:, :, 3])
    assert np.abs(centres.mean(0) - known.mean(0)).max() < 1e-2 * np.abs(known).max()


def test_a_transformed_scene_state_renders_the_same_views(tiny_checkpoint, tmp_path):
    """A scene turned, moved and scaled (known cameras, a metric scale) still queries its state in
    the frame it was made in: the same camera, carried along, sees the same picture."""
    import torch

    from zipmap_core.model.config import tiny_config
    from zipmap_core.model.zipmap import ZipMap
    from zipmap_core.pipeline.reconstructor import Reconstructor

    torch.manual_seed(2)
    rec = Reconstructor(ZipMap(tiny_config().replace(enable_nvs=True)).eval(), "cpu")
    room = textured_room(3, seed=1, hw=(84, 112))
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, image in zip(room.names, room.images):
        Image.fromarray(image).save(folder / name)
    scene = rec.reconstruct([folder], resolution=112)
    change = Similarity(3.5, _rotation([0.2, 0.5, -0.3]), np.array([1.0, 2.0, -3.0]))
    moved = scene.transformed(change).transformed(Similarity(0.25))
    c2w = scene.cam_to_world[1:2]
    k = scene.intrinsics[1:2]
    before = rec.render_views(scene, c2w, k, (84, 112))
    after = rec.render_views(moved, Similarity(0.25).camera_to_world(change.camera_to_world(c2w)), k, (84, 112))
    np.testing.assert_allclose(after.rgb, before.rgb, atol=1e-4)
    np.testing.assert_allclose(after.depth, before.depth * 3.5 * 0.25, rtol=1e-3)
    reopened = type(scene).load(moved.save(tmp_path / "moved.zipmap"))
    np.testing.assert_allclose(reopened.state_frame, moved.state_frame)


# ---- bad files ------------------------------------------------------------------------------------------
def _ns_copy(exported: dict[str, Path], tmp_path: Path, change) -> Path:
    data = json.loads(exported["nerfstudio"].read_text())
    change(data)
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, said",
    [
        (lambda d: d["frames"].pop(0), "has no camera for"),
        (lambda d: d["frames"][1].update(w=640, h=480), "but the picture is"),
        (lambda d: d["frames"][2]["transform_matrix"][0].__setitem__(0, float("nan")), "not JSON|NaN or infinite"),
        (lambda d: d["frames"][2]["transform_matrix"][0].__setitem__(0, 2.0), "not a rigid motion"),
        (lambda d: d["frames"][0].update(fl_x=0.0), "focal length that is not positive"),
        (lambda d: d["frames"][0].update(k1=0.1), "lens distortion"),
        (lambda d: d.update(frames={}), "frames"),
    ],
)
def test_a_bad_camera_file_is_one_line_and_writes_nothing(exported, tmp_path, capsys, change, said):
    path = _ns_copy(exported, tmp_path, change)
    out = tmp_path / "out"
    code, err = run_cli(["reconstruct", str(exported["pictures"]), "-o", str(out), "--engine", "colmap", "--poses", str(path)], capsys)
    assert_one_line_error(code, err)
    assert pytest.importorskip("re").search(said, err), err
    assert not out.exists()


def test_a_colmap_model_missing_a_picture_or_hostile_is_refused(exported, tmp_path):
    text = tmp_path / "model"
    text.mkdir()
    (text / "cameras.txt").write_text((exported["colmap_text"] / "cameras.txt").read_text())
    lines = (exported["colmap_text"] / "images.txt").read_text().splitlines()
    (text / "images.txt").write_text("\n".join(lines[:-2]) + "\n")  # the last picture's two lines gone
    names, crops = _frames_as_loaded(exported["pictures"])
    with pytest.raises(InputError, match="has no camera for"):
        read_known_poses(text).for_frames(names, crops)
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "cameras.bin").write_bytes((2**62).to_bytes(8, "little"))  # declares 2^62 cameras
    (hostile / "images.bin").write_bytes(bytes(8))
    with pytest.raises(InputError, match="does not read"):
        read_known_poses(hostile)
