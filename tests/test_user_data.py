"""Outputs own only what they wrote (issue 25): folder exports, renders and reconstructions refuse,
by name, any file of the user's in their way and change nothing; re-runs replace ZipMap's own
outputs; a killed run's temporaries are cleared by the next; no lock file stays; SIGTERM unwinds
like Ctrl+C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import assert_one_line_error, run_cli
from PIL import Image

from zipmap_core.io import atomic

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def users_project(folder: Path) -> dict[str, bytes]:
    """A folder of the user's: their photos under images/ and a note."""
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 10, 10)).save(folder / "images" / "IMG_0001.JPG")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(folder / "images" / "view_000.png")  # a frame's name
    (folder / "notes.txt").write_text("the user's own notes")
    return snapshot(folder)


@pytest.mark.parametrize("fmt", ["colmap", "nerfstudio"])
def test_a_folder_export_never_touches_a_users_folder(tmp_path, scene, capsys, fmt):
    target = tmp_path / "myproject"
    before = users_project(target)
    code, err = run_cli(["export", str(scene), "--format", fmt, "-o", str(target), "-q"], capsys)
    assert_one_line_error(code, err)
    assert "ZipMap did not write" in err and "IMG_0001.JPG" in err
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.zipmap", "myproject"]  # no temporaries


def test_a_zipmap_export_is_replaced_but_not_a_file_the_user_added_to_it(tmp_path, scene, capsys):
    target = tmp_path / "colmap"
    assert run_cli(["export", str(scene), "--format", "colmap", "-o", str(target), "-q"], capsys)[0] == 0
    assert run_cli(["export", str(scene), "--format", "colmap", "-o", str(target), "-q", "--text"], capsys)[0] == 0
    assert (target / "sparse" / "0" / "cameras.txt").exists() and not (target / "sparse" / "0" / "cameras.bin").exists()
    (target / "images" / "my_edit.png").write_bytes(b"the user's retouched frame")
    before = snapshot(target)
    code, err = run_cli(["export", str(scene), "--format", "colmap", "-o", str(target), "-q"], capsys)
    assert_one_line_error(code, err)
    assert "images/my_edit.png" in err and snapshot(target) == before


def test_a_render_never_removes_a_file_in_its_folder(tmp_path, recon):
    from zipmap_core.pipeline.camera_path import orbit_path, render_path

    folder = tmp_path / "render"
    (folder / "frames").mkdir(parents=True)
    (folder / "frames" / "notes.txt").write_text("mine")
    with pytest.raises(atomic.WriteError, match=r"holds files ZipMap did not write \(notes\.txt\)"):
        render_path(None, recon, orbit_path(recon, 3), recon.intrinsics[0], recon.image_hw, folder)
    assert snapshot(folder) == {"frames/notes.txt": b"mine"}
    (folder / "frames" / "notes.txt").unlink()
    (folder / "frames").rmdir()
    render_path(None, recon, orbit_path(recon, 3), recon.intrinsics[0], recon.image_hw, folder)
    (folder / "frames" / "notes.txt").write_text("added later")
    with pytest.raises(atomic.WriteError, match=r"notes\.txt"):
        render_path(None, recon, orbit_path(recon, 4), recon.intrinsics[0], recon.image_hw, folder)
    assert (folder / "frames" / "notes.txt").read_text() == "added later"


def test_reconstruct_refuses_a_users_folder_among_its_outputs_before_the_model_runs(tmp_path, photos, tiny_checkpoint, capsys):
    out = tmp_path / "D"
    (out / "colmap").mkdir(parents=True)
    (out / "colmap" / "notes.txt").write_text("mine")
    code, err = run_cli(
        ["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--export", "colmap", "-q"],
        capsys,
    )
    assert_one_line_error(code, err)
    assert "colmap" in err and "notes.txt" in err
    assert snapshot(out) == {"colmap/notes.txt": b"mine"}


