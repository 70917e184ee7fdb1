"""The last internal errors and misleading messages of the hostile-case run (issue 37), each now a
one-line refusal at the point where the input enters, saying what the thing is and what is wrong."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from clitools import assert_one_line_error, run_cli, run_limited

from zipmap_core.io.exporters import export, image_file_names
from zipmap_core.io.files import MAX_STEM_BYTES


@pytest.fixture()
def behind(tmp_path, recon):
    """`recon` with every depth negative: no point in front of any camera."""
    derived = {"points_cam": None, "points_world": None, "points_from_depth": True}
    return dataclasses.replace(recon, depth=-np.abs(recon.depth), **derived).save(tmp_path / "behind.zipmap")


@pytest.mark.parametrize("fmt, name", [("glb", "s.glb"), ("ply", "p.ply")])
def test_a_scene_with_no_point_in_front_of_its_cameras_is_said_by_the_exporter(behind, tmp_path, capsys, fmt, name):
    code, err = run_cli(["export", str(behind), "--format", fmt, "-o", str(tmp_path / name)], capsys)
    assert_one_line_error(code, err)
    assert "no point in front of its cameras" in err and not (tmp_path / name).exists()


def test_a_camera_only_nerfstudio_export_of_such_a_scene_has_no_point_cloud(behind, tmp_path, capsys):
    code, err = run_cli(["export", str(behind), "--format", "nerfstudio", "-o", str(tmp_path / "ns")], capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "ns" / "transforms.json").read_text())
    assert "ply_file_path" not in meta and len(meta["frames"]) == 3


def test_a_mesh_voxel_too_small_for_the_scene_is_refused_with_the_smallest_that_fits(scene, tmp_path, capsys):
    code, err = run_cli(["export", str(scene), "--format", "mesh", "--voxel-size", "1e-30", "-o", str(tmp_path / "m.ply")], capsys)
    assert_one_line_error(code, err)
    assert "voxels; choose a voxel size of at least" in err and not (tmp_path / "m.ply").exists()


def test_a_camera_file_with_a_zero_focal_length_is_refused(scene, recon, tmp_path, capsys):
    k = recon.intrinsics[0].copy()
    k[0, 0] = 0.0
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps({"c2w": recon.cam_to_world[:1].tolist(), "intrinsics": k.tolist()}))
    code, err = run_cli(["render", str(scene), "--c2w", str(cams), "-o", str(tmp_path / "r"), "--source", "points"], capsys)
    assert_one_line_error(code, err)
    assert "focal" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["fifo", "loop"])
def test_a_pipe_or_a_looping_link_given_as_a_picture_is_named_for_what_it_is(tmp_path, capsys, kind):
    thing = tmp_path / "thing.png"
    if kind == "fifo":
        os.mkfifo(thing)
    else:
        os.symlink(tmp_path / "other.png", thing)
        os.symlink(thing, tmp_path / "other.png")
    code, err = run_cli(["reconstruct", str(thing), "-o", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err)
    assert ("a named pipe (FIFO)" if kind == "fifo" else "a symbolic link that loops") in err and "no such file" not in err


def test_an_output_below_a_file_names_the_file(photos, tmp_path, capsys, tiny_checkpoint):
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" / "sub" / "out"
    code, err = run_cli(["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "-q"], capsys)
    assert_one_line_error(code, err)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err and (tmp_path / "afile").read_text() == "mine"


def test_a_disk_that_fills_during_a_render_is_said_so(scene, tmp_path):
    done = run_limited(["render", str(scene), "-o", str(tmp_path / "r"), "--orbit", "4", "--source", "points"], 40_000, tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "disk is full" in last and "requested and" not in last and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fmt", ["colmap", "nerfstudio"])
def test_frame_names_too_long_for_the_file_system_are_shortened_in_exports(recon, tmp_path, fmt):
    long = ["é" * 200 + f"_{i}.png" for i in range(recon.num_frames)]
    named = dataclasses.replace(recon, names=long)
    export(named, fmt, tmp_path / fmt)
    written = sorted(p.name for p in (tmp_path / fmt / "images").iterdir())
    assert len(written) == recon.num_frames and len(set(written)) == recon.num_frames  # still one each
    assert all(len(n.encode()) <= MAX_STEM_BYTES + len(".png") for n in written)
    assert written == sorted(image_file_names(named))
