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
