"""The engine's API: checkpoint files, the CLI, scene files, chunking, streaming, cancellation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from golden import golden_model, rel_rms
from safetensors.torch import save_file

from zipmap_core import cli
from zipmap_core.cancel import Cancelled, CancelToken
from zipmap_core.io.checkpoints import (
    CheckpointError,
    convert,
    detect_variant,
    load_checkpoint,
    save_model,
)
from zipmap_core.io.download import DownloadError, download_official, resolve_checkpoint
from zipmap_core.io.reconstruction import Reconstruction, SceneFileError
from zipmap_core.pipeline.reconstructor import Reconstructor
from zipmap_core.resources import BUNDLED_MODEL, SAMPLE_SCENE
from zipmap_core.training.scene_folders import write_scene
from zipmap_core.training.synthetic import generate


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    write_scene(generate(1, 5, 123, (84, 112)), 0, folder, held_out=1)
    return folder


def _images(folder):
    return sorted((folder / "images").glob("*.png"))


# ---- checkpoints -------------------------------------------------------------------------------------
def test_official_layout_pt_to_safetensors_gives_same_outputs(tmp_path):
    model, meta, t = golden_model("main_reference_view")
    pt = tmp_path / "checkpoint_with_ref_view.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, pt)  # the authors' training-checkpoint shape
    st = tmp_path / "converted.safetensors"
    loaded = convert(pt, st, config=model.cfg)
    assert loaded.variant == "with_ref_view"
    again = load_checkpoint(st)
    assert again.metadata["format"] == "zipmap-studio" and again.variant == "with_ref_view"
    with torch.no_grad():
        a = model(t["input.images"], window_size=0)
        b = again.model(t["input.images"], window_size=0)
    for key in ("depth", "depth_conf", "pose_enc", "local_points"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert rel_rms(b.depth, t["out.depth"]) <= meta["rel_rms_tolerance"]["out.depth"]


def test_variant_detection_from_keys():
    assert detect_variant({"nvs_head.x", "camera_head.y"}) == "state_query"
    assert detect_variant({"camera_mlp_head.x"}) == "online"
    assert detect_variant({"camera_head.x"}, "checkpoint_with_ref_view.pt") == "with_ref_view"
    assert detect_variant({"camera_head.x"}, "checkpoint_aff_inv.pt") == "aff_inv"


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_model):
    pt = tmp_path / "cut.pt"
    torch.save(tiny_model.state_dict(), pt)
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(pt)


def test_foreign_and_mismatched_files_say_what_was_found(tmp_path, tiny_model):
    junk = tmp_path / "notes.pt"
    junk.write_bytes(b"hello, this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"notes\.pt"):
        load_checkpoint(junk)
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a ZipMap Studio model"):
        load_checkpoint(foreign)
    small = tmp_path / "checkpoint_aff_inv.pt"
    torch.save({"model": tiny_model.state_dict()}, small)  # right names, wrong (tiny) shapes
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(small)
    text = str(err.value)
    assert "official 'state_query' checkpoint" in text and "shape mismatches" in text and "expected [" in text
    assert "missing keys" in text  # the tiny model lacks most of the full model's blocks
    pickled = tmp_path / "objects.pt"
    torch.save({"model": {"a": torch.zeros(1)}, "cfg": {"x": object.__new__(Reconstructor)}}, pickled)
    with pytest.raises(CheckpointError):
        load_checkpoint(pickled)


def test_newer_model_format_is_refused(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "future.safetensors", extra={"format_version": "99"})
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_half_precision_file_loads_as_float32(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert path.stat().st_size < 0.6 * save_model(tiny_model, tmp_path / "full.safetensors").stat().st_size
    model = load_checkpoint(path).model
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DownloadError, match="offline"):
        download_official("state_query", cache_dir=tmp_path)


def test_an_official_checkpoint_is_one_step_away_and_comes_from_the_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--coast01--ZipMap"  # the layout huggingface_hub caches a download in
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "checkpoint_aff_inv.pt").write_bytes(b"weights")
    assert resolve_checkpoint("official:aff_inv") == snapshot / "checkpoint_aff_inv.pt"
    with pytest.raises(DownloadError, match="offline"):
        resolve_checkpoint("official")  # state_query by default; not cached here
    with pytest.raises(DownloadError, match="unknown variant"):
        resolve_checkpoint("official:nope")
    assert resolve_checkpoint(None) == BUNDLED_MODEL and resolve_checkpoint("my.pt") == Path("my.pt")


def test_the_cli_says_when_the_bundled_model_is_a_demonstration(tmp_path, capsys):
    two = sorted((SAMPLE_SCENE / "images").glob("*.png"))[:2]
    assert cli.main(["reconstruct", *map(str, two), "-o", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert "demonstration model" in capsys.readouterr().err
    assert cli.main(["reconstruct", *map(str, two), "-o", str(tmp_path / "b"), "--device", "cpu", "-q"]) == 0
    assert "demonstration model" not in capsys.readouterr().err


# ---- model behaviour -----------------------------------------------------------------------------
def test_chunked_ttt_update_equals_unchunked(tiny_model):
    images = generate(1, 6, 5, (56, 112)).images
    with torch.no_grad():
        whole = tiny_model(images, window_size=0)
        chunked = tiny_model(images, window_size=0, chunk_frames=2)
    assert rel_rms(chunked.depth, whole.depth) < 1e-5
    for a, b in zip(whole.states, chunked.states):
        for key in a:
            assert rel_rms(b[key], a[key]) < 1e-5, key


@pytest.mark.parametrize("bf16_units", [False, True], ids=["cpu-without-bf16-units", "cpu-with-bf16-units"])
def test_fast_cpu_bf16_is_opt_in_scoped_and_rounds_like_bf16_hardware(monkeypatch, bf16_units):
    from zipmap_core import device
    from zipmap_core.model import ttt

    calls = []
    route = ttt._bf16_matmul_via_float32
    monkeypatch.setattr(ttt, "_bf16_matmul_via_float32", lambda x, y: calls.append(1) or route(x, y))
    monkeypatch.setattr(device, "cpu_has_bf16_units", lambda: bf16_units)
    g = torch.randn(3, 64, 160, generator=torch.Generator().manual_seed(0))
    exact = ttt.newton_schulz(g, 5)
    assert exact.dtype == torch.bfloat16 and not calls
    with device.fast_cpu_bf16():
        fast = ttt.newton_schulz(g, 5)
    assert torch.equal(ttt.newton_schulz(g, 5), exact)  # the flag ends with its block
    assert rel_rms(fast, exact) < 3e-2  # the TTT parity tolerance
    if bf16_units:
        assert not calls and torch.equal(fast, exact)  # hardware bf16 is fast already: no detour
    else:
        assert len(calls) == 15  # three products per step, five steps: the route was taken
        # by hand: bf16 operands, float32 products and sums, one rounding of each product
        a, b, c = ttt.NS_COEFFICIENTS
        x = g.to(torch.bfloat16)  # wide: no transpose
        x = x / (x.norm(dim=(1, 2), keepdim=True) + 1e-7)
        for _ in range(5):
            gram = (x.float() @ x.transpose(1, 2).float()).bfloat16()
            poly = b * gram + ((c * gram).float() @ gram.float()).bfloat16()
            x = a * x + (poly.float() @ x.float()).bfloat16()
        assert torch.equal(fast, x)


@pytest.mark.parametrize(
    "flags, isa_cap, expected",
    [
        ({"avx2", "fma"}, None, False),  # AVX2 only
        ({"avx512f", "avx512bw"}, None, False),  # AVX-512 without bf16: torch says "AVX512" here too
        ({"avx512f", "avx512_bf16"}, None, True),  # Cooper Lake, Zen 4 and later
        ({"avx512f", "amx_bf16", "amx_tile"}, None, True),  # Sapphire Rapids
        ({"avx512f", "avx512_bf16"}, "AVX2", False),  # oneDNN capped to AVX2 emulates bf16
        ({"avx512f", "avx512_bf16"}, "avx512_core", False),
        ({"avx512f", "avx512_bf16"}, "AVX512_CORE_BF16", True),
    ],
)
def test_bf16_unit_detection_reads_cpu_flags_and_the_onednn_cap(flags, isa_cap, expected):
    from zipmap_core.device import bf16_units_from

    assert bf16_units_from(flags, isa_cap) is expected


def test_bf16_unit_detection_follows_the_kernel_cap_of_this_process():
    """The same answer PyTorch's kernels act on: capped to AVX2, no CPU has bf16 units."""
    from zipmap_core import device

    code = "from zipmap_core.device import cpu_has_bf16_units as f; print(f())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    flags = device._cpu_flags()
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(bool(flags & {"avx512_bf16", "amx_bf16"}))


