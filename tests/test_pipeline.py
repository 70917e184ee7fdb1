"""From file to scene in time linear in the frames (issue 16): videos decode only what is kept,
scaled to the model's size as they decode, sampling says when it took less than asked, decoding
runs ahead of its consumer within a bound, and streaming appends without touching what it has."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest
import torch
from PIL import Image
from videos import write_video

from zipmap_core import cli
from zipmap_core.io import video as video_module
from zipmap_core.io.inputs import Preparation, VideoSampling, iter_inputs, load_inputs, read_video
from zipmap_core.io.prefetch import prefetch
from zipmap_core.io.preprocess import preprocess
from zipmap_core.model.config import tiny_config
from zipmap_core.model.zipmap import ZipMap
from zipmap_core.pipeline import streaming as streaming_module
from zipmap_core.pipeline.reconstructor import Reconstructor
from zipmap_core.pipeline.streaming import GrowingArrays


def index_of(frame) -> int:
    image = np.asarray(frame.full_image(), np.float32)
    return int(image.mean(axis=(0, 2)).argmax()) // 2


# ---- truthful sampling ------------------------------------------------------------------------------
def test_a_short_clip_at_the_default_rate_says_how_to_get_more(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", 30, fps=30.0)  # 1 s
    loaded = load_inputs([clip], VideoSampling(fps=1.0))
    assert len(loaded.frames) == 1
    assert len(loaded.notes) == 1 and "1.0 s clip at 1 frame(s) per second gives 1 frame(s)" in loaded.notes[0]
    assert "--video-frames 16" in loaded.notes[0]
    code = cli.main(["reconstruct", str(clip), "-o", str(tmp_path / "out"), "--video-frames", "3", "-q", "--device", "cpu"])
    assert code == 0 and "gives" not in capsys.readouterr().err  # enough frames: nothing to say
    cli.main(["reconstruct", str(clip), "-o", str(tmp_path / "out"), "-q", "--device", "cpu"])
    assert "clip.mp4: a 1.0 s clip" in capsys.readouterr().err


def test_asking_for_more_frames_than_a_video_has_says_so(tmp_path):
    clip = write_video(tmp_path / "ten.mp4", 10, fps=30.0)
    loaded = load_inputs([clip], VideoSampling(fps=None, max_frames=32))
    assert [index_of(f) for f in loaded.frames] == list(range(10))
    assert "took 10 of the 32 frames asked: the video has only 10 frames" in loaded.notes[0]


def test_a_video_that_holds_less_than_its_header_promises_is_sampled_over_what_it_holds(tmp_path):
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", format="mp4", options={"movflags": "+faststart"}) as out:  # index first
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(60):
            image = np.zeros((64, 96, 3), np.uint8)
            image[:, 2 * (i % 48) : 2 * (i % 48) + 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # the header still says 60 frames
    # what the cut file holds is what is spread over: 12 evenly spaced frames of it, not a plan
    # over the header's 60 that loses its tail
    loaded = load_inputs([cut], VideoSampling(fps=None, max_frames=12))
    times = [f.time_s for f in loaded.frames]
    assert len(times) == 12 and times == sorted(set(times)) and not loaded.notes
    # more than it holds: fewer frames, and a note that says how many the video has
    many = load_inputs([cut], VideoSampling(fps=None, max_frames=59))
    assert len(many.frames) < 59
    assert f"took {len(many.frames)} of the 59 frames asked" in many.notes[0] and "the video has only" in many.notes[0]


# ---- decoding only what is kept, at the model's size ---------------------------------------------------
def test_video_frames_are_scaled_as_they_decode_and_match_the_pictures_path(tmp_path):
    clip = tmp_path / "smooth.mp4"
    ys, xs = np.mgrid[:180, :320]
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(5):
            image = np.stack([(xs + 9 * i) % 256, ys * 255 // 180, (xs + ys) // 2 % 256], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    prepare = Preparation("crop", 112)
    frames = read_video(clip, VideoSampling(fps=None), prepare=prepare)
    assert len(frames) == 5
    first = frames[0]
    assert first.image.size == (112, 56) and first.original_wh == (320, 180)  # nothing larger is held
    tensor, crop = first.model_input("crop", 112)
    full = first.full_image()  # re-read from the video at full size
    assert full.size == (320, 180)
    expected, expected_crop = preprocess(full, "crop", 112)  # PIL's bicubic from the full frame
    assert tensor.shape == expected.shape and crop.resized_wh == expected_crop.resized_wh
    assert (tensor - expected).abs().mean() < 2.5 / 255  # FFmpeg's area average (2.9x down) against PIL's bicubic
    other, other_crop = first.model_input("pad", 56)  # another model size: made from the full frame
    assert other.shape == (3, 56, 56) and other_crop.original_wh == (320, 180)


def test_only_kept_frames_are_converted_and_far_frames_are_reached_by_seeking(tmp_path, monkeypatch):
    clip = write_video(tmp_path / "long.mp4", 300, fps=30.0, size=(640, 48))  # 10 s
    converted = []
    real = video_module._convert
    monkeypatch.setattr(video_module, "_convert", lambda frame, size_for: (converted.append(1), real(frame, size_for))[1])
    seeks = []
    real_open = video_module.open_video

    class Counting:  # the container, with its seeks counted
        def __init__(self, container):
            self._c = container

        def seek(self, *args, **kwargs):
            seeks.append(args[0])
            return self._c.seek(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._c, name)

    monkeypatch.setattr(video_module, "open_video", lambda path: (lambda c, s: (Counting(c), s))(*real_open(path)))
    frames = read_video(clip, VideoSampling(fps=None, max_frames=4))
    assert [index_of(f) for f in frames] == [0, 100, 199, 299]  # the right frames, found after seeks
    assert len(converted) == 4 and len(seeks) == 3


def test_iter_inputs_keeps_order_and_bounds_how_far_decoding_runs_ahead(tmp_path):
    clip = write_video(tmp_path / "a.mp4", 40, fps=30.0)
    pictures = []
    for i in range(3):
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (40, 30), (10 * i, 0, 0)).save(path)
        pictures.append(path)
    stream = iter_inputs([pictures[0], clip, pictures[1], pictures[2]], VideoSampling(fps=None))
    names = [f.name for f in stream]
    assert names[0] == "p0.png" and names[-2:] == ["p1.png", "p2.png"] and len(names) == 43
    assert names[1].startswith("a.mp4#t=0.00s")


def test_prefetch_is_bounded_passes_errors_and_stops_its_producer():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    items = prefetch(source(), depth=4)
    assert next(items) == 0
    time.sleep(0.2)
    assert len(produced) <= 4 + 2, "the producer must wait for its consumer"
    items.close()
    time.sleep(0.1)
    assert len(produced) <= 4 + 2 and not any(t.name == "prefetch" for t in threading.enumerate())

    def broken():
        yield 1
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        list(prefetch(broken(), depth=2))


# ---- streaming appends --------------------------------------------------------------------------------
def test_growing_arrays_append_without_changing_snapshots():
    grow = GrowingArrays()
    grow.append({"x": np.zeros((3, 2))})
    first = grow.view()["x"]
    for i in range(1, 40):
        grow.append({"x": np.full((2, 2), i)})
    assert (first == 0).all() and grow.count == 81 and grow.view()["x"].shape == (81, 2)
    assert len(grow._buffers["x"]) < 2 * 81  # doubling, not one allocation per call
    with pytest.raises(ValueError, match="differs"):
        grow.append({"x": np.zeros((1, 3))})


def test_each_streaming_call_assembles_only_its_new_frames(tiny_rec, monkeypatch, tmp_path):
    clip = write_video(tmp_path / "walk.mp4", 12, fps=30.0, size=(112, 84))
    frames = read_video(clip, VideoSampling(fps=None))
    sizes = []
    real = streaming_module.assemble_frames
    monkeypatch.setattr(streaming_module, "assemble_frames", lambda images, *a: (sizes.append(len(images)), real(images, *a))[1])
    session = tiny_rec.stream(window_size=2, resolution=56)
    snapshots = [recon for recon in session.run(iter(frames), window=2)]
    assert sizes == [2] * 6 and [r.num_frames for r in snapshots] == [2, 4, 6, 8, 10, 12]
    final = snapshots[-1]
    np.testing.assert_array_equal(snapshots[0].depth, final.depth[:2])  # earlier snapshots stay as they were
    np.testing.assert_allclose(final.extrinsics[0], np.eye(4)[:3], atol=1e-5)  # every call in frame 0's frame
    c2w = final.cam_to_world
    np.testing.assert_allclose(final.points_cam[7] @ c2w[7, :3, :3].T + c2w[7, :3, 3], final.points_world[7], atol=1e-4)
    assert final.state is not None and final.state_scale == pytest.approx(max(1e-8, float(np.abs(c2w[:, :3, 3]).max())), rel=1e-5)


def test_streaming_equals_the_batch_windowed_reconstruction(tmp_path):
    torch.manual_seed(3)
    cfg = tiny_config()
    cfg.camera_head.kind = "mlp"  # a per-frame camera head, as the online checkpoint's
    rec = Reconstructor(ZipMap(cfg).eval(), "cpu")
    clip = write_video(tmp_path / "walk.mp4", 8, fps=30.0, size=(112, 84))
    frames = read_video(clip, VideoSampling(fps=None), prepare=Preparation("crop", 56))
    streamed = list(rec.stream(window_size=2, resolution=56).run(iter(frames), window=4))[-1]
    batch = rec.reconstruct(
        load_inputs([clip], VideoSampling(fps=None), prepare=Preparation("crop", 56)), resolution=56, window_size=2
    )  # the same decoded frames: only the order differs
    np.testing.assert_allclose(streamed.depth, batch.depth, rtol=5e-3, atol=1e-5)
    np.testing.assert_allclose(streamed.extrinsics, batch.extrinsics, atol=1e-3)
    np.testing.assert_allclose(streamed.points_world, batch.points_world, rtol=1e-2, atol=1e-3)


# ---- derived point maps ---------------------------------------------------------------------------------
def test_depth_unprojected_points_are_derived_not_stored(tmp_path, tiny_rec):
    import json
    import zipfile

    clip = write_video(tmp_path / "walk.mp4", 4, fps=30.0, size=(112, 84))
    recon = tiny_rec.reconstruct([clip], sampling=VideoSampling(fps=None), resolution=56)
    assert recon.points_from_depth and recon.__dict__["_point_maps"].get("points_world") is None  # not computed yet
    derived = recon.points_world  # derived on first read, as the torch unprojection gives them
    from zipmap_core.model.geometry import depth_to_camera_points  # the batched inverse-K path

    cam = depth_to_camera_points(torch.as_tensor(recon.depth), torch.as_tensor(recon.intrinsics))
    np.testing.assert_allclose(recon.points_cam, cam.numpy(), rtol=1e-5, atol=1e-6)
    c2w = recon.cam_to_world
    np.testing.assert_allclose(derived[2], recon.points_cam[2] @ c2w[2, :3, :3].T + c2w[2, :3, 3], rtol=1e-5, atol=1e-6)
    path = recon.save(tmp_path / "scene.zipmap")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        with zipfile.ZipFile(zf.open("arrays.npz")) as arrays:
            stored = {n[:-4] for n in arrays.namelist()}
    assert manifest["version"] == 2 and manifest["derived_points"] is True
    assert "points_world" not in stored and "points_cam" not in stored and "depth" in stored
    back = type(recon).load(path)
    np.testing.assert_array_equal(back.points_world, derived)


def test_point_head_points_are_stored_in_a_version_1_file(tmp_path, tiny_rec):
    import json
    import zipfile

    clip = write_video(tmp_path / "walk.mp4", 3, fps=30.0, size=(112, 84))
    recon = tiny_rec.reconstruct([clip], sampling=VideoSampling(fps=None), resolution=56, points_from="point_head")
    assert not recon.points_from_depth
    path = recon.save(tmp_path / "scene.zipmap")
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["version"] == 1
    np.testing.assert_array_equal(type(recon).load(path).points_cam, recon.points_cam)


def test_bench_pipeline_writes_its_figures(tmp_path):
    import json

    clip = write_video(tmp_path / "clip.mp4", 12, fps=30.0, size=(160, 96))
    code = cli.main(
        ["bench", "pipeline", "--frames", "4,8", "--stream-frames", "6", "--size", "56", "--video", str(clip), "-o", str(tmp_path / "out")]
    )
    result = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert code == 0 and (tmp_path / "out" / "pipeline.png").stat().st_size > 1000
    assert [row["frames"] for row in result["batch"]] == [4, 8]
    assert set(result["batch"][0]["seconds_per_frame"]) == {"decode", "preprocess", "assemble", "save"}
    assert result["streaming"]["frames"] == [2, 4, 6] and result["summary"]["streaming_ratio_end_over_20"] > 0


def test_camera_frames_are_taken_at_the_rate_and_prepared(monkeypatch):
    import cv2

    from zipmap_core.io.inputs import camera_frames

    class FakeCamera:  # a camera that delivers 640x360 frames, numbered by a bar, 100 per second
        def __init__(self, index):
            self.count, self.released = 0, False

        def isOpened(self):
            return True

        def read(self):
            time.sleep(0.01)
            self.count += 1
            image = np.zeros((360, 640, 3), np.uint8)
            image[:, self.count % 640] = 255
            return self.count <= 80, image

        def release(self):
            self.released = True

    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    every = list(camera_frames(0, VideoSampling(fps=None), Preparation("crop", 112), limit=5))
    assert len(every) == 5 and every[0].image.size == Preparation("crop", 112).size_for(640, 360)
    tensor, crop = every[0].model_input("crop", 112)
    assert tensor.shape[0] == 3 and tensor.shape[2] == 112 and crop.original_wh == (640, 360)
    slow = list(camera_frames(0, VideoSampling(fps=20.0), None))  # 0.8 s of frames at 20 per second
    times = [f.time_s for f in slow]
    assert len(slow) >= 10 and min(np.diff(times)) >= 0.045  # never faster than asked, however slow the camera
    assert len(slow) <= times[-1] * 20 + 2
    assert slow[0].image.size == (640, 360) and slow[0].name.startswith("camera0#t=")


def test_a_phone_video_frame_comes_out_upright():
    """PyAV reports the display matrix's rotation as degrees to turn the picture counterclockwise;
    a portrait phone video stores landscape frames with -90 (one turn clockwise to stand up)."""

    class StoredFrame:  # a decoded frame: 4 wide, 2 high, its top-left pixel white
        width, height, rotation = 4, 2, -90

        def to_ndarray(self, format):
            rgb = np.zeros((2, 4, 3), np.uint8)
            rgb[0, 0] = 255
            return rgb

        def reformat(self, width, height, format, interpolation):
            assert (width, height) == (8, 4), "scaled in the stored orientation"
            frame = StoredFrame()
            frame.to_ndarray = lambda: np.kron(StoredFrame().to_ndarray("rgb24"), np.ones((2, 2, 1), np.uint8))
            return frame

    upright = video_module._convert(StoredFrame(), None)
    assert upright.shape == (4, 2, 3) and upright[0, -1].max() == 255 and upright.sum() == 255 * 3  # top-left -> top-right
    scaled = video_module._convert(StoredFrame(), lambda w, h: (w * 2, h * 2))  # asked for the upright size (4 x 8)
    assert scaled.shape == (8, 4, 3) and scaled[0, -1].max() == 255


def test_the_network_reads_image_bytes_as_it_reads_floats():
    """The pipeline hands the network its uint8 frames (laid out [N, H, W, 3]); converted a
    chunk at a time, they give the outputs of the float batch bit for bit."""
    from zipmap_core.model.aggregator import unit_float

    torch.manual_seed(0)
    model = ZipMap(tiny_config()).eval()
    raw = torch.randint(0, 256, (5, 28, 42, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    with torch.inference_mode():
        from_bytes = model(raw[None], window_size=0, chunk_frames=2)
        from_floats = model(unit_float(raw.contiguous())[None], window_size=0, chunk_frames=2)
    for key in ("depth", "depth_conf", "pose_enc"):
        assert torch.equal(getattr(from_bytes, key), getattr(from_floats, key)), key


# ---- decoding overlapped with the encoder ----------------------------------------------------------------
def test_batch_runs_encode_while_frames_still_decode_with_the_same_result(tiny_rec, tmp_path, monkeypatch):
    from zipmap_core.pipeline import early_encoding

    clip = write_video(tmp_path / "walk.mp4", 20, fps=30.0, size=(112, 84))
    events = []
    real_iter, real_encode = early_encoding.iter_inputs, early_encoding.encode

    def logged_frames(*args, **kwargs):
        for frame in real_iter(*args, **kwargs):
            events.append("frame")
            yield frame

    def logged_encode(rec, frames, *args, **kwargs):
        events.append(f"encode {len(frames)}")
        return real_encode(rec, frames, *args, **kwargs)

    monkeypatch.setattr(early_encoding, "iter_inputs", logged_frames)
    monkeypatch.setattr(early_encoding, "encode", logged_encode)
    early = tiny_rec.reconstruct([clip], sampling=VideoSampling(fps=None), resolution=56)
    assert events.count("frame") == 20 and [e for e in events if e != "frame"] == ["encode 8", "encode 8", "encode 4"]
    assert events.index("encode 8") == 8  # the first chunk is encoded while 12 frames are still to decode
    later = tiny_rec.reconstruct(
        load_inputs([clip], VideoSampling(fps=None), prepare=Preparation("crop", 56)), resolution=56
    )  # decoded first, then encoded
    np.testing.assert_array_equal(early.depth, later.depth)
    np.testing.assert_array_equal(early.extrinsics, later.extrinsics)
    np.testing.assert_array_equal(early.images, later.images)


def test_pictures_of_mixed_sizes_are_encoded_after_loading(tiny_rec, tmp_path):
    from zipmap_core.cancel import CancelToken
    from zipmap_core.pipeline.early_encoding import load_and_encode

    for i, size in enumerate([(120, 90), (90, 120), (120, 90)]):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(tmp_path / f"p{i}.png")
    paths = sorted(tmp_path.glob("p*.png"))
    early = load_and_encode(tiny_rec.runtime, paths, None, "crop", 56, lambda *a: None, CancelToken())
    assert early.tokens is None and early.images.shape[0] == 3  # padded to the largest: encoded with the rest
    recon = tiny_rec.reconstruct(paths, resolution=56)
    assert recon.num_frames == 3 and np.isfinite(recon.depth).all()


def test_batch_and_streaming_runs_keep_one_record(tiny_rec, photos):
    """One recipe: both drivers time the same stages, record the model that ran and the pictures'
    original sizes by the same rules."""
    from zipmap_core.io.inputs import load_inputs

    batch = tiny_rec.reconstruct([photos], window_size=2)
    frames = load_inputs([photos], prepare=Preparation("crop", tiny_rec.cfg.img_size)).frames
    stream = tiny_rec.stream(window_size=2)
    for start in range(0, len(frames), 2):
        streamed = stream.add(frames[start : start + 2])
    stages = {"preprocess_s", "model_s", "assemble_s", "total_s", "per_frame_s"}
    assert set(batch.timings) == stages == set(streamed.timings)
    assert all(v >= 0 for v in [*batch.timings.values(), *streamed.timings.values()])
    for key in ("model", "variant", "config", "image_hw", "can_render", "mode", "window_size"):
        assert batch.metadata[key] == streamed.metadata[key], key
    np.testing.assert_array_equal(batch.original_wh, streamed.original_wh)
    assert batch.original_wh.tolist() == [[42, 28]] * 3


def test_a_variable_rate_video_gives_every_frame_asked(tmp_path):
    """10 frames at irregular times over 9 s (the header's average rate says otherwise): asking
    10 gives 10, each the frame it is, and a rate of 1 a second gives one per second."""
    from fractions import Fraction

    path = tmp_path / "vfr.mp4"
    stamps_ms = [0, 400, 900, 2500, 3000, 5000, 5200, 7000, 8600, 9000]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(stamps_ms):
            image = np.zeros((64, 96, 3), np.uint8)
            image[:, 8 * i : 8 * i + 8] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    every = read_video(path, VideoSampling(fps=None, max_frames=10))
    assert [round(f.time_s, 2) for f in every] == [ms / 1000 for ms in stamps_ms]
    bars = [int(np.argmax(np.asarray(f.image)[32, :, 0] > 128)) // 8 for f in every]
    assert bars == list(range(10)), "each taken frame is the one at its time"
    per_second = read_video(path, VideoSampling(fps=1.0))
    assert [round(f.time_s, 2) for f in per_second] == [0.0, 2.5, 3.0, 5.0, 7.0, 8.6, 9.0]
