"""`zipmap bench pipeline`: the work around the network, from a real video file to a saved
scene, per frame, beside the network's own time; and streaming's per-call time as the stream
grows. The video is the one given, or a 1080p H.264 video generated once (textured shapes
moving over a gradient, so the decoder has real work)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import atomic_path
from ..io.inputs import Preparation, VideoSampling, iter_inputs, load_inputs
from ..pipeline.assembly import assemble
from ..pipeline.recipe import model_images, original_sizes, run_network
from ..pipeline.reconstructor import Reconstructor


def make_video(path: Path, frames: int, size: tuple[int, int] = (1920, 1080), fps: int = 30) -> Path:
    """A 1080p H.264 video whose content moves every frame (a camera panning over a scene)."""
    import av

    w, h = size
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:h, : 2 * w].astype(np.float32)
    scene = np.stack([(xs / (2 * w)) * 200 + 30, (ys / h) * 180 + 40, 120 + 60 * np.sin(xs / 90) * np.cos(ys / 70)], -1)
    for _ in range(60):  # boxes with fine texture
        x0, y0 = rng.integers(0, 2 * w - 200), rng.integers(0, h - 200)
        bw, bh = rng.integers(40, 200, 2)
        scene[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(0, 255, 3) * (0.7 + 0.3 * rng.random((bh, bw, 1)))
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(frames):
            x = int(i * (w / max(frames, 1)))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, x : x + w]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def host_stages(video: Path, frames: int, size: int, folder: Path) -> dict:
    """Seconds per frame of each stage outside the network for `frames` frames at `size` px:
    decode (with scaling), preprocess (stacking the model images), assemble and save. The
    network's outputs are stand-ins of the real shapes; assembly's cost does not depend on them.
    The page cache is flushed first, so the save is not charged for an earlier run's write-back."""
    os.sync()
    t0 = time.perf_counter()
    loaded = load_inputs([video], VideoSampling(fps=None, max_frames=frames), prepare=Preparation("crop", size))
    t1 = time.perf_counter()
    images, crops = model_images(loaded.frames, "crop", size, lambda *a: None)
    preprocess_s = time.perf_counter() - t1
    n, (h, w) = len(loaded.frames), images.shape[-2:]
    gen = torch.Generator().manual_seed(0)
    pose = torch.cat(
        [torch.randn(n, 3, generator=gen) * 0.3, torch.tensor([[0.0, 0.0, 0.0, 1.0]]).repeat(n, 1), torch.full((n, 2), 1.0)], 1
    )
    depth = 1 + torch.rand(n, h, w, generator=gen)
    conf = 1 + torch.rand(n, h, w, generator=gen)
    t2 = time.perf_counter()
    recon = assemble(loaded.names(), images, pose, depth, conf, None, "depth", original_sizes(crops))
    t3 = time.perf_counter()
    recon.save(folder / "scene.zipmap", include_state=False)
    t4 = time.perf_counter()
    stages = {"decode": t1 - t0, "preprocess": preprocess_s, "assemble": t3 - t2, "save": t4 - t3}
    per_frame = {k: v / n for k, v in stages.items()}
    return {
        "frames": n,
        "image_hw": [int(h), int(w)],
        "seconds_per_frame": per_frame,
        "host_s_per_frame": sum(per_frame.values()),
        "scene_mb": (folder / "scene.zipmap").stat().st_size / 2**20,
    }


def network_per_frame(rec: Reconstructor, video: Path, frames: int, size: int) -> float:
    """The bundled network's seconds per frame on `frames` frames at `size` px (after a warm-up)."""
    loaded = load_inputs([video], VideoSampling(fps=None, max_frames=frames), prepare=Preparation("crop", size))
    images, _ = model_images(loaded.frames, "crop", size, lambda *a: None)
    run_network(rec.runtime, images[:2], lambda *a: None)
    t0 = time.perf_counter()
    run_network(rec.runtime, images, lambda *a: None)
    return (time.perf_counter() - t0) / len(loaded.frames)


def streaming_calls(rec: Reconstructor, video: Path, frames: int, window: int) -> dict:
    """Per-call seconds (network plus assembly, and each part) of a stream fed `window` frames
    at a time from a prefetching decoder, until `frames` frames."""
    session = rec.stream(window_size=window)
    source = iter_inputs([video], VideoSampling(fps=None, max_frames=frames), Preparation("crop", rec.cfg.img_size))
    calls, seen, parts = [], [], {"model_s": [], "assemble_s": []}
    batch = []
    for frame in source:
        batch.append(frame)
        if len(batch) < window:
            continue
        before = dict(session.timings)
        t0 = time.perf_counter()
        session.add(batch)
        calls.append(time.perf_counter() - t0)
        for key in parts:
            parts[key].append(session.timings[key] - before[key])
        seen.append(session.num_frames)
        batch = []
    return {"frames": seen, "seconds_per_call": calls, "parts_per_call": parts, "window": window, "size": rec.cfg.img_size}


