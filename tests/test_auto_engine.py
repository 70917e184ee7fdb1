"""The default engine, `auto` (issue 38): the best real result this machine can give, and why, in
a line: the network with the official weights when they are cached here, otherwise COLMAP with
dense depth from the photos, and the bundled network where COLMAP cannot register the inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zipmap_core import cli
from zipmap_core.io.reconstruction import Reconstruction
from zipmap_core.resources import REAL_SAMPLE


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache with nothing in it, offline."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cache_official(cache: Path, checkpoint: Path) -> Path:
    """`checkpoint` placed where huggingface_hub caches the official state-query download."""
    repo = cache / "models--coast01--ZipMap"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    return Path(shutil.copy(checkpoint, snapshot / "checkpoint_state_query.pt"))


def test_without_official_weights_a_real_video_becomes_a_dense_colmap_scene_and_says_why(empty_cache, tmp_path, capsys):
    code = cli.main(["reconstruct", str(REAL_SAMPLE), "--video-frames", "12", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "auto: no official weights on this machine" in err and "demonstration" not in err
    scene = Reconstruction.load(tmp_path / "out" / "scene.zipmap")
    assert scene.metadata["engine"] == "colmap" and scene.dense_points is not None
    assert "no official weights" in scene.metadata["auto"]


def test_with_cached_official_weights_the_network_makes_the_scene(empty_cache, tmp_path, capsys, tiny_checkpoint, photos):
    _cache_official(empty_cache, tiny_checkpoint)
    code = cli.main(["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "auto: the official weights are on this machine" in err
    scene = Reconstruction.load(tmp_path / "out" / "scene.zipmap")
    assert scene.metadata["model"] == "tiny test model" and "colmap" not in scene.metadata


def test_a_named_checkpoint_is_what_auto_runs(empty_cache, tmp_path, capsys, tiny_checkpoint, photos):
    code = cli.main(["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0 and "auto: the model you named" in err
    assert Reconstruction.load(tmp_path / "out" / "scene.zipmap").metadata["model"] == "tiny test model"


def test_pictures_colmap_cannot_register_fall_back_to_the_bundled_network_with_its_notice(empty_cache, tmp_path, capsys):
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # unrelated noise: no two see the same things
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / f"n{i}.png")
    code = cli.main(["reconstruct", str(folder), "-o", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "could not register these inputs" in err and "using the network instead" in err
    assert "demonstration model" in err  # the bundled model's notice
    scene = Reconstruction.load(tmp_path / "out" / "scene.zipmap")
    assert scene.metadata.get("engine") != "colmap" and scene.num_frames == 3


def test_auto_opens_the_official_weights_with_the_users_settings(empty_cache, tmp_path, capsys, tiny_checkpoint, photos):
    _cache_official(empty_cache, tiny_checkpoint)
    code = cli.main(["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--device", "cpu", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code == 0, err
    model_line = next(line for line in err.splitlines() if line.startswith("model: "))
    assert "tiny test model on cpu, bfloat16" in model_line, model_line  # not auto's defaults (float32 for a small model)


def test_a_split_run_runs_autos_choice_in_every_process(empty_cache, tmp_path, tiny_checkpoint, photos):
    import os
    import subprocess
    import sys

    _cache_official(empty_cache, tiny_checkpoint)
    env = {**os.environ, "HF_HUB_CACHE": str(empty_cache), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "zipmap_core.cli", "reconstruct", str(photos), "-o", str(tmp_path / "out"), "--nproc", "2", "-q"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scene = Reconstruction.load(tmp_path / "out" / "scene.zipmap")
    assert scene.metadata["model"] == "tiny test model" and scene.metadata["processes"] == 2  # not the bundled model
    assert scene.metadata["auto"] == "the official weights are on this machine"


def test_auto_refusing_an_option_says_auto_chose_the_engine(empty_cache, tmp_path, capsys, photos):
    code = cli.main(["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--no-state"])
    err = capsys.readouterr().err
    assert code == 2 and "auto chose it: no official weights" in err and "--engine zipmap" in err, err
    assert not (tmp_path / "out").exists()


def test_a_split_run_refuses_the_dense_stage_before_any_work(tmp_path, capsys, photos):
    code = cli.main(["reconstruct", str(photos), "-o", str(tmp_path / "out"), "--engine", "zipmap", "--nproc", "2", "--dense"])
    err = capsys.readouterr().err
    assert code == 2 and "--dense runs in one process" in err, err
