"""Nothing unbounded, nothing non-finite (issue 25): small inputs cannot make us allocate
gigabytes (pictures, checkpoint configs, render sizes and counts), every option is range-checked
while the command line is parsed, and NaN or infinity is refused where it enters (checkpoints,
scene files, camera files, model outputs), naming the array and the frame."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error, run_cli
from PIL import Image
from safetensors.torch import save_file

from zipmap_core.io.checkpoints import FORMAT_NAME, CheckpointError, load_checkpoint, save_model
from zipmap_core.io.reconstruction import Reconstruction, SceneFileError
from zipmap_core.model.config import ZipMapConfig, tiny_config
from zipmap_core.model.zipmap import ZipMap

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_with_config(path: Path, config) -> Path:
    """A small safetensors file whose metadata declares `config` (any JSON value)."""
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": FORMAT_NAME, "format_version": "1", "config": json.dumps(config)})
    return path


# ---- checkpoints -------------------------------------------------------------------------------------
def _huge(key: str, value):
    cfg = tiny_config().to_dict()
    section, _, name = key.rpartition(".")
    (cfg[section] if section else cfg)[name] = value
    return cfg


@pytest.mark.parametrize(
    "config, message",
    [
        (_huge("aggregator.depth", 100_000), "aggregator.depth is 100000, outside 1..64"),
        (_huge("img_size", 14_000), "img_size is 14000, outside 14..1036"),
        (_huge("embed_dim", "wide"), "embed_dim is 'wide', not int"),
        (None, "NoneType, not a mapping"),
        ([1, 2], "list, not a mapping"),
        (_huge("aggregator", None), "aggregator is NoneType, not a section"),
        ({**tiny_config().to_dict(), "colour": "blue"}, "unknown settings colour in ZipMapConfig"),
        (_huge("camera_head.kind", "laser"), "camera_head.kind is 'laser'"),
        (_huge("aggregator.warp_drive", True), "unknown settings warp_drive in AggregatorConfig"),
    ],
)
def test_a_checkpoint_config_is_checked_before_anything_is_sized_by_it(tmp_path, config, message, capsys):
    path = checkpoint_with_config(tmp_path / "odd.safetensors", config)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="has a config that cannot be used") as info:
        load_checkpoint(path)
    assert message in str(info.value) and time.perf_counter() - start < 5
    code, err = run_cli(["info", str(path)], capsys)
    assert_one_line_error(code, err)


def test_every_shipped_configuration_passes_its_own_checks():
    from zipmap_core.model.config import OFFICIAL_CONFIGS, small_config

    for cfg in [small_config(), tiny_config(), *OFFICIAL_CONFIGS.values()]:
        assert cfg.problems() == [], cfg.name
        assert ZipMapConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_a_checkpoint_with_nan_weights_is_refused_by_name(tmp_path):
    model = ZipMap(tiny_config()).eval()
    with torch.no_grad():
        model.camera_head.trunk[0].mlp.fc1.weight[0, 0] = float("nan")
    path = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in 1 tensors \(camera_head.trunk.0.mlp.fc1.weight\)"):
        load_checkpoint(path)


# ---- pictures ----------------------------------------------------------------------------------------
def test_small_hostile_pictures_are_skipped_by_name_in_bounded_memory(tmp_path):
    """A 1-bit 13,400 px square PNG (tens of KB, 180 M pixels) and a 1x30,000 strip beside a real
    photo: both refused with a reason, the photo kept, and the whole load stays under 1 GB."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.new("1", (13_400, 13_400)).save(folder / f"bomb{i}.png")
    Image.new("RGB", (1, 30_000), (9, 9, 9)).save(folder / "strip.png")
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(folder / "photo.png")
    assert max(p.stat().st_size for p in folder.iterdir()) < 1 << 20
    script = f"""
import json
from zipmap_core.io.inputs import Preparation, load_inputs
r = load_inputs([{str(folder)!r}], prepare=Preparation("crop", 112))
# VmHWM: this process's own peak (ru_maxrss can carry the forking parent's across exec)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"frames": r.names(), "skipped": r.skipped, "peak_mb": peak / 1024}}))
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["frames"] == ["photo.png"]
    reasons = dict(result["skipped"])
    assert all("decompression bomb" in reasons[f"bomb{i}.png"] for i in range(3))
    assert "too tall for crop mode" in reasons["strip.png"] and "--mode pad" in reasons["strip.png"]
    assert result["peak_mb"] < 1024, result["peak_mb"]


def test_a_tall_strip_is_taken_in_pad_mode():
    from zipmap_core.io.inputs import Preparation

    assert Preparation("pad", 112).size_for(1, 30_000) == (14, 112)


# ---- options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option",
    [
        (["reconstruct", "x", "-o", "y", "--nproc", "0"], "--nproc"),
        (["reconstruct", "x", "-o", "y", "--nproc", "-1"], "--nproc"),
        (["reconstruct", "x", "-o", "y", "--fps", "-1"], "--fps"),
        (["reconstruct", "x", "-o", "y", "--fps", "0"], "--fps"),
        (["reconstruct", "x", "-o", "y", "--fps", "1e9"], "--fps"),
        (["reconstruct", "x", "-o", "y", "--fps", "nan"], "--fps"),
        (["reconstruct", "x", "-o", "y", "--video-frames", "0"], "--video-frames"),
        (["reconstruct", "x", "-o", "y", "--max-frames", "0"], "--max-frames"),
        (["reconstruct", "x", "-o", "y", "--resolution", "0"], "--resolution"),
        (["reconstruct", "x", "-o", "y", "--resolution", "14000"], "--resolution"),
        (["reconstruct", "x", "-o", "y", "--resolution", "100"], "--resolution"),
        (["reconstruct", "x", "-o", "y", "--window-size", "-1"], "--window-size"),
        (["reconstruct", "x", "-o", "y", "--variant", "bogus"], "--variant"),
        (["render", "s", "-o", "y", "--orbit", "3", "--fov", "0"], "--fov"),
        (["render", "s", "-o", "y", "--orbit", "3", "--fov", "180"], "--fov"),
        (["render", "s", "-o", "y", "--orbit", "3", "--fps", "0"], "--fps"),
        (["render", "s", "-o", "y", "--orbit", "100000"], "--orbit"),
        (["render", "s", "-o", "y", "--orbit", "3", "--size", "14000x14000"], "--size"),
        (["render", "s", "-o", "y", "--orbit", "3", "--size", "big"], "--size"),
        (["generate", "g", "--scenes", "-1"], "--scenes"),
        (["generate", "g", "--views", "0"], "--views"),
        (["export", "s", "--format", "ply", "-o", "p.ply", "--percentile", "101"], "--percentile"),
    ],
)
def test_nonsense_options_are_refused_while_parsing(args, option, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(args, capsys)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {option}" in err and "Traceback" not in err


def test_the_studio_refuses_a_zero_scale_at_once():
    child = subprocess.run(
        [sys.executable, "-m", "app", "--scale", "0", "--exit"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert child.returncode == 2 and "argument --scale" in child.stderr


# ---- non-finite numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("array, frame", [("extrinsics", 1), ("intrinsics", 2), ("depth", 0)])
def test_a_scene_with_nan_cameras_or_depth_is_refused_naming_array_and_frame(tmp_path, recon, array, frame, capsys):
    import dataclasses

    values = getattr(recon, array).copy()
    values[frame].flat[0] = np.nan if array != "depth" else np.inf
    path = dataclasses.replace(recon, **{array: values}).save(tmp_path / "nan.zipmap")
    with pytest.raises(SceneFileError, match=f"{array} of frame {frame} holds NaN or infinite numbers"):
        Reconstruction.load(path)
    code, err = run_cli(["export", str(path), "--format", "glb", "-o", str(tmp_path / "s.glb")], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "s.glb").exists()


def test_a_scene_with_a_nan_state_is_refused(tmp_path, recon):
    import dataclasses

    state = [{k: np.ones((1, 4, 4), np.float32) for k in ("w0", "w1", "w2")} for _ in range(2)]
    state[1]["w2"][0, 0, 0] = np.nan
    path = dataclasses.replace(recon, state=state).save(tmp_path / "nan_state.zipmap")
    with pytest.raises(SceneFileError, match=r"layer 1 \(w2\) holds NaN"):
        Reconstruction.load(path)


def test_model_outputs_with_nan_are_refused_before_anything_is_built():
    from zipmap_core.pipeline.assembly import NonFiniteOutputError, assemble_frames

    images = torch.rand(2, 3, 28, 42)
    pose = torch.zeros(2, 9)
    pose[:, 3 + 3] = 1.0  # identity rotations
    pose[:, 7:] = 1.0
    depth = torch.ones(2, 28, 42)
    arrays, _ = assemble_frames(images, pose, depth, torch.ones(2, 28, 42), None, "depth")
    assert np.isfinite(arrays["intrinsics"]).all()
    depth[1, 3, 4] = float("nan")
    with pytest.raises(NonFiniteOutputError, match="depth of frame 1"):
        assemble_frames(images, pose, depth, torch.ones(2, 28, 42), None, "depth")


def test_an_untrained_camera_head_gives_finite_intrinsics():
    from zipmap_core.model.geometry import pose_encoding_to_cameras

    enc = torch.zeros(1, 9)
    enc[:, 6] = 1.0
    _, k = pose_encoding_to_cameras(enc, (28, 42))
    assert torch.isfinite(k).all() and k[0, 0, 0] > 1000 * 21 * 0.99


@pytest.mark.parametrize(
    "content, message",
    [
        ({"intrinsics": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, 'no "c2w"'),
        ({"c2w": [[1, 2], [3, 4]]}, "3x4 or 4x4"),
        ({"c2w": [[[float("nan")] * 4] * 3]}, "NaN or infinite"),
        ({"c2w": "east"}, "not arrays of numbers"),
        ([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1]]], "not arrays of numbers"),
    ],
)
def test_odd_camera_files_for_render_are_one_line_errors(tmp_path, recon, content, message, capsys):
    scene = recon.save(tmp_path / "s.zipmap")
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps(content))
    code, err = run_cli(["render", str(scene), "--c2w", str(cams), "-o", str(tmp_path / "r"), "-q"], capsys)
    assert_one_line_error(code, err)
    assert message in err and not (tmp_path / "r").exists()


def test_rendering_a_state_another_model_made_is_one_line(tmp_path, recon, tiny_checkpoint, capsys):
    import dataclasses

    one = [{"w0": np.ones((1, 32, 64), np.float32), "w1": np.ones((1, 64, 32), np.float32), "w2": np.ones((1, 32, 64), np.float32)}]
    scene = dataclasses.replace(recon, state=one).save(tmp_path / "one_layer.zipmap")
    code, err = run_cli(
        ["render", str(scene), "--orbit", "2", "-o", str(tmp_path / "r"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q"],
        capsys,
    )
    assert_one_line_error(code, err)
    assert "made by another model" in err and "1 layers and this model 4" in err and not (tmp_path / "r").exists()


def test_odd_timings_in_a_scene_file_are_dropped_not_shown(tmp_path, recon):
    import dataclasses

    odd = dataclasses.replace(recon, timings={"total_s": "fast", "model_s": 1.5, "x": None, "y": True})
    back = Reconstruction.load(odd.save(tmp_path / "odd.zipmap"))
    assert back.timings == {"model_s": 1.5}


# ---- what a reader is handed ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["info", "{p}"], ["export", "{p}", "--format", "ply", "-o", "{out}"]])
@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_a_pipe_is_named_for_what_it_is_and_never_read(tmp_path, command, kind, capsys):
    p = tmp_path / "thing"
    p.mkdir() if kind == "folder" else os.mkfifo(p)  # a FIFO would block a reader for ever
    args = [a.format(p=p, out=tmp_path / "x.ply") for a in command]
    code, err = run_cli(args, capsys)
    assert_one_line_error(code, err)
    assert ("is a folder" if kind == "folder" else "is a named pipe (FIFO)") in err


def test_a_scene_with_a_singular_camera_is_refused_at_load(tmp_path, recon):
    import dataclasses

    k = recon.intrinsics.copy()
    k[1, 0, 0] = 0.0
    path = dataclasses.replace(recon, intrinsics=k).save(tmp_path / "singular.zipmap")
    with pytest.raises(SceneFileError, match="intrinsics of frame 1 are not a camera's"):
        Reconstruction.load(path)


def test_json_nested_too_deeply_is_a_message_not_a_recursion_error(tmp_path, recon, capsys):
    deep = "[" * 200_000 + "]" * 200_000
    cams = tmp_path / "cams.json"
    cams.write_text(deep)
    scene = recon.save(tmp_path / "s.zipmap")
    code, err = run_cli(["render", str(scene), "--c2w", str(cams), "-o", str(tmp_path / "r"), "-q"], capsys)
    assert_one_line_error(code, err)
    assert "nested too deeply" in err and "recursion" not in err
    ckpt = checkpoint_with_config(tmp_path / "deep.safetensors", {})
    from safetensors.torch import load_file

    save_file(load_file(str(ckpt)), str(ckpt), metadata={"format": FORMAT_NAME, "format_version": "1", "config": deep})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"format_version": "one"}, "format_version 'one' is not a whole number"),
        ({"shards": "x2"}, "shard count 'x2' is not a whole number"),
    ],
)
def test_odd_checkpoint_metadata_is_named(tmp_path, meta, message):
    path = tmp_path / "odd.safetensors"
    save_file(
        {"w": torch.zeros(2)}, str(path), metadata={"format": FORMAT_NAME, "format_version": "1", "config": tiny_config().to_json(), **meta}
    )
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "holds a JSON list"),
        ('{"steps": "many"}', "steps in .* is 'many', not int"),
        ('{"views": [2, -1]}', "views .* positive whole numbers"),
        ("{not json", "is not a JSON training config"),
    ],
)
def test_odd_training_configs_are_named(tmp_path, content, message):
    from zipmap_core.training.trainer import TrainConfig

    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_file(path)


def test_novel_views_with_nan_are_refused_and_no_render_is_published(tmp_path, recon, tiny_checkpoint, monkeypatch):
    import dataclasses

    from zipmap_core.pipeline.assembly import NonFiniteOutputError
    from zipmap_core.pipeline.camera_path import orbit_path, render_path
    from zipmap_core.pipeline.reconstructor import Reconstructor

    rec = Reconstructor.from_checkpoint(tiny_checkpoint, "cpu")
    state = [
        {k: v[0].detach().numpy()[None] for k, v in blk.ttt_block.initial_state(1).items()} for blk in rec.model.aggregator.global_blocks
    ]
    scene = dataclasses.replace(recon, state=state)
    real = rec.model.render

    def nan_render(*args, **kwargs):
        rgbd, conf = real(*args, **kwargs)
        rgbd[0, -1, 0, 0, 3] = float("nan")
        return rgbd, conf

    monkeypatch.setattr(rec.model, "render", nan_render)
    with pytest.raises(NonFiniteOutputError, match="depth of view 1"):
        render_path(rec, scene, orbit_path(scene, 2), recon.intrinsics[0], (28, 42), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # the failed run took away the folder it had made


def test_a_missing_confidence_is_written_as_zero_never_as_nan(tmp_path, recon):
    import dataclasses

    import trimesh

    from zipmap_core.io.exporters import export

    conf = recon.depth_conf.copy()
    conf[1] = np.nan  # a frame without confidence: allowed in a scene, ranks last
    path = export(dataclasses.replace(recon, depth_conf=conf), "ply", tmp_path / "p.ply")
    cloud = trimesh.load(path, process=False)
    written = np.asarray(cloud.metadata["_ply_raw"]["vertex"]["data"]["confidence"])
    assert np.isfinite(written).all() and (written == 0).sum() == conf[1].size and np.isfinite(cloud.vertices).all()


# ---- the official weights, offline ---------------------------------------------------------------------
def test_offline_is_said_at_once_without_the_hub_clients_retries(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from zipmap_core.errors import DownloadError
    from zipmap_core.io import download

    calls = []

    def hub(repo, filename, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.setattr(download, "hub_reachable", lambda timeout_s=3.0: False)
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="appears to be offline"):
        download.download_official("state_query", cache_dir=tmp_path)
    assert calls == [True] and time.perf_counter() - start < 2  # only the cache was asked


def test_a_cached_official_checkpoint_needs_no_network(monkeypatch, tmp_path):
    import huggingface_hub

    from zipmap_core.io import download

    cached = tmp_path / "checkpoint_state_query.pt"
    cached.write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, filename, **kw: str(cached))
    monkeypatch.setattr(download, "hub_reachable", lambda timeout_s=3.0: pytest.fail("the network was probed"))
    assert download.download_official("state_query", cache_dir=tmp_path) == cached


def fake_hub(monkeypatch, tmp_path, chunks: int = 50, pause_s: float = 0.0):
    """The hub client, downloading 5.5 GB in `chunks` reports (nothing real moves)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from zipmap_core.io import download

    def hub(repo, filename, cache_dir=None, tqdm_class=None, local_files_only=False, **kw):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        bar = tqdm_class(total=5_500_000_000, unit="B")
        for _ in range(chunks):
            time.sleep(pause_s)
            bar.update(110_000_000)
        bar.close()
        (tmp_path / filename).write_bytes(b"weights")
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.setattr(download, "hub_reachable", lambda timeout_s=3.0: True)


def test_a_download_reports_bytes_and_rate_and_stops_when_cancelled(monkeypatch, tmp_path):
    from zipmap_core.cancel import Cancelled, CancelToken, reporter
    from zipmap_core.io.download import download_official, progress_tqdm

    fake_hub(monkeypatch, tmp_path)
    seen = []
    path = download_official("state_query", tqdm_class=progress_tqdm(lambda *a: seen.append(a)))
    assert path.read_bytes() == b"weights" and len(seen) == 50
    text, done_mb, total_mb = seen[-1]
    assert text.startswith("download 5.50 of 5.50 GB, ") and text.endswith(" MB/s") and done_mb == total_mb == 5245
    token = CancelToken()
    reports = []

    def cancel_after_three(*a):
        reports.append(a)
        if len(reports) == 3:
            token.cancel()

    with pytest.raises(Cancelled):  # a cancel, not a "download failed"
        download_official("aff_inv", tqdm_class=progress_tqdm(reporter(cancel_after_three, token)))
    assert len(reports) == 3 and not (tmp_path / "checkpoint_aff_inv.pt").exists()