def near(stream: dict, frame: int, spread: int = 5) -> float:
    """Median per-call time of the calls around `frame` frames."""
    seen = np.asarray(stream["frames"])
    i = int(np.argmin(np.abs(seen - frame)))
    lo, hi = max(0, i - spread), min(len(seen), i + spread + 1)
    return float(np.median(stream["seconds_per_call"][lo:hi]))


def fitted(stream: dict, frames: list[int], key: str | None = None) -> list[float]:
    """Per-call seconds at `frames` on a straight line fitted to every call but the first (the
    warm-up) and those over twice the median: on a shared machine single calls vary by +-40 %,
    and a growth with the stream's length shows as the line's slope whatever the noise."""
    seen = np.asarray(stream["frames"], float)[1:]
    t = np.asarray(stream["seconds_per_call"] if key is None else stream["parts_per_call"][key])[1:]
    if len(t) < 2:
        return [float(np.median(t))] * len(frames)
    keep = t <= 2 * np.median(t)
    slope, intercept = np.polyfit(seen[keep], t[keep], 1)
    return [float(intercept + slope * f) for f in frames]


def pipeline(counts: list[int], size: int, stream_frames: int, video: Path | None, out: Path, log=print) -> dict:
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if video is None:
            log(f"generating a 1080p H.264 video of {max(max(counts), stream_frames)} frames...")
            video = make_video(work / "bench.mp4", max(max(counts), stream_frames))
        rows = []
        for n in counts:
            row = host_stages(video, n, size, work)
            rows.append(row)
            log(
                f"N={row['frames']:5d}: host {1000 * row['host_s_per_frame']:.1f} ms/frame "
                + " ".join(f"{k} {1000 * v:.1f}" for k, v in row["seconds_per_frame"].items())
            )
        rec = Reconstructor.bundled("cpu")
        net = network_per_frame(rec, video, min(counts[0], 32), size)
        log(f"network (bundled model, {size} px): {1000 * net:.0f} ms/frame")
        stream = streaming_calls(rec, video, stream_frames, 2)
    first, last = min(20, stream["frames"][-1]), stream["frames"][-1]
    start, end = fitted(stream, [first, last])
    parts = {key: fitted(stream, [first, last], key) for key in stream["parts_per_call"]}
    log(
        f"streaming (fitted line): {1000 * start:.0f} ms per call at frame {first}, {1000 * end:.0f} ms at frame {last}; "
        + ", ".join(f"{k[:-2]} {1000 * a:.0f} -> {1000 * b:.0f}" for k, (a, b) in parts.items())
        + f" (medians of 11 calls: {1000 * near(stream, first):.0f} and {1000 * near(stream, last):.0f} ms)"
    )
    results = {
        "size": size,
        "threads": threads,
        "cpus": os.cpu_count(),
        "video": str(video),
        "batch": rows,
        "network_s_per_frame": net,
        "streaming": stream,
        "summary": {
            "host_ms_per_frame_at_largest_n": 1000 * rows[-1]["host_s_per_frame"],
            "network_ms_per_frame": 1000 * net,
            "streaming_call_s_at_20": start,
            "streaming_call_s_at_end": end,
            "streaming_ratio_end_over_20": end / start,
            "streaming_parts_s_at_20_and_end": parts,
            "streaming_median_of_11_calls_s_at_20_and_end": [near(stream, first), near(stream, last)],
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "pipeline.png")
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    rows = results["batch"]
    n = [r["frames"] for r in rows]
    bottom = np.zeros(len(rows))
    for stage in rows[0]["seconds_per_frame"]:
        ms = np.array([1000 * r["seconds_per_frame"][stage] for r in rows])
        ax1.bar([str(x) for x in n], ms, bottom=bottom, label=stage)
        bottom += ms
    ax1.axhline(15, color="k", ls="--", lw=1, label="15 ms budget")
    ax1.set(
        xlabel="frames",
        ylabel="ms per frame outside the network",
        title=f"batch, {results['size']} px (network: {1000 * results['network_s_per_frame']:.0f} ms/frame on CPU)",
    )
    ax1.legend(fontsize=8)
    s = results["streaming"]
    ax2.plot(s["frames"], np.array(s["seconds_per_call"]) * 1000, ".", ms=3, label="per call")
    ends = [s["frames"][0], s["frames"][-1]]
    ax2.plot(ends, np.array(fitted(s, ends)) * 1000, "k-", lw=1, label="fitted line")
    ax2.plot(s["frames"], np.array(s["parts_per_call"]["assemble_s"]) * 1000, ".", ms=2, label="assembly")
    ax2.legend(fontsize=8)
    ax2.set(
        xlabel="frames so far",
        ylabel="ms per call (network + assembly)",
        title=f"streaming, {s['window']} frames a call, {s['size']} px",
        ylim=(0, None),
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