def test_reconstruct_replaces_its_own_outputs_and_leaves_no_lock_file(tmp_path, photos, tiny_checkpoint, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "scene.zipmap").write_bytes(b"a file of the user's that happens to have our name")
    args = ["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q", "--export", "ply"]
    code, err = run_cli(args, capsys)
    assert_one_line_error(code, err)
    assert "scene.zipmap" in err and (out / "scene.zipmap").read_bytes().startswith(b"a file of the user's")
    (out / "scene.zipmap").unlink()
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args, capsys)[0] == 0  # a re-run replaces what the first one wrote
    assert sorted(p.name for p in out.iterdir()) == [".zipmap-output", "points.ply", "scene.zipmap"]
    assert set(atomic.owned(out) or ()) == {"points.ply", "scene.zipmap"}


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_temporaries_are_cleared_by_the_next_run(tmp_path, photos, tiny_checkpoint, capsys):
    out = tmp_path / "D"
    out.mkdir()
    gone = dead_pid()
    (out / f".staging.{gone}.abcd").mkdir()
    (out / f".staging.{gone}.abcd" / "scene.zipmap").write_bytes(b"half")
    (out / f".points.ply.{gone}.x1y2.part.ply").write_bytes(b"half")
    (out / ".zipmap.lock").write_text("")  # earlier versions' lock file
    alive = out / f".points.ply.{os.getppid()}.z9.part.ply"  # a live writer's: kept
    alive.write_bytes(b"in progress")
    code, err = run_cli(
        ["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q", "--export", "ply"],
        capsys,
    )
    assert code == 0, err
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == sorted([".zipmap-output", alive.name])


def test_an_old_output_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    folder = tmp_path / "export"
    aside = tmp_path / f".export.{dead_pid()}.q1w2.old"
    aside.mkdir()
    (aside / "x.txt").write_text("previous export")
    atomic.clear_stale(tmp_path, "export")
    assert (folder / "x.txt").read_text() == "previous export" and not aside.exists()


def test_sigterm_unwinds_like_ctrl_c_and_keeps_the_previous_outputs(tmp_path, photos, tiny_checkpoint):
    out = tmp_path / "D"
    args = ["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q"]
    script = f"""
import os, signal, sys, time
from zipmap_core import cli
from zipmap_core.pipeline.reconstructor import Reconstructor
if sys.argv[1] == "term":
    def terminated(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    Reconstructor.run = terminated
sys.exit(cli.main({args!r}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run([sys.executable, "-c", script, "ok"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    term = subprocess.run([sys.executable, "-c", script, "term"], capture_output=True, text=True, env=env, timeout=300)
    assert term.returncode == 143 and term.stderr.strip().splitlines()[-1] == "terminated", term.stderr
    assert "Traceback" not in term.stderr
    assert snapshot(out) == before and not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_a_colmap_model_truncated_by_a_full_disk_is_refused_within_bounded_memory(tmp_path, recon):
    """A points3D.bin cut short, with a track that declares 2^40 elements: pycolmap would
    allocate it; the read-back child is capped and the export refused, nothing published."""
    import struct

    import pycolmap

    from zipmap_core.io import exporters

    real = pycolmap.Reconstruction.write_binary

    def torn(self, path):
        real(self, path)
        points = Path(path) / "points3D.bin"
        data = points.read_bytes()
        # first point: id (8), xyz (24), rgb (3), error (8), then its track length (8)
        cut = 8 + 8 + 24 + 3 + 8
        points.write_bytes(data[:cut] + struct.pack("<Q", 1 << 40) + data[cut + 8 : cut + 24])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pycolmap.Reconstruction, "write_binary", torn)
        with pytest.raises(atomic.WriteError, match="does not read back"):
            exporters.export(recon, "colmap", tmp_path / "colmap")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["colmap", "nerfstudio"])
def test_frame_names_no_file_system_takes_are_renamed_in_exports(tmp_path, recon, fmt):
    import dataclasses

    from zipmap_core.io.exporters import export

    odd = dataclasses.replace(recon, names=["..jpg", "a\x00b.png", ".hidden.jpg"])
    folder = export(odd, fmt, tmp_path / fmt)
    written = sorted(p.name for p in (folder / "images").iterdir())
    assert written == ["a_b.png", "frame_0000.png", "hidden.png"]


def test_inputs_that_are_not_there_are_said_before_the_model_loads(tmp_path, tiny_checkpoint, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(
        [
            "reconstruct",
            str(tmp_path / "nowhere"),
            str(empty),
            "-o",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert_one_line_error(code, err)
    assert "nowhere: no such file or folder" in err and "empty: folder contains no images" in err
    assert "model:" not in err and not (tmp_path / "o").exists()