def test_streaming_session_matches_one_windowed_call(tiny_model, scene_dir):
    rec = Reconstructor(tiny_model, "cpu")
    from zipmap_core.io.inputs import load_inputs

    frames = load_inputs(_images(scene_dir)).frames
    session = rec.stream(window_size=2)
    session.add(frames[:2])
    grown = session.add(frames[2:4])
    assert grown.num_frames == 4
    whole = rec.reconstruct(_images(scene_dir)[:4], window_size=2)
    # a new call restarts the column norms of the TTT update from the carried state (as the reference
    # does), so the two orders agree closely but not bit for bit
    np.testing.assert_allclose(grown.depth, whole.depth, rtol=5e-3, atol=1e-5)
    np.testing.assert_allclose(grown.extrinsics, whole.extrinsics, atol=1e-2)


def test_reconstruction_geometry_is_consistent(tiny_model, scene_dir):
    progress = []
    recon = Reconstructor(tiny_model, "cpu").reconstruct(_images(scene_dir), progress=lambda *a: progress.append(a))
    stages = {p[0] for p in progress}
    assert {"preprocess", "encoder", "aggregator", "heads", "done"} <= stages
    np.testing.assert_allclose(recon.extrinsics[0], np.eye(4)[:3], atol=1e-5)
    # world points are the camera points moved by the cameras
    c2w = recon.cam_to_world
    p = recon.points_cam[2] @ c2w[2, :3, :3].T + c2w[2, :3, 3]
    np.testing.assert_allclose(p, recon.points_world[2], rtol=1e-4, atol=1e-4)
    assert recon.state is not None and recon.timings["per_frame_s"] > 0


