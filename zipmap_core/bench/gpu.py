"""`zipmap bench gpu`: the full model timed as the authors time theirs (zero images at 392x518,
half-precision autocast, the mean of 10 runs after 2 warm-ups, N frames from 5 to 750): frames
per second, peak device memory, and the novel-view query latency with the scene state resident
on the device. With `--reference DIR` (a copy of the authors' public code, kept outside the
repository for measuring only), their implementation runs in the same process on the same
inputs, and the ratio of the two is recorded.

It runs anywhere (a small configuration on a CPU is how its tests run it); the figures that
matter come from a GPU.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..device import gpu_half_dtype, inference_precision, synchronize
from ..errors import InputError
from ..model.config import get_config, small_config
from ..model.geometry import intrinsics_from_fov, ray_conditions
from ..model.zipmap import ZipMap

PAPER_FRAMES = (5, 10, 25, 50, 100, 200, 400, 750)
# the authors' constructor for the main model, as their headless inference script builds it
REFERENCE_CONFIG = {
    "img_size": 518,
    "patch_size": 14,
    "embed_dim": 1024,
    "enable_camera": True,
    "enable_local_point": True,
    "enable_depth": True,
    "ttt_config": {
        "ttt_mode": True,
        "params": {"bias": True, "head_dim": 1024, "inter_multi": 2, "base_lr": 0.01, "muon_update_steps": 5, "use_gate_fn": True},
    },
    "other_config": {"affine_invariant": True},
}


def _peak_bytes(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def time_forward(
    run: Callable[[torch.Tensor], object], frames: int, size_hw: tuple[int, int], device: torch.device, warmup: int = 2, repeats: int = 10
) -> dict:
    """Mean seconds of `run(images)` on zero images [1, frames, 3, H, W], after `warmup` runs;
    the device is synchronised around every timed run."""
    images = torch.zeros(1, frames, 3, *size_hw, device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            synchronize(device)
            t0 = time.perf_counter()
            run(images)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    seconds = float(np.mean(times))
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_gb": _peak_bytes(device) / 2**30}


def ours(config: str, size: int, device: torch.device, chunk: int | None, compiled: bool = False) -> Callable[[torch.Tensor], object]:
    torch.manual_seed(0)
    cfg = small_config(size) if config == "small" else get_config(config)
    model = ZipMap(cfg).eval().to(device)
    model.set_compiled_kernels(compiled)

    def run(images: torch.Tensor):
        with inference_precision(device):
            return model(images, window_size=0, chunk_frames=chunk, point_head=False)

    return run


def reference(folder: Path, device: torch.device) -> Callable[[torch.Tensor], object]:
    """The authors' model (random weights) from their source folder, called as their inference
    script calls it."""
    if not (folder / "zipmap" / "models" / "ZipMap.py").exists():
        raise FileNotFoundError(f"{folder} holds no zipmap/models/ZipMap.py: give the folder of the authors' code")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("zipmap.models.ZipMap")
    except ImportError as exc:
        raise InputError(f"the reference code does not import here ({exc}); install what it needs (einops, ...)") from exc
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(0)
    model = module.ZipMap(**REFERENCE_CONFIG).eval().to(device)
    dtype = gpu_half_dtype(device)

    def run(images: torch.Tensor):
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            return model(images)

    return run


def query_ms(config: str, size_hw: tuple[int, int], device: torch.device, frames: int = 8, repeats: int = 10) -> float:
    """Milliseconds of one novel-view query with the scene state already on the device."""
    torch.manual_seed(0)
    cfg = small_config(size_hw[1]) if config == "small" else get_config("state_query")
    cfg = cfg.replace(enable_nvs=True)
    model = ZipMap(cfg).eval().to(device)
    h, w = size_hw
    with torch.inference_mode(), inference_precision(device):
        states = model(torch.zeros(1, frames, 3, h, w, device=device), window_size=0, point_head=False).states
        rays = ray_conditions(torch.eye(4, device=device)[None, None, :3], intrinsics_from_fov(60, (h, w))[None, None].to(device), (h, w))
        times = []
        for i in range(2 + repeats):
            synchronize(device)
            t0 = time.perf_counter()
            model.render(rays, states)
            synchronize(device)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return 1000 * float(np.mean(times))


def gpu(
    frames: list[int],
    config: str,
    size_hw: tuple[int, int],
    device_name: str,
    reference_dir: Path | None,
    repeats: int = 10,
    chunk: int | None = None,
    compiled: bool = False,
    log=print,
) -> dict:
    device = torch.device(device_name)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    runs = {"ours": ours(config, size_hw[1], device, chunk)}
    if compiled:  # the warm-up runs compile, outside the timing
        runs["ours_compiled"] = ours(config, size_hw[1], device, chunk, compiled=True)
    if reference_dir is not None:
        runs["reference"] = reference(Path(reference_dir), device)
    rows = []
    for n in frames:
        row: dict = {"frames": n}
        for label, run in runs.items():
            try:
                row[label] = time_forward(run, n, size_hw, device, repeats=repeats)
            except torch.OutOfMemoryError:
                row[label] = {"frames": n, "out_of_memory": True}
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        log(
            f"N={n:4d}: "
            + "  ".join(
                f"{k} {v['fps']:.1f} frames/s, {v['peak_gb']:.1f} GB" if "fps" in v else f"{k} OOM" for k, v in row.items() if k != "frames"
            )
        )
    last = rows[-1]
    result = {
        "device_name": name,
        "config": config,
        "size": list(size_hw),
        "repeats": repeats,
        "dtype": str(gpu_half_dtype(device)) if device.type == "cuda" else "float32",
        "rows": rows,
        "fps_at_largest": last["ours"].get("fps"),
        "largest_frames": last["frames"],
        "query_ms": query_ms(config, size_hw, device),
    }
    if last["frames"] == 750:
        result["fps_at_750"] = last["ours"].get("fps")
    if "ours_compiled" in last and "fps" in last["ours_compiled"] and "fps" in last["ours"]:
        result["compiled_over_eager"] = last["ours_compiled"]["fps"] / last["ours"]["fps"]
    if "reference" in last and "fps" in last["reference"] and "fps" in last["ours"]:
        result["ratio_vs_reference"] = last["ours"]["fps"] / last["reference"]["fps"]
        result["peak_ratio_vs_reference"] = last["ours"]["peak_gb"] / max(last["reference"]["peak_gb"], 1e-9)
    log(f"query with the state on the device: {result['query_ms']:.1f} ms")
    return result
