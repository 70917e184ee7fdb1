"""`zipmap bench ...`: the registry of benchmarks (name -> runner) and their command line; results
are written atomically as JSON beside the plots the benchmarks draw."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path

Result = tuple[str, Any]  # (JSON file name, what was measured)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="benchmarks: scaling with the number of frames, query latency, full configuration, the pipeline around the network, "
        "processes, COLMAP refinement, the classical engine's mappers, the dense stage and photo renders, the studio's startup "
        "and a long session (soak)",
    )
    b.add_argument("which", choices=tuple(BENCHMARKS))
    b.add_argument("-o", "--output", default="out/bench")
    b.add_argument("--device", help="default: cpu (gpu: cuda where there is one)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--size", type=int, help="model image width (default: 224; pipeline: 518)")
    b.add_argument("--repeats", type=int, help="default: 3 (gpu: 10, as the authors time)")
    b.add_argument("--frames", help="comma-separated frame counts (default: scaling 8..256, pipeline 32..1000, distributed 64..256)")
    b.add_argument("--full", action="store_true", help="also N=512")
    b.add_argument("--attention-max", type=int, default=256, help="largest N for the quadratic baseline")
    b.add_argument("--exhaustive-max", type=int, default=64, help="refine: largest N timed with exhaustive matching")
    b.add_argument("--stream-frames", type=int, help="frames streamed (default: scaling 500, pipeline 1000, soak 2000)")
    b.add_argument("--renders", type=int, help="soak: novel views rendered from a moving camera (default 300)")
    b.add_argument("--video", help="pipeline: this video instead of a generated 1080p one")
    b.add_argument("--scene", help="dense: a .zipmap of the sample video registered already (at least the largest --frames)")
    b.add_argument("--batch", type=int, help="generator: scenes per call (default: 1 on a CPU, 1024 on a GPU)")
    b.add_argument("--config", default="aff_inv", help="gpu, memory: the configuration timed (an official one, or small)")
    b.add_argument("--height", type=int, default=392, help="gpu: image height (width: --size, default 518)")
    b.add_argument("--reference", help="gpu, memory: a folder with the authors' code (kept outside this repository), timed beside ours")
    b.add_argument("--skip-full", action="store_true", help="query: skip the full configuration")
    b.add_argument(
        "--fast-cpu-bf16", action="store_true", help="float32 products for the bf16 Newton-Schulz (official configurations on CPU)"
    )
    b.add_argument("--compile", action="store_true", help="gpu: also time ours with compiled TTT kernels")
    b.add_argument("--checkpoint", help="startup: the model the studio loads (default: the bundled one)")
    b.add_argument("--precision", default="auto", help="memory: ours in this precision (default auto, as zipmap reconstruct)")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..device import fast_cpu_bf16

    out = Path(args.output)
    if args.which != "gpu":
        args.device, args.repeats = args.device or "cpu", args.repeats or 3
    with fast_cpu_bf16(args.fast_cpu_bf16):
        name, result = BENCHMARKS[args.which](args)
    with atomic_path(out / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {out / f'{name}.json'}")
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def _frames(args: argparse.Namespace, default: str) -> list[int]:
    return [int(f) for f in (args.frames or default).split(",")]


def run_scaling(args: argparse.Namespace) -> Result:
    from . import micro

    frames = _frames(args, "8,16,32,64,128,256" + (",512" if args.full else ""))
    res = micro.scaling(
        frames,
        args.size or 224,
        args.repeats,
        args.device,
        args.threads,
        args.attention_max,
        args.stream_frames or 500,
        Path(args.output),
        log=_log,
    )
    print(json.dumps(res["summary"], indent=2))
    return "scaling", res


def run_pipeline(args: argparse.Namespace) -> Result:
    import torch

    from . import pipeline

    torch.set_num_threads(args.threads)
    res = pipeline.pipeline(
        _frames(args, "32,128,512,1000"),
        args.size or 518,
        args.stream_frames or 1000,
        Path(args.video) if args.video else None,
        Path(args.output),
        log=_log,
    )
    print(json.dumps(res["summary"], indent=2))
    return "pipeline", res


def run_refine(args: argparse.Namespace) -> Result:
    from .refine import bench_refine

    res = bench_refine(_frames(args, "16,32,64,128,256"), args.exhaustive_max, Path(args.output), log=_log)
    print(json.dumps(res["summary"], indent=2))
    return "refine", res


def run_gpu(args: argparse.Namespace) -> Result:
    import torch

    from . import gpu

    counts = _frames(args, ",".join(map(str, gpu.PAPER_FRAMES)))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    res = gpu.gpu(
        counts,
        args.config,
        (args.height, args.size or 518),
        device,
        Path(args.reference) if args.reference else None,
        repeats=args.repeats or 10,
        compiled=args.compile,
        log=_log,
    )
    return "gpu_benchmark", res


def run_distributed(args: argparse.Namespace) -> Result:
    from . import distributed

    res = distributed.distributed(_frames(args, "64,128,256"), args.size or 224, args.threads, log=_log)
    print(json.dumps(res["summary"], indent=2))
    return "distributed", res


def run_generator(args: argparse.Namespace) -> Result:
    from . import micro

    batch = args.batch or (1024 if args.device.startswith("cuda") else 1)
    rows = [
        micro.generator_rate(hw, 8, max(10, 4 * batch), args.threads, args.device, batch, family)
        for family in ("classic", "captures")
        for hw in ((84, 112), (168, 224))
    ]
    for r in rows:
        print(
            f"{r['family']:>8} {r['size'][1]}x{r['size'][0]}, {r['views']} views: {r['scenes_per_s']:.2f} scenes/s "
            f"on {r['device']}, {r['batch']} a call"
        )
    return "generator", rows


def run_newton_schulz(args: argparse.Namespace) -> Result:
    from . import micro

    r = micro.newton_schulz_routes((1, 1024, 2048), args.threads)
    for name, sec in r["seconds"].items():
        print(f"{name:>12}: {sec:.2f} s per 1024x2048 fast weight ({r['cpu_capability']}, {r['threads']} thread(s))")
    print(f"bf16 on the backend's kernel / bf16 via float32 products: {r['native_over_fast']:.1f}x")
    return "newton_schulz", r


def run_query(args: argparse.Namespace) -> Result:
    import torch

    from . import micro

    torch.set_num_threads(args.threads)
    rows = [micro.query_latency("small", (84, 112), 8, args.repeats, args.device)]
    if not args.skip_full:
        rows.append(micro.query_latency("state_query", (392, 518), 2, max(1, args.repeats // 2), args.device))
    for r in rows:
        print(f"{r['config']:>12} {r['size'][1]}x{r['size'][0]}: {r['seconds'] * 1000:.0f} ms per query")
    return "query", rows


def run_full_config(args: argparse.Namespace) -> Result:
    from . import micro

    r = micro.full_config("aff_inv", 4, (392, 518), args.device, args.threads)
    r["fast_cpu_bf16"] = args.fast_cpu_bf16
    print(
        f"full configuration, 4 frames at 518x392 on {args.device}: {r['seconds']:.1f} s "
        f"({r['per_frame_s']:.1f} s/frame), peak RSS {r['peak_rss_gb']:.1f} GB"
    )
    return "full_config", r


def run_memory(args: argparse.Namespace) -> Result:
    from .memory import FRAMES, memory

    res = memory(
        _frames(args, ",".join(map(str, FRAMES))),
        args.reference,
        args.device,
        args.threads,
        args.precision,
        args.config,
        Path(args.output),
        log=_log,
    )
    print(json.dumps(res["summary"], indent=2))
    return "memory", res


def run_dense(args: argparse.Namespace) -> Result:
    from .dense import bench_dense

    res = bench_dense(_frames(args, "12,24,48,96"), Path(args.output), log=_log, scene=Path(args.scene) if args.scene else None)
    print(json.dumps(res["summary"], indent=2))
    return "dense", res


def run_classical(args: argparse.Namespace) -> Result:
    from .classical import bench_classical

    res = bench_classical(_frames(args, "24,48,96,192"), Path(args.output), log=_log)
    print(json.dumps(res["summary"], indent=2))
    return "classical", res


def run_soak(args: argparse.Namespace) -> Result:
    from .soak import soak

    res = soak(args.stream_frames or 2000, args.renders or 300, Path(args.output), log=_log)
    print(json.dumps(res["summary"], indent=2))
    return "soak", res


def run_startup(args: argparse.Namespace) -> Result:
    from .startup import startup

    res = startup(args.repeats, args.checkpoint, log=_log)
    print(json.dumps(res["summary"], indent=2))
    return "startup", res


# every `zipmap bench` command: name -> runner returning (JSON name, results)
BENCHMARKS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "scaling": run_scaling,
    "query": run_query,
    "full-config": run_full_config,
    "generator": run_generator,
    "newton-schulz": run_newton_schulz,
    "pipeline": run_pipeline,
    "distributed": run_distributed,
    "gpu": run_gpu,
    "refine": run_refine,
    "startup": run_startup,
    "memory": run_memory,
    "dense": run_dense,
    "classical": run_classical,
    "soak": run_soak,
}
