"""One reconstruction across processes or machines (torch.distributed): frames split
contiguously, TTT updates all-reduced, rank 0 gathering the outputs and writing the scene.

The same worker runs under `torchrun` (one process per GPU, any number of machines) and under
`zipmap reconstruct --nproc N`, whose launcher starts N local processes, watches them, and ends
the run with a clear message when one dies or hangs: the others then fail at their next
collective or at the group's timeout, nothing is published, and no process outlives the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch

from ..cancel import CancelToken, Progress, reporter
from ..errors import PEER_LOST_EXIT, DistributedError, PeerLostError, ZipMapError
from ..io.inputs import InputSet
from ..io.preprocess import Crop
from ..io.reconstruction import Reconstruction
from ..model.shard import FrameShard, split_counts
from .assembly import assemble, host_states
from .recipe import StageClock, frame_outputs, model_images, original_sizes, record_run, run_network
from .reconstruct_options import ReconstructOptions
from .runtime import NetworkRuntime


@dataclass
class Launch:
    """This process's place in a launch (from torchrun's or our launcher's environment)."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_env(cls) -> Launch | None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(
            int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        )


PEER_SIGNS = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout", "broken pipe", "socket", "store")


@contextlib.contextmanager
def peers_answering(launch: Launch) -> Iterator[None]:
    """Inside, a collective that fails because another process died or stopped answering (gloo's
    "Connection closed by peer", a timeout, the rendezvous store gone) becomes one line naming
    this process, not a traceback: the run is lost either way, and the launcher (ours or
    torchrun) says which process failed."""
    try:
        yield
    except ZipMapError:  # this process's own failure (a download, a checkpoint, its memory plan), said as it is
        raise
    except RuntimeError as exc:
        said = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, getattr(torch.distributed, "DistError", ())) and not any(s in said.lower() for s in PEER_SIGNS):
            raise
        other = f"process {1 - launch.rank}" if launch.world == 2 else "another process"  # with two, the one peer is named
        raise PeerLostError(
            f"process {launch.rank} of {launch.world}: {other} of the split run died or stopped answering "
            f"({said[:160]}); nothing was written"
        ) from None


def init_group(launch: Launch, timeout_s: float) -> torch.device:
    """Joins the process group: NCCL with one CUDA device per process where there are GPUs,
    gloo on CPUs. Returns this process's device."""
    import torch.distributed as dist

    if torch.cuda.is_available():
        device = torch.device("cuda", launch.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // launch.local_world))
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world, timeout=timedelta(seconds=timeout_s))
    return device


def reconstruct_split(
    runtime: NetworkRuntime,
    inputs: InputSet,
    shard: FrameShard,
    options: ReconstructOptions,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> Reconstruction | None:
    """This process's part of a reconstruction of `inputs` (every process lists the same
    frames); rank 0 returns the whole Reconstruction, the others None."""
    mode, points_from, keep_state = options.mode, options.network.points_from, options.network.keep_state
    report = reporter(progress, cancel or CancelToken())
    size = options.resolution or runtime.cfg.img_size
    clock = StageClock()
    with clock.stage("preprocess"):
        mine = inputs.frames[shard.first : shard.first + shard.local]
        pad_to, crops = _common_size(inputs, mode, size)
        images, _ = model_images(mine, mode, size, report, pad_to=pad_to)
    with clock.stage("model"):
        out = run_network(runtime, images, report, point_head=points_from == "point_head", shard=shard)
    pose_enc, depth, depth_conf = frame_outputs(out)  # cameras: every rank holds all (all-gathered tokens)
    mine_out = {"images": images.contiguous().to(runtime.device), "depth": depth.float(), "depth_conf": depth_conf.float()}
    if out.local_points is not None:
        mine_out["points"] = out.local_points[0].float()
    whole = {k: shard.gather_frames_to_root(v) for k, v in mine_out.items()}  # None on ranks other than 0
    if shard.rank != 0:
        return None
    w = {k: v for k, v in whole.items() if v is not None}
    with clock.stage("assemble"):
        recon = assemble(
            inputs.names(), w["images"], pose_enc, w["depth"], w["depth_conf"], w.get("points"), points_from, original_sizes(crops)
        )
        if runtime.model.keeps_state(keep_state):
            recon.state = host_states(out.states)
    return record_run(recon, runtime, clock, mode=mode, processes=shard.world, frames_per_process=shard.counts, **inputs.report())


def _common_size(inputs: InputSet, mode: str, size: int) -> tuple[tuple[int, int], list[Crop]]:
    """The padded model image size of the whole set, the same on every rank, and every frame's
    crop (the original sizes come from these, as in every driver)."""
    made = [(f.prepared[1], f.prepared[2]) if f.prepared is not None else f.model_input(mode, size) for f in inputs.frames]
    shapes = [t.shape[-2:] for t, _ in made]
    return (max(s[0] for s in shapes), max(s[1] for s in shapes)), [c for _, c in made]


def make_shard(frames: int, launch: Launch) -> FrameShard:
    if frames < launch.world:
        raise DistributedError(f"{frames} frames cannot be split across {launch.world} processes")
    return FrameShard(launch.rank, launch.world, split_counts(frames, launch.world))


# ---- the local launcher ------------------------------------------------------------------------------
def die_with_parent() -> None:
    """Linux: this process is killed when its launcher dies, so no worker is ever orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SETTLE_S = 0.5  # after a first failure, how long the launcher lets the others end before it names one


def failure_line(codes: list[int | None]) -> str:
    """Which process failed, from the exit codes (None: still running): one killed by a signal
    first; else, when the ones that ended lost their peers (`PEER_LOST_EXIT`) while one still
    runs, the one that stopped answering; else the first that failed on its own."""
    world = len(codes)
    killed = [(r, c) for r, c in enumerate(codes) if c is not None and c < 0]
    failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
    silent = [r for r, c in enumerate(codes) if c is None]
    if killed:
        rank, why = killed[0][0], f"killed by signal {-killed[0][1]}"
    elif silent and failed and all(c == PEER_LOST_EXIT for _, c in failed):
        rank, why = silent[0], "stopped answering"
    else:
        first = next((f for f in failed if f[1] != PEER_LOST_EXIT), failed[0])  # one that failed on its own, before its peers
        rank, why = first[0], f"exit code {first[1]}"
    return f"process {rank} of {world} failed ({why}); the run was stopped and nothing was written"


def launch_local(nproc: int, argv: list[str], timeout_s: float, poll_s: float = 0.1) -> int:
    """Runs `zipmap ARGV` in `nproc` processes on this machine and waits for them. When one
    fails, the others are stopped and the failure is raised as a DistributedError."""
    port = free_port()
    procs = []
    try:
        for rank in range(nproc):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(nproc),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(nproc),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "ZIPMAP_LAUNCHED": "1",
                "ZIPMAP_DIST_TIMEOUT": str(timeout_s),
            }
            procs.append(subprocess.Popen([sys.executable, "-m", "zipmap_core.cli", *argv], env=env))
        while True:
            codes = [p.poll() for p in procs]
            if any(c not in (None, 0) for c in codes):
                time.sleep(SETTLE_S)  # the others' own ends, which say who failed first
                raise DistributedError(failure_line([p.poll() for p in procs]))
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # also ends a stopped (hung) process
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
