"""DINOv2 ViT encoder with register tokens (`aggregator.patch_embed`).

Its learned position table is for the pre-training grid (37x37 at 518 px); other grids get it
resized bicubically with antialiasing, exactly as the authors' code does, so that checkpoints
work at any multiple-of-14 resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig
from .transformer import Block, checkpointed


class PatchEmbed(nn.Module):
    """Non-overlapping patchify convolution, optionally followed by LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class DinoEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, patch_size: int) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.cfg = cfg
        self.patch_size = patch_size
        grid = cfg.pretrain_img_size // patch_size
        self.patch_embed = PatchEmbed(3, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(dim, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values, norm_eps=1e-6) for _ in range(cfg.depth)
        )
        self.checkpointing = False  # see ZipMap.set_activation_checkpointing
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def position_table(self, grid_h: int, grid_w: int) -> Tensor:
        """Learned positions resized to the input grid (cls position first)."""
        n = self.pos_embed.shape[1] - 1
        if n == grid_h * grid_w and grid_h == grid_w:
            return self.pos_embed
        side = round(n**0.5)
        table = self.pos_embed.float()
        patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.cfg.interpolate_offset:
            scale = ((grid_h + self.cfg.interpolate_offset) / side, (grid_w + self.cfg.interpolate_offset) / side)
            resized = F.interpolate(patches, scale_factor=scale, mode="bicubic", antialias=self.cfg.interpolate_antialias)
        else:
            resized = F.interpolate(patches, size=(grid_h, grid_w), mode="bicubic", antialias=self.cfg.interpolate_antialias)
        resized = resized.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((table[:, :1], resized), dim=1).to(self.pos_embed.dtype)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images [N, 3, H, W] -> normalised patch tokens [N, H/p * W/p, C]."""
        h, w = images.shape[-2:]
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.position_table(h // self.patch_size, w // self.patch_size)
        x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        remat = self.checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpointed(block, x) if remat else block(x)
        return self.norm(x)[:, 1 + self.cfg.num_register_tokens :]
