"""What users drop: videos are sampled as asked, folders expand in natural order, and what
cannot be read is named and skipped while the rest goes on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from videos import write_video

from zipmap_core.io.inputs import (
    NoUsableImagesError,
    VideoSampling,
    load_inputs,
    read_video,
)
from zipmap_core.io.preprocess import ImageReadError

REAL_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "room.mp4"


def index_of(frame) -> int:
    return int(np.asarray(frame.image, np.float32).mean(axis=(0, 2)).argmax()) // 2


def level(frame) -> float:
    return float(np.asarray(frame.image, np.float32).mean())


def test_video_sampled_by_rate_or_by_count(tmp_path):
    video = write_video(tmp_path / "walk.mp4", 45)
    by_rate = read_video(video, VideoSampling(fps=10))  # every third frame of 30 fps
    assert [f.name for f in by_rate[:3]] == ["walk.mp4#t=0.00s", "walk.mp4#t=0.10s", "walk.mp4#t=0.20s"]
    assert len(by_rate) == 15
    assert [index_of(f) for f in by_rate] == list(range(0, 45, 3))
    by_count = read_video(video, VideoSampling(fps=None, max_frames=4))
    assert [index_of(f) for f in by_count] == [0, 15, 29, 44]
    assert by_count[0].image.size == (96, 64) and by_count[0].image.mode == "RGB"


def test_stopping_while_decoding_keeps_what_was_read(tmp_path):
    video = write_video(tmp_path / "long.mp4", 40)
    from zipmap_core.cancel import CancelToken

    class AfterTen(CancelToken):
        """A token whose cancel arrives on the eleventh look, as a user's would mid-decode."""

        def __init__(self) -> None:
            super().__init__()
            self.looks = 0

        @property
        def cancelled(self) -> bool:
            self.looks += 1
            return self.looks > 10

    frames = read_video(video, VideoSampling(fps=30), AfterTen())
    assert len(frames) == 10


def test_folder_mixes_images_and_videos_and_skips_broken_ones_by_name(tmp_path):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.new("RGB", (40, 30), (i, i, i)).save(folder / f"img{i}.png")
    write_video(folder / "clip.mp4", 6, fps=2.0)
    (folder / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    (folder / "notes.txt").write_text("ignored: not an image or video")
    loaded = load_inputs([folder], VideoSampling(fps=1.0))
    assert loaded.names() == ["clip.mp4#t=0.00s", "clip.mp4#t=1.00s", "clip.mp4#t=2.00s", "img1.png", "img2.png", "img10.png"]
    assert [name for name, _ in loaded.skipped] == ["broken.mp4"]
    assert "video" in loaded.skipped[0][1]


def test_only_unusable_inputs_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "bad.mov").write_bytes(b"junk" * 10)
    with pytest.raises(NoUsableImagesError, match="empty: folder contains no images or videos") as err:
        load_inputs([empty, tmp_path / "bad.mov", tmp_path / "missing.jpg"])
    assert "bad.mov" in str(err.value) and "missing.jpg: no such file or folder" in str(err.value)
    with pytest.raises(ImageReadError, match=r"bad\.mov"):
        read_video(tmp_path / "bad.mov", VideoSampling())


@pytest.mark.skipif(not REAL_VIDEO.exists(), reason=f"the real sample video is not at {REAL_VIDEO} (a user's clone has no ../shared)")
def test_real_sample_video_reconstructs_with_the_bundled_model():
    from zipmap_core.pipeline.reconstructor import Reconstructor

    frames = read_video(REAL_VIDEO, VideoSampling(fps=None, max_frames=8))
    assert len(frames) == 8 and frames[0].image.size == (512, 384)
    assert len({round(level(f), 1) for f in frames}) == 8  # a moving camera: no two frames alike
    recon = Reconstructor.bundled("cpu").reconstruct([REAL_VIDEO], sampling=VideoSampling(fps=None, max_frames=8))
    assert recon.num_frames == 8
    assert np.isfinite(recon.points_world).all() and np.isfinite(recon.cam_to_world).all()
    assert (recon.depth > 0).all()
    # frame 0 is the world frame; the others are placed somewhere else
    assert np.allclose(recon.cam_to_world[0][:3, :4], np.eye(4)[:3], atol=1e-4)
    assert np.linalg.norm(recon.cam_to_world[1:, :3, 3], axis=1).min() > 1e-4
