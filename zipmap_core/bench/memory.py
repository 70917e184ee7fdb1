"""`zipmap bench memory`: the full-size model's time and peak memory per number of frames, ours
beside the authors' code, each run in a fresh process, the two interleaved in one run.

Memory is the process's peak resident set on a CPU (what the operating system must find) and
the peak allocated device memory on CUDA. Each side is fitted as a fixed part (weights, the
runtime, a working set) plus a slope per frame, and so is time. Ours runs as `zipmap
reconstruct` runs it (`--precision auto`: bfloat16 weights where the device multiplies bf16 in
hardware; the heads a reconstruction reads); the reference as the authors' code runs on the
device (float32 on a CPU; half-precision autocast on a GPU), all its heads. Both get zero images
at 518x392 and random weights, as the authors time theirs.

On a CPU the run also says how fast ours could be at all: one more process counts our run's
floating-point operations (fitted the same way, attention apart) and times this CPU's large matrix
product in the type ours runs in, and its fused attention at the model's shape. Our operations at
those rates are a floor on our time, whatever the kernels, so their time over that floor bounds
the speed ratio any implementation of the same arithmetic can reach on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SIZE_HW = (392, 518)
FRAMES = (1, 2, 4, 8)
GEMM_SIZE = 2048  # the square product timed for the CPU's rate: large enough to run at its peak


def _peak_gb(device: str) -> float:
    import torch

    from .micro import peak_rss_mb

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else peak_rss_mb() / 1024


def _ours(config: str, device: str, precision: str):
    """Our model, random weights, built straight in the type it runs in (no float32 copy)."""
    import torch

    from ..device import inference_half, select_device
    from ..model.config import get_config
    from ..model.zipmap import ZipMap
    from ..pipeline.reconstructor import Reconstructor, parameter_count

    cfg = get_config(config)
    dev = select_device(device)
    with torch.device("meta"):
        params = parameter_count(ZipMap(cfg))
    half = inference_half(dev, precision, params)
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(half or torch.float32)
    try:
        model = ZipMap(cfg)
    finally:
        torch.set_default_dtype(before)
    model.set_precision(half)  # the norms back to float32
    model.requires_grad_(False)
    rec = Reconstructor(model, dev)

    def run(images: torch.Tensor) -> None:
        with torch.inference_mode(), rec.precision():
            rec.model(images.to(rec.device), window_size=0, chunk_frames=rec.chunk_for(images[0]), point_head=False, keep_states=False)

    return run, rec.precision_name


def _reference(folder: str, device: str):
    import torch

    from .gpu import reference

    return reference(Path(folder), torch.device(device)), "float32" if device == "cpu" else "autocast"


def gemm_gflops(dtype, repeats: int = 3) -> float:
    """This CPU's rate for a large square matrix product in `dtype` (the best of `repeats`)."""
    import torch

    a, b = (torch.randn(GEMM_SIZE, GEMM_SIZE).to(dtype) for _ in range(2))
    a @ b  # warm-up: the library's kernels and buffers
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * GEMM_SIZE**3 / best / 1e9


def flop_counter(shapes: list | None = None):
    """PyTorch's operation counter, taught the CPU's fused attention (it knows the GPU's);
    `shapes` collects the attention calls' query shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
        if shapes is not None:
            shapes.append(tuple(query))
        return sdpa_flop_count(query, key, value)

    # the operator's name in PyTorch's operator set (the CPU's fused attention kernel)
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")  # noqa: B009
    return FlopCounterMode(display=False, custom_mapping={cpu_attention: attention})


def attention_gflops(shape: tuple[int, ...], dtype, repeats: int = 3) -> float:
    """This CPU's rate for fused attention at `shape` (batch, heads, tokens, head width): narrow
    heads multiply at a fraction of the large product's rate, so attention has a floor of its own."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import sdpa_flop_count

    q, k, v = (torch.randn(*shape).to(dtype) for _ in range(3))
    F.scaled_dot_product_attention(q, k, v)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)
        best = min(best, time.perf_counter() - t0)
    return sdpa_flop_count(q.shape, k.shape, v.shape) / best / 1e9


