"""2D rotary position embedding of the frame blocks.

Half of each head's channels rotate with the patch row, the other half with the column, so
attention within a frame sees relative 2D offsets. Special tokens sit at position 0 and patches
at (row + 1, col + 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding2D(nn.Module):
    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _tables(self, dim: int, length: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (dim, length, device, dtype)
        if key not in self._cache:
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            angles = torch.outer(torch.arange(length, device=device, dtype=inv_freq.dtype), inv_freq)
            angles = torch.cat((angles, angles), dim=-1).to(dtype)
            self._cache[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self._cache[key]

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _rotate(self, x: Tensor, positions: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        c = cos[positions][:, None]
        s = sin[positions][:, None]
        return x * c + self._rotate_half(x) * s

    def forward(self, x: Tensor, pos: Tensor, length: int | None = None) -> Tensor:
        """x: [B, heads, N, head_dim]; pos: [B, N, 2] integer (row, col), each below `length`.
        Give `length` (the caller knows its grid): reading it off `pos` is a device-to-host
        copy that stalls a GPU, once per chunk and layer."""
        dim = x.shape[-1] // 2
        cos, sin = self._tables(dim, length if length is not None else int(pos.max()) + 1, x.device, x.dtype)
        rows, cols = x.chunk(2, dim=-1)
        pos = pos.long()
        return torch.cat((self._rotate(rows, pos[..., 0], cos, sin), self._rotate(cols, pos[..., 1], cos, sin)), dim=-1)


def position_limit(grid_h: int, grid_w: int) -> int:
    """One more than the largest position `patch_positions` gives (patches sit at index + 1)."""
    return max(grid_h, grid_w) + 1


def patch_positions(batch: int, grid_h: int, grid_w: int, num_special: int, device: torch.device) -> Tensor:
    """Positions [batch, num_special + grid_h * grid_w, 2] for one frame's token row."""
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    grid = torch.stack((ys.reshape(-1), xs.reshape(-1)), dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat((special, grid), dim=0).unsqueeze(0).expand(batch, -1, -1)
