"""DPT dense heads: depth (+confidence), camera-frame points, and novel-view RGB-D.

Four token levels are projected to feature maps at 4x, 2x, 1x and 1/2x the patch grid, fused
coarse to fine, and upsampled to full resolution. Frames are processed in chunks: the heads are
per-frame, so this bounds memory without changing any output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DPTConfig

DENSE_CHUNK_FRAMES = 8  # frames per pass through a dense head: the full-resolution activations stay small
POSITION_ROWS = 32  # rows of a feature map given their position embedding at a time


def _uv_grid(width: int, height: int, aspect: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pixel-centre coordinates normalised by the image diagonal, [height, width, 2] as (u, v)."""
    diag = math.sqrt(aspect**2 + 1.0)
    span_x, span_y = aspect / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype, device=device)
    u, v = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack((u, v), dim=-1)


def wide_float(device: torch.device) -> torch.dtype:
    """float64 for the position tables, as the reference computes them; Apple's MPS has no
    float64, so there float32 (the tables differ by ~1e-7, far inside every tolerance)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _sincos(values: Tensor, dim: int, omega0: float = 100.0) -> Tensor:
    wide = wide_float(values.device)
    omega = torch.arange(dim // 2, dtype=wide, device=values.device) / (dim / 2.0)
    angles = values.reshape(-1, 1).to(wide) * (1.0 / omega0**omega)
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def add_position_embedding(x: Tensor, image_w: int, image_h: int, ratio: float = 0.1) -> Tensor:
    """Adds a fixed 2D sin/cos embedding of the (aspect-aware) pixel position to a feature map.

    The table is made and added `POSITION_ROWS` rows at a time: made whole in float64 for a
    full-resolution map (128 channels at 518x392) it held about 0.3 GB at once, the largest
    part of a reconstruction's working set beyond the weights. Every entry is computed and
    added exactly as whole (the work is elementwise), so the outputs do not change."""
    _, c, h, w = x.shape
    grid = _uv_grid(w, h, image_w / image_h, x.dtype, x.device)
    out = torch.empty_like(x)
    for top in range(0, h, POSITION_ROWS):
        rows = grid[top : top + POSITION_ROWS].reshape(-1, 2)
        emb = torch.cat((_sincos(rows[:, 0], c // 2), _sincos(rows[:, 1], c // 2)), dim=-1)
        emb = (emb.reshape(-1, w, c) * ratio).permute(2, 0, 1).to(x.dtype)
        out[:, :, top : top + POSITION_ROWS] = x[:, :, top : top + POSITION_ROWS] + emb[None]
    return out


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # The skip path carries the rectified input: the published weights were trained that way.
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if skip is not None and self.has_residual:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(_upsample(x, size))


def activate(out: Tensor, activation: str, has_conf: bool) -> tuple[Tensor, Tensor | None]:
    """[N, C, H, W] raw map -> ([N, H, W, C'] values, [N, H, W] confidence or None)."""
    fmap = out.permute(0, 2, 3, 1)
    values, conf = (fmap[..., :-1], fmap[..., -1]) if has_conf else (fmap, None)
    if activation == "exp":
        values = torch.exp(values)
    elif activation == "xy_exp":
        z = torch.exp(values[..., 2:3])
        values = torch.cat((values[..., :2] * z, z), dim=-1)
    elif activation == "sigmoid_exp":
        values = torch.cat((torch.sigmoid(values[..., :3]), torch.exp(values[..., 3:4])), dim=-1)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return values, (1 + conf.exp()) if conf is not None else None


class DPTHead(nn.Module):
    def __init__(
        self,
        dim_in: int,
        cfg: DPTConfig,
        output_dim: int,
        activation: str,
        has_conf: bool,
        patch_size: int = 14,
    ) -> None:
        super().__init__()
        oc, feat = list(cfg.out_channels), cfg.features
        self.patch_size = patch_size
        self.activation = activation
        self.has_conf = has_conf
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, feat, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(feat, has_residual=i != 4))
        self.scratch.output_conv1 = nn.Conv2d(feat, feat // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(feat // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))

    def forward(
        self, tokens: list[Tensor], image_hw: tuple[int, int], patch_start_idx: int, chunk_frames: int = DENSE_CHUNK_FRAMES
    ) -> tuple[Tensor, Tensor | None]:
        """tokens: 4 levels [B, S, P, C]. Returns ([B, S, H, W, C'], [B, S, H, W] or None)."""
        b, s = tokens[0].shape[:2]
        values, confs = [], []
        for start in range(0, s, chunk_frames):
            end = min(start + chunk_frames, s)
            v, c = self._forward_frames([t[:, start:end] for t in tokens], image_hw, patch_start_idx)
            values.append(v.reshape(b, end - start, *v.shape[1:]))
            if c is not None:
                confs.append(c.reshape(b, end - start, *c.shape[1:]))
        return torch.cat(values, dim=1), (torch.cat(confs, dim=1) if confs else None)

    def _forward_frames(self, tokens: list[Tensor], image_hw: tuple[int, int], patch_start_idx: int) -> tuple[Tensor, Tensor | None]:
        h, w = image_hw
        gh, gw = h // self.patch_size, w // self.patch_size
        feats = []
        for level, t in enumerate(tokens):
            x = self.norm(t[:, :, patch_start_idx:].reshape(-1, gh * gw, t.shape[-1]))
            x = x.permute(0, 2, 1).reshape(x.shape[0], -1, gh, gw)
            x = add_position_embedding(self.projects[level](x), w, h)
            feats.append(self.resize_layers[level](x))
        l1, l2, l3, l4 = (getattr(self.scratch, f"layer{i}_rn")(f) for i, f in enumerate(feats, start=1))
        out = self.scratch.refinenet4(l4, size=l3.shape[-2:])
        out = self.scratch.refinenet3(out, l3, size=l2.shape[-2:])
        out = self.scratch.refinenet2(out, l2, size=l1.shape[-2:])
        out = self.scratch.refinenet1(out, l1)
        out = self.scratch.output_conv1(out)
        out = add_position_embedding(_upsample(out, (gh * self.patch_size, gw * self.patch_size)), w, h)
        return activate(self.scratch.output_conv2(out).float(), self.activation, self.has_conf)  # float32 activations
