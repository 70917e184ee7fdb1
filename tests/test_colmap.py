"""COLMAP beside the network (issue 27): the classical engine, refinement of ZipMap's cameras,
known intrinsics, scoring against COLMAP, and their bad cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitools import assert_one_line_error, run_cli
from scenes import textured_room

from zipmap_core.cancel import Cancelled, CancelToken
from zipmap_core.errors import InputError
from zipmap_core.io.inputs import VideoSampling
from zipmap_core.io.intrinsics import KnownIntrinsics, parse_intrinsics
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.metrics import aligned_rotation_errors
from zipmap_core.pipeline.reconstruct_options import ReconstructOptions
from zipmap_core.resources import REAL_SAMPLE, REAL_SAMPLE_FRAMES
from zipmap_core.sfm.engine import ClassicalEngine, NoOverlapError
from zipmap_core.sfm.pairs import exhaustive_pairs, overlap_pairs
from zipmap_core.sfm.refine import refine
from zipmap_core.sfm.scoring import score
from zipmap_core.sfm.test_scenes import turned

SAMPLING = VideoSampling(fps=None, max_frames=REAL_SAMPLE_FRAMES)


@pytest.fixture(scope="module")
def classical():
    """The classical engine's scene of the shipped real video (24 frames)."""
    return ClassicalEngine().reconstruct([REAL_SAMPLE], ReconstructOptions(sampling=SAMPLING))


def perturbed(truth: Reconstruction, seed: int = 0) -> Reconstruction:
    """`truth` with every camera but the first turned by 5 to 10 degrees (the issue's case)."""
    return turned(truth, (5.0, 10.0), seed)


# ---- the classical engine ---------------------------------------------------------------------------------
def test_classical_engine_registers_the_real_video(classical):
    info = classical.metadata["colmap"]
    assert info["registered"] >= 22 and classical.num_frames == info["registered"]
    assert info["mean_reprojection_error_px"] < 1.0
    assert info["matching"] == "sequential" and info["pairs"] < REAL_SAMPLE_FRAMES * 11  # linear, not all pairs
    assert classical.tracks is not None and classical.tracks.num_points > 500
    assert (classical.tracks.track_length >= 2).all()
    # cameras follow the pan: they turn, and the first is the origin
    np.testing.assert_allclose(classical.extrinsics[0], np.eye(3, 4), atol=1e-6)
    turn = np.degrees(np.arccos(np.clip((np.trace(classical.extrinsics[-1, :, :3]) - 1) / 2, -1, 1)))
    assert turn > 5
    # sparse depth: measured only where points were seen, and those points lie in front
    measured = classical.depth > 0
    assert 0 < measured.mean() < 0.2 and np.isfinite(classical.points_world[measured]).all()
    assert np.isnan(classical.points_world[~measured]).all()
    pts, rgb, length = classical.point_cloud()
    assert len(pts) == classical.tracks.num_points and rgb.dtype == np.uint8
    np.testing.assert_array_equal(length, classical.tracks.track_length)  # confidence: frames that saw it


def test_classical_scene_file_and_exports_carry_the_tracks(classical, tmp_path):
    import pycolmap

    from zipmap_core.io.exporters import export

    path = classical.save(tmp_path / "scene.zipmap")
    back = Reconstruction.load(path)
    assert back.is_sparse and back.tracks.num_points == classical.tracks.num_points
    np.testing.assert_array_equal(back.tracks.observations, classical.tracks.observations)
    export(back, "colmap", tmp_path / "colmap")
    model = pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / "0"))
    assert model.num_points3D() == classical.tracks.num_points
    assert model.compute_num_observations() == len(classical.tracks.observations)
    assert model.compute_mean_reprojection_error() < 1.0  # the real tracks reproject onto their pixels
    export(back, "nerfstudio", tmp_path / "ns")
    import trimesh

    assert len(trimesh.load(tmp_path / "ns" / "sparse_pc.ply").vertices) == classical.tracks.num_points
    with pytest.raises(InputError, match="sparse points"):
        export(back, "mesh", tmp_path / "mesh.ply")
    assert not (tmp_path / "mesh.ply").exists()


