"""`zipmap bench distributed`: one reconstruction split across 1 and 2 gloo processes on this
CPU (time, and peak memory per process above its model), and a projection for GPUs: bytes
all-reduced per forward against the token memory each process no longer holds."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..model.config import get_config
from ..model.shard import FrameShard, split_counts
from .micro import build, peak_rss_mb, rss_mb


def _rank(rank: int, world: int, init: str, frames: int, size: int, threads: int, out: str) -> None:
    """One process of a split forward of the small configuration (random weights)."""
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = build("small", "ttt", size)
        shard = FrameShard(rank, world, split_counts(frames, world))
        gen = torch.Generator().manual_seed(rank)
        images = torch.rand(1, shard.local, 3, size, size, generator=gen)
        with torch.inference_mode():
            model(images[:, :2], window_size=0, point_head=False, shard=FrameShard(rank, world, [2] * world))
            base = rss_mb()
            dist.barrier()
            t0 = time.perf_counter()
            model(images, window_size=0, chunk_frames=8, point_head=False, shard=shard)
            dist.barrier()
            seconds = time.perf_counter() - t0
        peak = peak_rss_mb() - base
        Path(f"{out}.{rank}").write_text(json.dumps({"seconds": seconds, "peak_mb": peak, "frames": shard.local}))
    finally:
        dist.destroy_process_group()


def measure(frames: int, world: int, size: int, threads_total: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.start_processes(
            _rank,
            args=(world, f"file://{tmp}/rendezvous", frames, size, max(1, threads_total // world), f"{tmp}/out"),
            nprocs=world,
            start_method="spawn",
        )
        ranks = [json.loads(Path(f"{tmp}/out.{r}").read_text()) for r in range(world)]
    return {
        "frames": frames,
        "processes": world,
        "seconds": max(r["seconds"] for r in ranks),
        "peak_mb_per_process": [r["peak_mb"] for r in ranks],
    }


def projection(
    config: str = "aff_inv", image_hw: tuple[int, int] = (392, 518), frames: int = 750, gpus: tuple[int, ...] = (1, 8, 16, 64)
) -> dict:
    """What a split costs and saves at full size. All-reduce: per global layer, the three
    fast-weight gradients (bf16 under autocast, as the TTT update computes them), once per
    forward in bidirectional order; a ring all-reduce sends 2(N-1)/N of that per process. Token
    memory: the aggregator's running tokens plus the four saved levels (2C wide) the heads read,
    in bf16, for the frames a process holds."""
    cfg = get_config(config)
    c, layers = cfg.embed_dim, cfg.aggregator.depth
    d, hidden = cfg.ttt.head_dim, int(cfg.ttt.head_dim * cfg.ttt.inter_multi)
    heads = c // d
    per_layer = 3 * heads * d * hidden * 2  # bytes: w0, w1, w2 gradients in bf16
    tokens = (image_hw[0] // cfg.patch_size) * (image_hw[1] // cfg.patch_size) + cfg.patch_start_idx
    token_bytes_per_frame = tokens * c * 2 * (1 + 2 * len(cfg.aggregator.dpt_layer_idx))
    rows = []
    for n in gpus:
        rows.append(
            {
                "processes": n,
                "frames_per_process": int(np.ceil(frames / n)),
                "token_gb_per_process": token_bytes_per_frame * np.ceil(frames / n) / 2**30,
                "allreduce_mb_sent_per_process": layers * per_layer * 2 * (n - 1) / n / 2**20,
            }
        )
    return {
        "config": config,
        "image_hw": list(image_hw),
        "frames": frames,
        "global_layers": layers,
        "allreduce_mb_per_layer_per_update": per_layer / 2**20,
        "allreduce_mb_per_forward": layers * per_layer / 2**20,
        "token_mb_per_frame": token_bytes_per_frame / 2**20,
        "per_process_count": rows,
    }


def distributed(counts: list[int], size: int, threads: int, log=print) -> dict:
    rows = []
    for frames in counts:
        for world in (1, 2):
            row = measure(frames, world, size, threads)
            rows.append(row)
            log(
                f"N={frames:4d}, {world} process(es): {row['seconds']:.1f} s, peak "
                + ", ".join(f"{m:.0f}" for m in row["peak_mb_per_process"])
                + " MB per process above the model"
            )
    proj = projection()
    log(
        f"full size, {proj['frames']} frames at {proj['image_hw'][1]}x{proj['image_hw'][0]}: "
        f"{proj['allreduce_mb_per_forward']:.0f} MB all-reduced per forward "
        f"({proj['allreduce_mb_per_layer_per_update']:.1f} MB per layer), tokens {proj['token_mb_per_frame']:.1f} MB per frame"
    )
    for r in proj["per_process_count"]:
        log(
            f"  {r['processes']:3d} GPUs: {r['frames_per_process']} frames, {r['token_gb_per_process']:.1f} GB of tokens, "
            f"{r['allreduce_mb_sent_per_process']:.0f} MB sent per process"
        )
    by = {(r["frames"], r["processes"]): r for r in rows}
    largest = max(counts)
    summary = {
        "largest_frames": largest,
        "memory_ratio_2_over_1": max(by[(largest, 2)]["peak_mb_per_process"]) / by[(largest, 1)]["peak_mb_per_process"][0],
        "time_ratio_2_over_1": by[(largest, 2)]["seconds"] / by[(largest, 1)]["seconds"],
    }
    return {"size": size, "threads": threads, "cpus": os.cpu_count(), "rows": rows, "projection": proj, "summary": summary}
