"""Benchmarks anyone can rerun (`zipmap bench ...`): numbers are medians over repeats after a
warm-up, and each measurement that reports peak memory runs in its own process.

- `scaling`: time and peak memory against the number of frames for ZipMap (bidirectional), the
  same network with global softmax attention (quadratic baseline), and ZipMap streaming.
- `query`: latency of one novel-view query.
- `full-config`: the full official configuration (random weights) on a few frames.
- `newton-schulz`: the bf16 orthogonalisation of official-size fast weights, by route.
- `generator`: scenes per second of the procedural training-data generator.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..device import fast_bf16_active, fast_cpu_bf16, inference_precision, synchronize
from ..io.atomic import atomic_path
from ..model.config import get_config, small_config
from ..model.zipmap import ZipMap


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(config: str, mixer: str, size: int) -> ZipMap:
    torch.manual_seed(0)
    cfg = small_config(size) if config == "small" else get_config(config)
    cfg = cfg.replace(**{"aggregator.global_mixer": mixer})
    return ZipMap(cfg).eval()


def measure_once(config: str, mixer: str, frames: int, size: int, repeats: int, device: str, chunk: int) -> dict:
    """One (method, N) point; run in a fresh process so its peak RSS is its own."""
    dev = torch.device(device)
    model = build(config, mixer, size).to(dev)
    images = torch.rand(1, frames, 3, size, size, device=dev)
    ctx = inference_precision(dev, fast_bf16_active())
    times = []
    base = rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), ctx:
        # warm-up (kernels, allocator) on a few frames: at N=256 a full-size warm-up of the
        # quadratic baseline alone would take minutes on a laptop CPU
        model(images[:, : min(frames, 4)], window_size=0, chunk_frames=chunk, point_head=False)
        for _ in range(repeats):
            synchronize(dev)
            t0 = time.perf_counter()
            # the heads `zipmap reconstruct` runs: cameras, depth and confidence
            model(images, window_size=0, chunk_frames=chunk, point_head=False)
            synchronize(dev)
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb() - base
    return {"time_s": float(np.median(times)), "times_s": times, "peak_mb": float(peak)}


def measure_streaming(size: int, total: int, window: int, device: str) -> dict:
    """Seconds per added window as the stream grows to `total` frames (state carried)."""
    dev = torch.device(device)
    model = build("small", "ttt", size).to(dev)
    states = None
    per_window, frames_seen = [], []
    base = rss_mb()
    rss = []
    with torch.inference_mode(), inference_precision(dev, fast_bf16_active()):
        for start in range(0, total, window):
            images = torch.rand(1, window, 3, size, size, device=dev)
            t0 = time.perf_counter()
            out = model(images, states=states, window_size=window, point_head=False)
            synchronize(dev)
            per_window.append(time.perf_counter() - t0)
            states = out.states
            frames_seen.append(start + window)
            rss.append(rss_mb() - base)
    return {"frames": frames_seen, "seconds_per_window": per_window, "rss_mb": rss}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "zipmap_core.bench.micro", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(ns: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def scaling(
    frames: list[int], size: int, repeats: int, device: str, threads: int, attention_max: int, stream_total: int, out: Path, log=print
) -> dict:
    env_threads = str(threads)
    os.environ["OMP_NUM_THREADS"] = env_threads
    results: dict = {
        "device": device,
        "threads": threads,
        "size": size,
        "config": "small",
        "repeats": repeats,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "methods": {},
    }
    for mixer in ("ttt", "attention"):
        rows = []
        for n in frames:
            if mixer == "attention" and n > attention_max:
                continue
            r = _child(
                [
                    "_one",
                    "--mixer",
                    mixer,
                    "--frames",
                    str(n),
                    "--size",
                    str(size),
                    "--repeats",
                    str(repeats),
                    "--device",
                    device,
                    "--threads",
                    env_threads,
                ]
            )
            rows.append({"frames": n, **r})
            log(f"{mixer:>9} N={n:4d}: {r['time_s']:.3f} s, peak +{r['peak_mb']:.0f} MB")
        results["methods"]["zipmap" if mixer == "ttt" else "attention"] = rows
    stream = _child(["_stream", "--size", str(size), "--total", str(stream_total), "--device", device, "--threads", env_threads])
    results["streaming"] = stream
    spw = stream["seconds_per_window"]
    fr = stream["frames"]

    def near(f: int) -> float:
        i = int(np.argmin(np.abs(np.array(fr) - f)))
        return float(np.median(spw[max(0, i - 2) : i + 3]))

    z = {r["frames"]: r for r in results["methods"]["zipmap"]}
    a = {r["frames"]: r for r in results["methods"]["attention"]}
    fit = [n for n in frames if n >= 32 and n in z]
    summary = {
        "zipmap_time_slope_32_up": slope(fit, [z[n]["time_s"] for n in fit]) if len(fit) > 1 else None,
        "zipmap_memory_slope_32_up": slope(fit, [max(z[n]["peak_mb"], 1e-3) for n in fit]) if len(fit) > 1 else None,
    }
    afit = [n for n in fit if n in a]
    if len(afit) > 1:
        summary["attention_time_slope_32_up"] = slope(afit, [a[n]["time_s"] for n in afit])
    common = max(set(z) & set(a)) if set(z) & set(a) else None
    if common:
        summary["speedup_at_largest_common_n"] = {"frames": common, "ratio": a[common]["time_s"] / z[common]["time_s"]}
    summary["streaming_window_s_at_20"] = near(20)
    summary["streaming_window_s_at_end"] = near(fr[-1])
    summary["streaming_ratio_end_over_20"] = summary["streaming_window_s_at_end"] / summary["streaming_window_s_at_20"]
    results["summary"] = summary
    out.mkdir(parents=True, exist_ok=True)
    plot_scaling(results, out / "scaling.png")  # the caller writes the JSON beside it
    return results


def plot_scaling(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    for name, rows in results["methods"].items():
        n = [r["frames"] for r in rows]
        ax1.loglog(n, [r["time_s"] for r in rows], "o-", label=name)
        ax2.loglog(n, [max(r["peak_mb"], 1e-3) for r in rows], "o-", label=name)
    ax1.set(xlabel="frames", ylabel="seconds", title="time (log-log)")
    ax2.set(xlabel="frames", ylabel="peak MB above baseline", title="memory (log-log)")
    s = results["streaming"]
    ax3.plot(s["frames"], s["seconds_per_window"], ".-")
    ax3.set(xlabel="frames so far", ylabel="seconds per window", title="ZipMap streaming")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"small config, {results['size']} px, {results['device']}, {results['threads']} thread(s)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")


def query_latency(config: str, size_hw: tuple[int, int], frames: int, repeats: int, device: str) -> dict:
    """Seconds for one novel-view query from a stored state (random weights: speed only)."""
    from ..model.geometry import intrinsics_from_fov, ray_conditions

    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = small_config() if config == "small" else get_config(config)
    cfg = cfg.replace(enable_nvs=True)
    model = ZipMap(cfg).eval().to(dev)
    h, w = size_hw
    with torch.inference_mode(), inference_precision(dev, fast_bf16_active()):
        out = model(torch.rand(1, frames, 3, h, w, device=dev), window_size=0, chunk_frames=4)
        c2w = torch.eye(4)[None, :3].to(dev)
        rays = ray_conditions(c2w[None], intrinsics_from_fov(60, (h, w))[None, None].to(dev), (h, w))
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            model.render(rays, out.states)
            synchronize(dev)
            if i:
                times.append(time.perf_counter() - t0)
    return {"config": config, "size": [h, w], "seconds": float(np.median(times)), "times": times}


def full_config(config: str, frames: int, size_hw: tuple[int, int], device: str, threads: int) -> dict:
    """Seconds and peak RSS of one forward pass of an official configuration (random weights):
    the check that a CPU user can run the published model size at all."""
    torch.set_num_threads(threads)
    model = build(config, "ttt", size_hw[1]).to(device)
    images = torch.rand(1, frames, 3, *size_hw, device=device)
    dev = torch.device(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), inference_precision(dev, fast_bf16_active()):
        model(images, window_size=0, chunk_frames=1)
    synchronize(dev)
    dt = time.perf_counter() - t0
    return {
        "config": config,
        "frames": frames,
        "size": list(size_hw),
        "threads": threads,
        "seconds": dt,
        "per_frame_s": dt / frames,
        "peak_rss_gb": peak_rss_mb() / 1024,
    }


def newton_schulz_routes(shape: tuple[int, int, int], threads: int) -> dict:
    """Seconds for one Newton-Schulz of official-size fast weights: bf16 on the backend's own
    kernel (the parity route), bf16 through float32 products (`device.fast_cpu_bf16`), and float32."""
    from ..model import ttt

    torch.set_num_threads(threads)
    g = torch.randn(*shape)
    ttt.newton_schulz(g[:, :64, :128], 1)  # warm-up
    routes = {}
    for name, dtype, fast in (
        ("bf16_native", torch.bfloat16, False),
        ("bf16_fast", torch.bfloat16, True),
        ("float32", torch.float32, False),
    ):
        with fast_cpu_bf16(fast):
            t0 = time.perf_counter()
            ttt.newton_schulz(g, 5, dtype)
            routes[name] = time.perf_counter() - t0
    return {
        "shape": list(shape),
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seconds": routes,
        "native_over_fast": routes["bf16_native"] / routes["bf16_fast"],
    }


def generator_rate(
    image_hw: tuple[int, int], views: int, scenes: int, threads: int, device: str = "cpu", batch: int = 1, family: str = "classic"
) -> dict:
    """Scenes per second of the procedural generator (what feeds training), `batch` scenes a call
    on `device` (a GPU renders thousands of scenes a call)."""
    from ..training.captures import generate_captures
    from ..training.synthetic import generate

    if family == "captures":
        generate = generate_captures
    torch.set_num_threads(threads)
    dev = torch.device(device)
    generate(batch, views, 0, image_hw, dev)  # warm-up
    synchronize(dev)
    calls = max(1, scenes // batch)
    t0 = time.perf_counter()
    for i in range(calls):
        generate(batch, views, 1000 + i, image_hw, dev)
    synchronize(dev)
    dt = time.perf_counter() - t0
    return {
        "size": list(image_hw),
        "views": views,
        "scenes": calls * batch,
        "batch": batch,
        "device": device,
        "family": family,
        "threads": threads,
        "scenes_per_s": calls * batch / dt,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry for the per-measurement child processes."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("_one", "_stream"))
    p.add_argument("--mixer", default="ttt")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--total", type=int, default=500)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.kind == "_one":
        print(json.dumps(measure_once("small", a.mixer, a.frames, a.size, a.repeats, a.device, 8)))
    else:
        print(json.dumps(measure_streaming(a.size, a.total, 2, a.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