def test_scene_file_refuses_tracks_that_name_missing_frames(classical, tmp_path):
    import copy

    from zipmap_core.errors import SceneFileError

    bad = copy.copy(classical)
    tracks = copy.copy(classical.tracks)
    tracks.observations = tracks.observations.copy()
    tracks.observations[0, 1] = classical.num_frames + 5
    bad.tracks = tracks
    bad.save(tmp_path / "bad.zipmap")
    with pytest.raises(SceneFileError, match="tracks name points or frames"):
        Reconstruction.load(tmp_path / "bad.zipmap")


def test_photos_without_overlap_are_a_clear_message_and_nothing_is_written(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):  # unrelated noise: nothing in common between any two
        Image.fromarray((rng.random((240, 320, 3)) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    with pytest.raises(NoOverlapError, match=r"see the same things|register"):
        ClassicalEngine().reconstruct([photos])
    code, err = run_cli(["reconstruct", str(photos), "--engine", "colmap", "-o", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage", ["features", "matching", "mapping"])
def test_a_cancel_in_every_classical_stage_stops_it(stage):
    cancel = CancelToken()

    def progress(name: str, done: int, total: int) -> None:
        if name == stage:
            cancel.cancel()

    with pytest.raises(Cancelled):
        ClassicalEngine().reconstruct([REAL_SAMPLE], ReconstructOptions(sampling=VideoSampling(fps=None, max_frames=8)), progress, cancel)


# ---- refinement -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def room():
    return textured_room(8, seed=0, hw=(480, 640))


def test_refine_brings_perturbed_cameras_within_a_degree_and_keeps_known_intrinsics(room):
    start = perturbed(room)
    before = aligned_rotation_errors(start.extrinsics[:, :, :3].astype(np.float64), room.extrinsics[:, :, :3].astype(np.float64))
    assert np.percentile(before, 90) > 3  # the perturbation is real
    out = refine(start, fixed_intrinsics=True)
    after = aligned_rotation_errors(out.extrinsics[:, :, :3].astype(np.float64), room.extrinsics[:, :, :3].astype(np.float64))
    assert np.mean(after < 1.0) >= 0.9, after
    np.testing.assert_array_equal(out.intrinsics, room.intrinsics)  # held exactly
    info = out.metadata["refine"]
    assert info["path"].startswith("bundle adjustment") and info["error_after_px"] < 1.0
    assert out.tracks is not None and out.tracks.num_points > 1000
    # the depth was fitted to the refined cameras: it matches the triangulated points
    from zipmap_core.sfm.models import observed_depths

    _, z, at = observed_depths(out.tracks, out.extrinsics.astype(np.float64), out.depth)
    assert np.median(np.abs(at - z) / z) < 0.02
    assert start.extrinsics is not out.extrinsics and np.array_equal(start.intrinsics, room.intrinsics)  # input untouched


def test_refine_cancelled_in_every_stage_keeps_the_scene(room):
    start = perturbed(room, seed=1)
    kept = start.extrinsics.copy()
    for stage in ("features", "matching", "adjustment"):
        cancel = CancelToken()

        def progress(name: str, done: int, total: int, stage=stage, cancel=cancel) -> None:
            if name == stage:
                cancel.cancel()

        with pytest.raises(Cancelled):
            refine(start, fixed_intrinsics=True, progress=progress, cancel=cancel)
        np.testing.assert_array_equal(start.extrinsics, kept)


def test_overlap_pairs_are_linear_and_pick_the_true_neighbours():
    room = textured_room(24, seed=2, hw=(60, 80))
    pairs = overlap_pairs(room.extrinsics, room.intrinsics, room.depth, k=4)
    assert len(pairs) <= 24 * 4 and len(pairs) < len(exhaustive_pairs(24)) / 2
    # on a sideways sweep, each frame's chosen partners are its neighbours in the sweep
    gaps = [j - i for i, j in pairs]
    assert np.median(gaps) <= 3


def test_a_large_photo_set_is_matched_with_look_alike_frames_linearly():
    from zipmap_core.sfm.pairs import NEIGHBOURS, pairs_for

    room = textured_room(60, seed=4, hw=(48, 64))
    order = np.random.default_rng(0).permutation(60)  # photos in no useful order
    how, pairs = pairs_for("photos", room.images[order])
    assert how == "look-alike" and len(pairs) <= 60 * (NEIGHBOURS + 2)
    sweep_gap = [abs(int(order[i]) - int(order[j])) for i, j in pairs]  # distance along the true sweep
    assert np.median(sweep_gap) <= 4  # look-alike frames are the sweep's neighbours, whatever the file order


def test_refine_of_the_bundled_model_matches_the_classical_engine(classical, capsys, tmp_path):
    args = ["reconstruct", str(REAL_SAMPLE), "--video-frames", str(REAL_SAMPLE_FRAMES), "--refine", "-o", str(tmp_path / "out"), "-q"]
    code, err = run_cli(args, capsys)
    assert code == 0, err
    assert "refined by" in err
    refined = Reconstruction.load(tmp_path / "out" / "scene.zipmap")
    result = score(refined, classical)
    assert result["common_frames"] >= 22
    assert result["frames_within_5deg"] >= 0.9, result


# ---- known intrinsics ---------------------------------------------------------------------------------------------
def test_intrinsics_are_read_from_text_json_and_cameras_txt(tmp_path):
    k = parse_intrinsics("500,510,320,240")
    assert (k.fx, k.fy, k.cx, k.cy, k.size, k.fixed) == (500, 510, 320, 240, None, True)
    (tmp_path / "k.json").write_text(json.dumps({"fx": 400, "fy": 400, "cx": 160, "cy": 120, "width": 320, "height": 240}))
    assert parse_intrinsics(str(tmp_path / "k.json")).size == (320, 240)
    (tmp_path / "cameras.txt").write_text("# Camera list\n1 SIMPLE_RADIAL 640 360 700 320 180 0.01\n")
    k = parse_intrinsics(str(tmp_path / "cameras.txt"))
    assert (k.fx, k.fy, k.cx, k.cy, k.size) == (700, 700, 320, 180, (640, 360))


@pytest.mark.parametrize(
    "text, message",
    [
        ("500,510,320", "four numbers"),
        ("-5,5,3,3", "positive"),
        ("nan,5,3,3", "positive finite"),
    ],
)
def test_bad_intrinsics_are_refused_when_the_options_are_parsed(text, message, capsys, tmp_path):
    from zipmap_core import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["reconstruct", str(REAL_SAMPLE), f"--intrinsics={text}", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and not (tmp_path / "o").exists()
    assert any(w in err for w in message.split("|")), err


def test_intrinsics_that_do_not_fit_the_pictures_are_refused(tiny_rec, tmp_path):
    with pytest.raises(InputError, match="for 1920x1080 pictures"):
        tiny_rec.reconstruct(
            [REAL_SAMPLE], sampling=VideoSampling(fps=None, max_frames=2), intrinsics=KnownIntrinsics(900, 900, 960, 540, (1920, 1080))
        )
    with pytest.raises(InputError, match="outside"):
        tiny_rec.reconstruct([REAL_SAMPLE], sampling=VideoSampling(fps=None, max_frames=2), intrinsics=KnownIntrinsics(900, 900, 3000, 180))


def test_known_intrinsics_are_used_for_unprojection_and_kept(tiny_rec):
    known = KnownIntrinsics(700.0, 690.0, 320.0, 180.0, (640, 360))
    recon = tiny_rec.reconstruct([REAL_SAMPLE], sampling=VideoSampling(fps=None, max_frames=2), intrinsics=known)
    h, w = recon.image_hw
    scale = w / 640  # crop mode: the picture is scaled to the width and cut in height
    k = recon.intrinsics[0]
    assert k[0, 0] == pytest.approx(700 * scale, rel=1e-5) and k[1, 1] == pytest.approx(690 * scale, rel=0.2)  # h: whole patches
    assert k[0, 2] == pytest.approx(320 * scale, rel=1e-5)
    # the world points are the depth unprojected with exactly these intrinsics
    v, u = h // 2, w // 3
    cam = recon.points_cam[0, v, u]
    assert cam[0] / cam[2] == pytest.approx((u + 0.5 - k[0, 2]) / k[0, 0], rel=1e-4)
    assert recon.metadata["intrinsics"]["fx"] == 700.0


def test_engine_options_that_do_not_apply_are_refused(capsys, tmp_path):
    for extra in (["--engine", "colmap", "--refine"], ["--engine", "colmap", "--window-size", "4"], ["--refine", "--nproc", "2"]):
        code, err = run_cli(["reconstruct", str(REAL_SAMPLE), *extra, "-o", str(tmp_path / "o")], capsys)
        assert_one_line_error(code, err)
        assert not (tmp_path / "o").exists()


# ---- scoring against COLMAP ---------------------------------------------------------------------------------------
def test_scores_are_perfect_against_itself_and_fall_with_error(classical):
    same = score(classical, classical)
    assert same["AUC@30"] == pytest.approx(1.0) and same["frames_within_5deg"] == 1.0
    assert same["depth_AbsRel"] < 0.005 and same["depth_delta<1.25"] > 0.99
    worse = perturbed(classical)
    worse.tracks = None
    result = score(worse, classical)
    assert result["RRA@5"] < 1.0 and result["AUC@30"] < same["AUC@30"]


def test_eval_against_colmap_on_the_real_sample(capsys, tmp_path):
    code, err = run_cli(
        ["eval", "--against", "colmap", str(REAL_SAMPLE), "--engine", "colmap", "--video-frames", "8", "--json", str(tmp_path / "e.json")],
        capsys,
    )
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["AUC@30"] == pytest.approx(1.0) and result["common_frames"] >= 7


def test_exif_focal_length_is_a_prior_in_pixels(tmp_path):
    from PIL import Image

    from zipmap_core.io.intrinsics import exif_prior

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm: a phone's wide camera
    Image.new("RGB", (400, 300), (90, 120, 150)).save(tmp_path / "p.jpg", exif=exif)
    k = exif_prior(tmp_path / "p.jpg", (400, 300))
    assert k is not None and not k.fixed
    assert k.fx == pytest.approx(28 / np.hypot(36, 24) * 500) and (k.cx, k.cy) == (200, 150)
    Image.new("RGB", (400, 300)).save(tmp_path / "plain.jpg")
    assert exif_prior(tmp_path / "plain.jpg", (400, 300)) is None


def test_a_cancel_during_global_mapping_stops_its_child_at_once():
    """Global mapping has no cancellation token: it runs in a child, which a cancel kills."""
    import os

    from zipmap_core.sfm.mapping import GLOBAL_FROM

    cancel = CancelToken()
    said = []

    def progress(name: str, done: int, total: int) -> None:
        said.append((name, done, total))
        if name == "mapping" and done == 0:
            cancel.cancel()

    options = ReconstructOptions(sampling=VideoSampling(fps=None, max_frames=GLOBAL_FROM), dense=False)
    with pytest.raises(Cancelled):
        ClassicalEngine().reconstruct([REAL_SAMPLE], options, progress, cancel)
    assert ("mapping", 0, GLOBAL_FROM) in said and ("mapping", GLOBAL_FROM, GLOBAL_FROM) not in said  # stopped, not run out
    children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()]
    assert not children, children


def _parent(pid: str) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_a_global_mapping_child_that_crashes_is_not_called_unregistrable(tmp_path, monkeypatch):
    """A killed or crashed mapper says so (auto falls back only where COLMAP found no overlap)."""
    from types import SimpleNamespace

    from zipmap_core.sfm import mapping

    monkeypatch.setattr(
        mapping,
        "_GLOBAL_CHILD",
        "import os, signal, sys\nprint('mapping 12 frames', file=sys.stderr, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n",
    )
    ws = SimpleNamespace(root=tmp_path, database=tmp_path / "db", image_dir=tmp_path, log=tmp_path / "log", cancel=CancelToken())
    with pytest.raises(mapping.MappingError, match="killed by SIGKILL: mapping 12 frames") as info:
        mapping.map_global(ws, 12, False, lambda *a: None)  # type: ignore[arg-type]
    assert not isinstance(info.value, mapping.NoOverlapError)