def test_point_head_runs_only_when_points_come_from_it(tiny_model, scene_dir):
    images = torch.rand(1, 3, 3, 56, 112)
    with torch.no_grad():
        full = tiny_model(images, window_size=0)
        lean = tiny_model(images, window_size=0, point_head=False)
    assert lean.local_points is None and full.local_points is not None
    for key in ("depth", "depth_conf", "pose_enc"):
        assert torch.equal(getattr(full, key), getattr(lean, key)), key
    rec = Reconstructor(tiny_model, "cpu")
    from_depth = rec.reconstruct(_images(scene_dir))
    from_head = rec.reconstruct(_images(scene_dir), points_from="point_head")
    np.testing.assert_allclose(from_head.depth, from_depth.depth, atol=1e-6)
    assert np.abs(from_head.points_cam - from_depth.points_cam).max() > 1e-3  # the head's own point map
    ran = []
    with pytest.raises(ValueError, match="points_from must be one of depth, point_head"):
        rec.reconstruct(_images(scene_dir), points_from="mesh", progress=lambda *a: ran.append(a))
    assert not ran  # refused before any work


def test_cancel_raises_and_keeps_nothing(tiny_model, scene_dir):
    token = CancelToken()

    def progress(stage, done, total):
        if stage == "aggregator" and done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        Reconstructor(tiny_model, "cpu").reconstruct(_images(scene_dir), progress=progress, cancel=token)


def test_render_views_returns_rgb_depth_confidence(tiny_model, scene_dir):
    rec = Reconstructor(tiny_model, "cpu")
    recon = rec.reconstruct(_images(scene_dir))
    views = rec.render_views(recon, recon.cam_to_world[:2], recon.intrinsics[:2], recon.image_hw)
    assert views.rgb.shape == (2, *recon.image_hw, 3) and views.depth.shape == (2, *recon.image_hw)
    assert (views.rgb >= 0).all() and (views.rgb <= 1).all() and (views.depth > 0).all()
    with pytest.raises(ValueError, match="multiple of 14"):
        rec.render_views(recon, recon.cam_to_world[:1], recon.intrinsics[:1], (50, 50))


