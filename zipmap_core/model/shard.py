"""One reconstruction split across processes (sequence parallelism over frames).

A `FrameShard` says which contiguous run of frames this process holds and carries the process
group; the model receives it explicitly (no global state). ZipMap splits unusually well: frame
blocks and DPT heads work frame by frame; a TTT update is a sum over tokens, so each process sums
its own frames' gradients and one all-reduce of the three fast-weight gradients per layer gives
every process the same state; the camera head needs the other frames' camera tokens only, a
small all-gather. torch.distributed is imported only when a shard is used, so the single-process
path never pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def split_counts(frames: int, world: int) -> list[int]:
    """Contiguous frames per rank, as even as possible, the first ranks taking one more."""
    base, extra = divmod(frames, world)
    return [base + (r < extra) for r in range(world)]


@dataclass
class FrameShard:
    rank: int
    world: int
    counts: list[int]  # frames held by each rank, in rank order
    group: Any = None  # a torch.distributed process group (None: the default group)

    @property
    def first(self) -> int:
        """Global index of this rank's first frame."""
        return sum(self.counts[: self.rank])

    @property
    def local(self) -> int:
        return self.counts[self.rank]

    def all_reduce_(self, tensors: list[Tensor]) -> None:
        """Sums each tensor over the ranks, in place (the TTT update's gradients)."""
        import torch.distributed as dist

        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)

    def all_gather_frames(self, t: Tensor, dim: int = 1) -> Tensor:
        """Every rank's frames of `t` (this rank holds its own along `dim`), in frame order."""
        import torch.distributed as dist

        most = max(self.counts)
        pad = list(t.shape)
        pad[dim] = most - t.shape[dim]
        padded = torch.cat((t, t.new_zeros(pad)), dim=dim).contiguous() if pad[dim] else t.contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, self.counts)], dim=dim)

    def gather_frames_to_root(self, t: Tensor, dim: int = 0) -> Tensor | None:
        """Rank 0 receives every rank's frames of `t` in frame order; the others get None (they
        never hold the whole result)."""
        import torch.distributed as dist

        most = max(self.counts)
        pad = list(t.shape)
        pad[dim] = most - t.shape[dim]
        padded = torch.cat((t, t.new_zeros(pad)), dim=dim).contiguous() if pad[dim] else t.contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(padded, parts, dst=0, group=self.group)
        if parts is None:
            return None
        return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, self.counts)], dim=dim)
