"""Camera heads: the iterative transformer head and the streaming checkpoint's MLP head.

Both output the `absT_quaR_FoV` encoding [t(3), quaternion XYZW(4), fov_h, fov_w] of a
world-to-camera pose; the field of view passes a ReLU so it stays non-negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CameraHeadConfig
from ..transformer import Block, Mlp

POSE_DIM = 9


def activate_pose(enc: Tensor) -> Tensor:
    return torch.cat((enc[..., :7], F.relu(enc[..., 7:])), dim=-1)


class CameraHead(nn.Module):
    """Refines a pose estimate over several iterations; each iteration modulates the camera tokens
    (adaLN shift/scale/gate) with an embedding of the previous estimate."""

    def __init__(self, dim_in: int, cfg: CameraHeadConfig) -> None:
        super().__init__()
        self.iterations = cfg.iterations
        self.trunk = nn.Sequential(
            *(Block(dim_in, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values) for _ in range(cfg.trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_DIM)

    def forward(self, tokens: Tensor) -> list[Tensor]:
        """tokens: the last aggregated level [B, S, P, 2C]. Returns the pose after each iteration."""
        cam = self.token_norm(tokens[:, :, 0])
        b, s, _ = cam.shape
        raw: Tensor | None = None
        out = []
        for _ in range(self.iterations):
            cond = self.embed_pose(self.empty_pose_tokens.expand(b, s, -1) if raw is None else raw.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(cam) * (1 + scale) + shift) + cam
            delta = self.pose_branch(self.trunk_norm(self.trunk(x))).float()  # the pose accumulates in float32
            raw = delta if raw is None else raw + delta
            out.append(activate_pose(raw))
        return out


class CameraMLPHead(nn.Module):
    """One MLP on each frame's camera token: cheap enough for per-window streaming."""

    def __init__(self, dim_in: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.mlp = Mlp(dim_in, dim_in * mlp_ratio, POSE_DIM)

    def forward(self, tokens: Tensor) -> list[Tensor]:
        return [activate_pose(self.mlp(tokens[:, :, 0]).float())]