# ---- CLI and scene files -------------------------------------------------------------------------
def test_cli_reconstruct_writes_a_scene_that_reloads_identically(tmp_path, tiny_checkpoint, scene_dir, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "reconstruct",
            str(scene_dir / "images"),
            "-o",
            str(out),
            "--checkpoint",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--mode",
            "pad",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    scene = Reconstruction.load(out / "scene.zipmap")
    direct = Reconstructor.from_checkpoint(tiny_checkpoint, "cpu").reconstruct(_images(scene_dir), mode="pad")
    assert scene.names == direct.names
    for name in ("images", "extrinsics", "intrinsics", "depth", "depth_conf", "points_world"):
        np.testing.assert_allclose(getattr(scene, name), getattr(direct, name), rtol=1e-5, atol=1e-6, err_msg=name)
    assert scene.state is not None and len(scene.state) == len(direct.state)
    # saving the loaded scene again is lossless
    again = Reconstruction.load(scene.save(tmp_path / "again.zipmap"))
    for name in ("extrinsics", "depth", "points_world"):
        assert np.array_equal(getattr(again, name), getattr(scene, name))


def test_cli_reports_bad_inputs_without_traceback(tmp_path, tiny_checkpoint, scene_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(["reconstruct", str(empty), "-o", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "zipmap: error:" in err and "Traceback" not in err
    images = str(_images(scene_dir)[0])  # inputs that are there: the missing checkpoint is what is said
    code = cli.main(["reconstruct", images, "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "nope.pt")])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "o" / "scene.zipmap").exists()


def test_damaged_and_newer_scene_files(tmp_path, tiny_model, scene_dir):
    recon = Reconstructor(tiny_model, "cpu").reconstruct(_images(scene_dir)[:2])
    path = recon.save(tmp_path / "s.zipmap")
    cut = tmp_path / "cut.zipmap"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SceneFileError, match="damaged"):
        Reconstruction.load(cut)
    newer = tmp_path / "newer.zipmap"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "manifest.json":
                manifest = json.loads(data)
                manifest["version"] = 7
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    with pytest.raises(SceneFileError, match="newer"):
        Reconstruction.load(newer)


def test_failed_write_leaves_no_partial_file(tmp_path, tiny_model, scene_dir, monkeypatch):
    recon = Reconstructor(tiny_model, "cpu").reconstruct(_images(scene_dir)[:2])
    target = tmp_path / "scene.zipmap"
    import zipmap_core.io.scene_file as rmod

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rmod, "_write_npz", full_disk)
    from zipmap_core.io.atomic import WriteError

    with pytest.raises(WriteError, match="disk is full"):
        recon.save(target)
    assert os.listdir(tmp_path) == []


def test_benchmarks_run_and_report_what_they_measured(tmp_path):
    """The bench commands are what README figures come from: they must keep running."""
    from zipmap_core.bench import micro as bench

    ns = bench.newton_schulz_routes((1, 32, 64), threads=1)
    assert set(ns["seconds"]) == {"bf16_native", "bf16_fast", "float32"} and min(ns["seconds"].values()) > 0
    full = bench.full_config("tiny", 2, (28, 42), "cpu", threads=1)
    assert full["per_frame_s"] == pytest.approx(full["seconds"] / 2) and full["peak_rss_gb"] > 0
    assert cli.main(["bench", "query", "--skip-full", "--repeats", "1", "--threads", "1", "-o", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "query.json").read_text())
    assert [r["config"] for r in rows] == ["small"] and len(rows[0]["times"]) == 1 and rows[0]["seconds"] > 0


def test_progress_bars_show_counts_and_no_made_up_rate(capsys):
    bar = cli.StageBar()
    for done in range(5):
        bar("encoder", done, 4)
    bar.close()
    err = capsys.readouterr().err
    assert "encoder" in err and "4/4" in err and "/s" not in err and "step" not in err


# ---- quiet runs (issue 20, item 7) ----------------------------------------------------------------------
def test_progress_bars_count_stages_without_a_made_up_rate(tmp_path, capsys):
    two = sorted((SAMPLE_SCENE / "images").glob("*.png"))[:2]
    assert cli.main(["reconstruct", *map(str, two), "-o", str(tmp_path / "a"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err  # not a terminal: one line a stage, with its count
    assert re.search(r"aggregator: (\d+)/\1 \[", err) and re.search(r"encoder: (\d+)/\1 \[", err), err
    assert "/s]" not in err and "step/s" not in err and "it/s" not in err


def test_the_licence_is_an_spdx_string_so_setuptools_does_not_warn():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str) and project["license"] == "Apache-2.0"


def test_progress_written_to_a_log_is_one_line_a_stage_and_a_terminal_gets_bars():
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, tty = io.StringIO(), Terminal()
    for stream in (log, tty):
        bar = cli.StageBar(stream=stream)
        for stage in ("load", "encoder"):
            for done in range(4):
                bar(stage, done, 3)
        bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[0].split(":")[0].strip() == "load" and "3/3" in lines[1] and lines[1].strip().startswith("encoder")
    assert "\r" in tty.getvalue()  # a terminal's bar redraws in place


def test_the_evaluation_table_counts_scenes_in_words():
    from zipmap_core.training.evaluation import format_table

    one = format_table({"model": "ZipMap 'small' trained on procedural scenes", "scenes": 1, "mean": {}})
    assert one.splitlines()[0] == "ZipMap 'small' trained on procedural scenes: scored on 1 scene"
    assert "scored on 2 scenes" in format_table({"model": "m", "scenes": 2, "mean": {}})