def count_operations(args: argparse.Namespace) -> None:
    """Our run's floating-point operations on 1 and 2 frames (products, convolutions and attention,
    which is most of the arithmetic; attention's apart), and the CPU's rates: the product in our
    type and in float32, and attention at the run's commonest shape."""
    import collections

    import torch

    torch.set_num_threads(args.threads)
    run, precision = _ours(args.config, args.device, args.precision)
    flops: dict[int, int] = {}
    attention: dict[int, int] = {}
    shapes: list[tuple[int, ...]] = []
    for n in (1, 2):
        with flop_counter(shapes) as counter:
            run(torch.zeros(1, n, 3, *SIZE_HW))
        flops[n] = counter.get_total_flops()
        attention[n] = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "scaled_dot_product" in str(op))
    ours_type = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision, torch.float32)
    shape = collections.Counter(shapes).most_common(1)[0][0]
    row = {
        "flops": flops,
        "attention_flops": attention,
        "precision": precision,
        "gemm_gflops": gemm_gflops(ours_type),
        "float32_gemm_gflops": gemm_gflops(torch.float32),
        "attention_shape": shape,
        "attention_gflops": attention_gflops(shape, ours_type),
    }
    print(json.dumps(row), flush=True)


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process: build, run once on N frames, print the figures."""
    import torch

    if args.count_operations:
        count_operations(args)
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    run, precision = (
        _reference(args.reference, args.device) if args.side == "reference" else _ours(args.config, args.device, args.precision)
    )
    built_s = time.perf_counter() - started
    after_build = _peak_gb(args.device)
    images = torch.zeros(1, args.frames, 3, *SIZE_HW)
    t0 = time.perf_counter()
    with torch.inference_mode():
        run(images)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "side": args.side,
                "frames": args.frames,
                "seconds": seconds,
                "peak_gb": _peak_gb(args.device),
                "built_gb": after_build,
                "build_s": built_s,
                "precision": precision,
            }
        ),
        flush=True,
    )


def fit(frames: list[int], values: list[float]) -> dict[str, float]:
    """value = fixed + per_frame * N, least squares."""
    per_frame, fixed = np.polyfit(np.asarray(frames, float), np.asarray(values, float), 1)
    return {"fixed": float(fixed), "per_frame": float(per_frame)}


def measure_once(side: str, frames: int, options: dict[str, Any], *flags: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "zipmap_core.bench.memory", "--side", side, "--frames", str(frames), *flags]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(options["threads"])})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {side} run on {frames} frames failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def memory(
    frames: list[int],
    reference: str | None,
    device: str,
    threads: int,
    precision: str = "auto",
    config: str = "aff_inv",
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Ours and (with `reference`, the authors' code folder) theirs at each N, interleaved."""
    sides = ["reference", "ours"] if reference else ["ours"]
    options = {"device": device, "threads": threads, "precision": precision, "config": config, "reference": reference}
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for n in frames:
        for side in sides:
            row = measure_once(side, n, options)
            runs[side].append(row)
            log(f"{side:>9} N={n}: {row['seconds']:.1f} s ({row['seconds'] / n:.1f} s/frame), peak {row['peak_gb']:.2f} GB")
    result: dict[str, Any] = {
        "what": "full-size ZipMap at 518x392, random weights, zero images, one fresh process per run; "
        + ("peak allocated device memory" if device.startswith("cuda") else "peak resident memory of the process"),
        "device": device,
        "threads": threads,
        "config": config,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "fits": {
            side: {"memory_gb": fit(frames, [r["peak_gb"] for r in rows]), "seconds": fit(frames, [r["seconds"] for r in rows])}
            for side, rows in runs.items()
        },
    }
    ours, last = result["fits"]["ours"], runs["ours"][-1]
    summary: dict[str, Any] = {
        "ours_fixed_gb": ours["memory_gb"]["fixed"],
        "ours_per_frame_gb": ours["memory_gb"]["per_frame"],
        "ours_seconds_per_frame": last["seconds"] / last["frames"],
        "ours_precision": last["precision"],
    }
    if reference:
        theirs, their_last = result["fits"]["reference"], runs["reference"][-1]
        summary.update(
            reference_fixed_gb=theirs["memory_gb"]["fixed"],
            reference_per_frame_gb=theirs["memory_gb"]["per_frame"],
            reference_seconds_per_frame=their_last["seconds"] / their_last["frames"],
            fixed_gb_ratio_vs_reference=ours["memory_gb"]["fixed"] / theirs["memory_gb"]["fixed"],
            per_frame_gb_ratio_vs_reference=ours["memory_gb"]["per_frame"] / max(theirs["memory_gb"]["per_frame"], 1e-9),
            cpu_speed_ratio_vs_reference=(their_last["seconds"] / their_last["frames"]) / (last["seconds"] / last["frames"]),
        )
    if device == "cpu":
        summary.update(arithmetic_bound(measure_once("ours", 0, options, "--count-operations"), last, runs.get("reference")))
        log(
            f"arithmetic floor: {summary['ours_tflop_fixed']:.2f} + {summary['ours_tflop_per_frame']:.2f} TFLOP a frame at "
            f"{summary['gemm_gflops']:.0f} GFLOPS (attention {summary['attention_gflops']:.0f}); "
            f"ours runs at {summary['ours_share_of_floor']:.0%} of the product-peak floor"
        )
    result["summary"] = summary
    if out is not None:
        plot(result, out / "memory.png")
    return result


