"""Bad input and faults, as a careful user and an attacker would bring them: every case ends with
one clear line and exit 2 (no traceback), memory bounded by the real data, no corrupt file left
with exit 0, and the previous good outputs intact. Each test builds its own small fixture."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import resource
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error, run_cli, run_limited

from zipmap_core import cli
from zipmap_core.io.checkpoints import CheckpointError, load_checkpoint, save_model
from zipmap_core.io.reconstruction import Reconstruction, SceneFileError
from zipmap_core.model.config import tiny_config
from zipmap_core.model.zipmap import ZipMap

ROOT = Path(__file__).resolve().parents[1]


# ---- helpers (the shared fixtures recon, scene, photos and tiny_checkpoint are in conftest.py) ---------------
def rewrite(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of a scene with some members replaced (None: dropped), stored or deflated as given."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
            else:
                zout.writestr(info.filename, zin.read(info.filename))
        for name, data in replace.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return dst


def manifest_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("manifest.json"))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# ---- scene files --------------------------------------------------------------------------------------
def test_deflated_zero_bomb_in_arrays_is_refused_before_reading(tmp_path, scene, capsys):
    """A few GB of zeros deflate to a few MB: the declared size is compared with what the manifest's
    frames need, and nothing is decompressed."""
    bomb = tmp_path / "bomb.zipmap"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as npz:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**28,)})
        with npz.open("depth.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            zeros = bytes(2**24)
            for _ in range(64):  # 1 GiB of zeros
                fh.write(zeros)
    with zipfile.ZipFile(scene) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        zout.writestr("manifest.json", zin.read("manifest.json"))
        with zout.open("arrays.npz", "w", force_zip64=True) as fh:
            view = inner.getbuffer()
            for i in range(0, len(view), 2**24):
                fh.write(view[i : i + 2**24])
    assert bomb.stat().st_size < 8 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SceneFileError, match=r"declares .* bytes"):
        Reconstruction.load(bomb)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"
    code, err = run_cli(["export", str(bomb), "--format", "ply", "-o", str(tmp_path / "x.ply")], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "x.ply").exists()


def test_npy_header_declaring_559_gib_is_refused(tmp_path, scene, recon):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (3, 2**30, 50)})
    inner = io.BytesIO()
    arrays = {
        k: getattr(recon, k) for k in ("images", "extrinsics", "intrinsics", "depth_conf", "points_cam", "points_world", "original_wh")
    }
    with zipfile.ZipFile(inner, "w") as npz:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v)
            npz.writestr(f"{k}.npy", buf.getvalue())
        npz.writestr("depth.npy", header.getvalue() + bytes(64))
    bad = rewrite(scene, tmp_path / "huge.zipmap", {"arrays.npz": inner.getvalue()})
    with pytest.raises(SceneFileError, match="declares shape"):
        Reconstruction.load(bad)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: [m], "manifest is a list"),
        (lambda m: {k: v for k, v in m.items() if k != "names"}, "no list of frame names"),
        (lambda m: {**m, "version": None}, "version None"),
        (lambda m: {**m, "version": "1"}, "version '1'"),
        (lambda m: {**m, "image_hw": [28]}, "image size"),
        (lambda m: {**m, "names": m["names"][:2], "num_frames": 2}, "shape"),
        (lambda m: {**m, "metadata": []}, "'metadata' is not an object"),
        (lambda m: {**m, "state_scale": "big"}, "state_scale"),
    ],
)
def test_malformed_manifests_are_scene_file_errors(tmp_path, scene, capsys, change, message):
    bad = rewrite(scene, tmp_path / "bad.zipmap", {"manifest.json": json.dumps(change(manifest_of(scene))).encode()})
    with pytest.raises(SceneFileError, match=message):
        Reconstruction.load(bad)
    code, err = run_cli(["export", str(bad), "--format", "glb", "-o", str(tmp_path / "x.glb")], capsys)
    assert_one_line_error(code, err)


def test_arrays_whose_frame_counts_disagree_are_refused(tmp_path, scene, recon, capsys):
    arrays = {
        k: getattr(recon, k)
        for k in ("images", "extrinsics", "intrinsics", "depth", "depth_conf", "points_cam", "points_world", "original_wh")
    }
    arrays["depth"] = arrays["depth"][:2]
    bad = rewrite(scene, tmp_path / "bad.zipmap", {"arrays.npz": npz_bytes(arrays)})
    with pytest.raises(SceneFileError, match="depth has shape"):
        Reconstruction.load(bad)
    code, err = run_cli(["render", str(bad), "--orbit", "2", "-o", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "member, data, message",
    [
        ("arrays.npz", b"not a zip", "arrays.npz cannot be read"),
        ("arrays.npz", None, "no arrays.npz"),
        ("manifest.json", b"\xff\xfe{", "not JSON"),
        ("state.npz", npz_bytes({"layer0.w0": np.zeros((1, 2, 2), np.float32)}), "incomplete"),
        ("state.npz", npz_bytes({"evil": np.zeros(3)}), "unexpected scene-state entry"),
    ],
)
def test_damaged_members_are_scene_file_errors(tmp_path, recon, member, data, message):
    with_state = dataclasses.replace(recon, state=[{w: np.ones((1, 2, 2), np.float32) for w in ("w0", "w1", "w2")}])
    good = with_state.save(tmp_path / "good.zipmap")
    assert Reconstruction.load(good).state is not None
    bad = rewrite(good, tmp_path / "bad.zipmap", {member: data})
    with pytest.raises(SceneFileError, match=message):
        Reconstruction.load(bad)


def test_object_arrays_are_never_unpickled(tmp_path, scene, recon):
    arrays = {
        k: getattr(recon, k)
        for k in ("images", "extrinsics", "intrinsics", "depth", "depth_conf", "points_cam", "points_world", "original_wh")
    }
    arrays["depth"] = np.array([{"a": 1}] * 3, dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    bad = rewrite(scene, tmp_path / "bad.zipmap", {"arrays.npz": buf.getvalue()})
    with pytest.raises(SceneFileError, match="not numbers"):
        Reconstruction.load(bad)


# ---- checkpoints --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: torch.save({1: torch.zeros(2), 2: torch.ones(2)}, p), "not text"),
        (lambda p: torch.save({"a.weight": torch.zeros(2), 3: torch.ones(2)}, p), "not text"),
        (lambda p: torch.save([torch.zeros(2)], p), "list"),
        (lambda p: p.write_text("not a checkpoint"), "is not a readable PyTorch checkpoint"),
    ],
)
def test_odd_pt_files_are_checkpoint_errors(tmp_path, content, message, capsys):
    path = tmp_path / "odd.pt"
    content(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    code, err = run_cli(["info", str(path)], capsys)
    assert_one_line_error(code, err)


def test_malicious_pickle_is_refused_without_advice_to_unsafe_loading(tmp_path):
    path = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"w": Evil()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and "objects other than tensors" in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_truncated_safetensors_is_called_truncated(tmp_path, tiny_checkpoint):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_checkpoint.read_bytes()[: tiny_checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(cut)
    assert "objects other than tensors" not in str(info.value)


def test_full_disk_while_training_saves_is_a_write_error(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from zipmap_core.io import checkpoints
    from zipmap_core.io.atomic import WriteError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoints, "save_file", full)
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous model")
    with pytest.raises(WriteError, match="disk is full"):
        save_model(ZipMap(tiny_config()), target)
    assert target.read_bytes() == b"previous model" and os.listdir(tmp_path) == ["model.safetensors"]


# ---- outputs: published together, verified, re-runnable ----------------------------------------------------


def _reconstruct(photos: Path, out: Path, ckpt: Path, capsys, export: str = "ply,colmap") -> tuple[int, str]:
    return run_cli(
        ["reconstruct", str(photos), "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--export", export, "-q"], capsys
    )


def test_reconstruct_twice_into_one_folder_replaces_every_output(tmp_path, photos, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert _reconstruct(photos, out, tiny_checkpoint, capsys)[0] == 0
    first = Reconstruction.load(out / "scene.zipmap").timings["total_s"]
    (out / "notes.txt").write_text("the user's own file")
    code, err = _reconstruct(photos, out, tiny_checkpoint, capsys)
    assert code == 0, err
    assert Reconstruction.load(out / "scene.zipmap").timings["total_s"] != first  # the new run's scene
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["colmap", "notes.txt", "points.ply", "scene.zipmap"]
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    import pycolmap

    assert pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0")).num_images() == 3


def test_unknown_export_format_is_refused_before_any_work(tmp_path, photos, tiny_checkpoint, capsys):
    code, err = _reconstruct(photos, tmp_path / "out", tiny_checkpoint, capsys, export="ply,fbx")
    assert_one_line_error(code, err)
    assert "fbx" in err and "model:" not in err  # the model never ran
    assert not (tmp_path / "out").exists()


def test_second_run_into_a_busy_folder_fails_clearly(tmp_path, photos, tiny_checkpoint, capsys):
    from zipmap_core.io.atomic import OutputLock

    out = tmp_path / "out"
    with OutputLock(out):
        code, err = _reconstruct(photos, out, tiny_checkpoint, capsys)
    assert_one_line_error(code, err)
    assert "another zipmap run is writing" in err and not (out / "scene.zipmap").exists()


def test_full_disk_during_colmap_export_keeps_the_previous_export(tmp_path, scene):
    target = tmp_path / "colmap"
    good = run_limited(["export", str(scene), "--format", "colmap", "-o", str(target)], 2**30, ROOT)
    assert good.returncode == 0, good.stderr
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    full = run_limited(["export", str(scene), "--format", "colmap", "-o", str(target), "--percentile", "0"], 40_000, ROOT)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.strip().splitlines()[-1].startswith("zipmap: error: cannot write")
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([scene.name, "colmap"])  # no temporaries left


def test_a_video_that_does_not_read_back_never_replaces_the_old_render(tmp_path, recon, monkeypatch):
    from zipmap_core.io.atomic import WriteError
    from zipmap_core.pipeline.camera_path import VideoFile, orbit_path, render_path

    k = recon.intrinsics[0]
    folder = render_path(None, recon, orbit_path(recon, 3), k, recon.image_hw, tmp_path / "render")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    monkeypatch.setattr(VideoFile, "write", lambda self, frame: None)  # frames lost without an error
    with pytest.raises(WriteError, match="does not read back"):
        render_path(None, recon, orbit_path(recon, 4), k, recon.image_hw, folder)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_cancelled_render_keeps_the_old_frames_and_video(tmp_path, recon):
    from zipmap_core.cancel import Cancelled, CancelToken
    from zipmap_core.pipeline.camera_path import orbit_path, render_path

    k = recon.intrinsics[0]
    folder = render_path(None, recon, orbit_path(recon, 3), k, recon.image_hw, tmp_path / "render")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    token = CancelToken()
    with pytest.raises(Cancelled):
        render_path(None, recon, orbit_path(recon, 5)[::-1], k, recon.image_hw, folder, progress=lambda *a: token.cancel(), cancel=token)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_cancelling_while_loading_is_a_cancel(photos):
    from zipmap_core.cancel import Cancelled, CancelToken
    from zipmap_core.io.inputs import load_inputs

    with pytest.raises(Cancelled):
        token = CancelToken()
        token.cancel()
        load_inputs([photos], cancel=token)


def test_non_utf8_file_names_export_to_colmap(tmp_path, recon):
    import pycolmap

    from zipmap_core.io.exporters import export

    odd = os.fsdecode(b"caf\xe9_\xff.png")  # Latin-1 bytes, as old cameras and zip tools write
    named = dataclasses.replace(recon, names=[odd, "b.png", "c.png"])
    folder = export(named, "colmap", tmp_path / "colmap")
    back = pycolmap.Reconstruction(str(folder / "sparse" / "0"))
    assert back.num_images() == 3 and all((folder / "images" / im.name).exists() for im in back.images.values())


def test_export_modes_follow_the_user_and_the_replaced_file(tmp_path, recon):
    from zipmap_core.io.exporters import export

    umask = os.umask(0o022)
    try:
        folder = export(recon, "nerfstudio", tmp_path / "ns")
        assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
        ply = tmp_path / "points.ply"
        ply.write_bytes(b"old")
        ply.chmod(0o640)
        export(recon, "ply", ply)
        assert ply.stat().st_mode & 0o777 == 0o640 and ply.read_bytes() != b"old"
    finally:
        os.umask(umask)


def test_generate_publishes_whole_scenes_and_reruns(tmp_path, monkeypatch):
    from zipmap_core.training import scene_folders as synthetic

    out = tmp_path / "data"
    assert (
        cli.main(["generate", str(out), "--scenes", "2", "--views", "2", "--held-out", "0", "--width", "56", "--height", "42", "-q"]) == 0
    )
    assert (
        cli.main(["generate", str(out), "--scenes", "2", "--views", "2", "--held-out", "0", "--width", "56", "--height", "42", "-q"]) == 0
    )  # again into the same folder
    first = (out / "scene_0000" / "ground_truth.npz").read_bytes()
    real = synthetic.write_scene

    def dies_half_way(views, index, folder, held_out=0):
        real(views, index, folder, held_out)
        (Path(folder) / "cameras.json").unlink()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synthetic, "write_scene", dies_half_way)
    assert (
        cli.main(["generate", str(out), "--scenes", "1", "--views", "3", "--held-out", "0", "--width", "56", "--height", "42", "-q"]) == 2
    )
    assert (out / "scene_0000" / "ground_truth.npz").read_bytes() == first  # the old scene, whole
    assert (out / "scene_0000" / "cameras.json").exists() and sorted(os.listdir(out)) == ["scene_0000", "scene_0001"]


def test_a_benchmark_that_fails_while_writing_keeps_the_previous_json(tmp_path, monkeypatch, capsys):
    old = tmp_path / "scaling.json"
    old.write_text('{"previous": true}')
    from zipmap_core.bench import cli as bench_cli

    monkeypatch.setitem(bench_cli.BENCHMARKS, "scaling", lambda args: ("scaling", {"bad": object()}))
    # not serialisable: fails half-way through the dump, a bug of ours, so traceback and exit 3
    code, err = run_cli(["bench", "scaling", "-o", str(tmp_path)], capsys)
    assert code == 3 and "TypeError" in err and "internal error: this is a bug" in err.splitlines()[-1]
    assert old.read_text() == '{"previous": true}' and os.listdir(tmp_path) == ["scaling.json"]


def test_a_scene_larger_than_free_memory_is_refused_with_the_figures(scene, monkeypatch):
    from zipmap_core.io import scene_file

    assert Reconstruction.load(scene).num_frames == 3
    monkeypatch.setattr(scene_file, "available_memory", lambda: 1000)
    with pytest.raises(SceneFileError, match="GB of memory to open"):
        Reconstruction.load(scene)


def test_a_publication_that_fails_half_way_rolls_back_to_the_previous_outputs(tmp_path, monkeypatch):
    from zipmap_core.io import atomic

    out = tmp_path / "out"
    with atomic.Publication(out) as pub:
        pub.path("a.txt").write_text("old a")
        pub.path("b").mkdir()
        (pub.path("b") / "x").write_text("old b")
    real = os.replace

    def fails_on_b(src, dst):
        if Path(dst) == out / "b" and ".staging." in str(src) and ".old." not in str(src):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fails_on_b)
    with pytest.raises(atomic.WriteError, match="disk is full"):
        with atomic.Publication(out) as pub:
            pub.path("a.txt").write_text("new a")
            pub.path("b").mkdir()
            (pub.path("b") / "x").write_text("new b")
    assert (out / "a.txt").read_text() == "old a" and (out / "b" / "x").read_text() == "old b"
    assert sorted(p.name for p in out.iterdir()) == [".zipmap-output", "a.txt", "b"]