def _fixed_and_per_frame(counts: dict[str, float]) -> tuple[float, float]:
    """Counts on 1 and 2 frames (keyed by the number, as JSON writes it) -> (fixed, per frame)."""
    one, two = (counts[str(n)] for n in (1, 2))
    return 2 * one - two, two - one


def arithmetic_bound(counted: dict[str, Any], last: dict[str, Any], reference: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Our operations, fitted as fixed plus per frame, and the least time they can take at the
    CPU's rates, at the largest N timed: every operation at the large product's rate (no kernel
    can pass it), and attention at its own measured rate (the fastest kernel this PyTorch has
    for its shape). With the reference, the speed ratios those floors would give."""
    fixed, per_frame = _fixed_and_per_frame(counted["flops"])
    att_fixed, att_per_frame = _fixed_and_per_frame(counted["attention_flops"])
    n, gemm, att = last["frames"], counted["gemm_gflops"] * 1e9, counted["attention_gflops"] * 1e9
    attention = att_fixed + att_per_frame * n
    floor_s = (fixed + per_frame * n) / gemm
    floor_attention_s = floor_s - attention / gemm + attention / att
    bound = {
        "ours_tflop_fixed": fixed / 1e12,
        "ours_tflop_per_frame": per_frame / 1e12,
        "ours_attention_tflop_per_frame": att_per_frame / 1e12,
        "gemm_gflops": counted["gemm_gflops"],
        "float32_gemm_gflops": counted["float32_gemm_gflops"],
        "attention_gflops": counted["attention_gflops"],
        "ours_floor_seconds_per_frame": floor_s / n,
        "ours_floor_with_attention_seconds_per_frame": floor_attention_s / n,
        "ours_share_of_floor": floor_s / last["seconds"],
    }
    if reference:
        their = reference[-1]["seconds"] / reference[-1]["frames"]
        bound["cpu_speed_ratio_bound"] = their / (floor_s / n)
        bound["cpu_speed_ratio_bound_with_attention"] = their / (floor_attention_s / n)
    return bound


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    fig, (mem, sec) = plt.subplots(1, 2, figsize=(10, 4))
    for side, rows in result["runs"].items():
        n = [r["frames"] for r in rows]
        mem.plot(n, [r["peak_gb"] for r in rows], "o-", label=side)
        sec.plot(n, [r["seconds"] / r["frames"] for r in rows], "o-", label=side)
    floor = result.get("summary", {})
    if "gemm_gflops" in floor:  # the least time our arithmetic takes at the CPU's rates
        n = [r["frames"] for r in result["runs"]["ours"]]
        gemm, attention = floor["gemm_gflops"] / 1e3, floor["attention_gflops"] / 1e3  # TFLOP a second
        at_peak = [(floor["ours_tflop_fixed"] / k + floor["ours_tflop_per_frame"]) / gemm for k in n]
        extra = floor["ours_attention_tflop_per_frame"] * (1 / attention - 1 / gemm)  # attention at its own rate
        sec.plot(n, at_peak, "--", color="grey", label="ours at the product peak")
        sec.plot(n, [t + extra for t in at_peak], ":", color="grey", label="... with attention at its rate")
    mem.set(xlabel="frames", ylabel="peak memory (GB)", title="memory")
    sec.set(xlabel="frames", ylabel="seconds per frame", title="time")
    for ax in (mem, sec):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="one measurement of `zipmap bench memory` (run by it)")
    p.add_argument("--side", choices=("ours", "reference"), required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto")
    p.add_argument("--config", default="aff_inv")
    p.add_argument("--reference")
    p.add_argument("--count-operations", action="store_true", help="count our operations and time the CPU's products instead")
    worker(p.parse_args())
