"""The alternating frame / global trunk (`aggregator`).

Frame blocks attend within one frame; global blocks mix all frames through the TTT layer, whose
fast weights are the scene state. Frame blocks run over frame chunks so the per-frame attention
matrices never exist for all frames at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cancel import Progress
from ..errors import InputError
from .config import ZipMapConfig
from .encoder import DinoEncoder, PatchEmbed
from .rope import RotaryEmbedding2D, patch_positions, position_limit
from .shard import FrameShard
from .transformer import Attention, Block, LayerScale, Mlp, checkpointed
from .ttt import FastWeights, TTTLayer, TTTOp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ProgressHook = Progress  # (stage, done, total), called between blocks


def unit_float(images: Tensor) -> Tensor:
    """Image bytes -> [0, 1] floats, exactly as PIL bytes / 255; floats pass through. The
    pipeline hands the network uint8 frames, converted a chunk at a time where the network runs:
    a quarter of the host memory and of the bytes sent to a GPU."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class GlobalBlock(nn.Module):
    """Pre-norm block whose mixer sees every frame's tokens: TTT (ZipMap) or softmax attention
    (the quadratic baseline, for scaling comparisons only)."""

    def __init__(self, cfg: ZipMapConfig, rope: RotaryEmbedding2D | None) -> None:
        super().__init__()
        dim, agg = cfg.embed_dim, cfg.aggregator
        self.mixer = agg.global_mixer
        self.norm1 = nn.LayerNorm(dim)
        if self.mixer == "ttt":
            self.ttt_block = TTTLayer(dim, cfg.ttt)
        elif self.mixer == "attention":
            self.attn = Attention(dim, agg.num_heads, qk_norm=agg.qk_norm, rope=rope)
        else:
            raise ValueError(f"unknown global mixer {self.mixer!r} (expected 'ttt' or 'attention')")
        self.ls1 = LayerScale(dim, agg.init_values)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * agg.mlp_ratio))
        self.ls2 = LayerScale(dim, agg.init_values)

    def forward(
        self,
        x: Tensor,
        ops: list[TTTOp],
        state: FastWeights | None,
        pos: Tensor | None,
        chunk_tokens: int | None,
        shard: FrameShard | None = None,
    ) -> tuple[Tensor, FastWeights | None]:
        if self.mixer == "ttt":
            mixed, new_state = self.ttt_block(self.norm1(x), ops, state, chunk_tokens, shard)
        elif shard is not None:
            raise ValueError("softmax attention cannot be split across processes; use the TTT mixer")
        else:
            mixed, new_state = self.attn(self.norm1(x), pos), None
        x = x + self.ls1(mixed)
        return x + self.ls2(self.mlp(self.norm2(x))), new_state


@dataclass
class AggregatorOutput:
    """Concatenated (frame, global) tokens of the DPT layers, [B, S, P, 2C] each, plus the state."""

    tokens: list[Tensor]
    states: list[FastWeights | None]
    patch_start_idx: int


class Aggregator(nn.Module):
    def __init__(self, cfg: ZipMapConfig) -> None:
        super().__init__()
        agg, dim = cfg.aggregator, cfg.embed_dim
        if cfg.encoder.embed_dim != dim:
            raise ValueError("encoder.embed_dim must equal embed_dim")
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.patch_start_idx = cfg.patch_start_idx
        self.patch_embed = DinoEncoder(cfg.encoder, cfg.patch_size)
        self.rope = RotaryEmbedding2D(agg.rope_freq) if agg.rope_freq > 0 else None
        self.frame_blocks = nn.ModuleList(
            Block(dim, agg.num_heads, agg.mlp_ratio, agg.init_values, qk_norm=agg.qk_norm, rope=self.rope) for _ in range(agg.depth)
        )
        self.global_blocks = nn.ModuleList(GlobalBlock(cfg, self.rope) for _ in range(agg.depth))
        self.checkpointing = False  # see ZipMap.set_activation_checkpointing
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, agg.num_register_tokens, dim) * 1e-6)
        if cfg.enable_nvs:
            self.ray_patch_embed = PatchEmbed(cfg.nvs_ray_cond_dim, dim, cfg.patch_size, norm=True)
            self.ray_cond_token = nn.Parameter(torch.randn(1, 1, 1 + agg.num_register_tokens, dim) * 1e-6)

    # ---- tokenisation -------------------------------------------------------------------------
    def special_tokens(self, batch: int, frames: int, first_is_reference: bool) -> Tensor:
        """[camera, registers] per frame. The reference-view variant gives frame 0 token 0, the
        affine-invariant one gives every frame token 1."""
        special = torch.cat((self.camera_token, self.register_token), dim=2)  # [1, 2, 5, C]
        others = special[:, 1:].expand(batch, frames, -1, -1)
        if self.cfg.affine_invariant or not first_is_reference:
            return others
        return torch.cat((special[:, :1].expand(batch, 1, -1, -1), others[:, 1:]), dim=1)

    def tokenize_images(self, images: Tensor, first_is_reference: bool = True, chunk_frames: int | None = None) -> Tensor:
        """images [B, S, 3, H, W] in [0, 1] (or uint8 bytes) -> tokens [B, S, P, C]."""
        b, s, c, h, w = images.shape
        if c != 3:
            raise ValueError(f"expected 3 colour channels, got {c}")
        dtype = torch.float32 if images.dtype == torch.uint8 else images.dtype
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=dtype).view(1, 3, 1, 1)
        flat = images.reshape(b * s, c, h, w)
        step = chunk_frames or flat.shape[0]
        patches = torch.cat(
            [self.patch_embed((unit_float(flat[i : i + step]).contiguous() - mean) / std) for i in range(0, flat.shape[0], step)]
        )
        patches = patches.reshape(b, s, patches.shape[1], -1)
        return torch.cat((self.special_tokens(b, s, first_is_reference), patches), dim=2)

    def tokenize_rays(self, rays: Tensor) -> Tensor:
        """Query rays [B, S, 9, H, W] -> tokens [B, S, P, C]."""
        if not self.cfg.enable_nvs:
            raise InputError("this model has no novel-view (state query) head")
        b, s, c, h, w = rays.shape
        patches = self.ray_patch_embed(rays.reshape(b * s, c, h, w)).reshape(b, s, -1, self.cfg.embed_dim)
        return torch.cat((self.ray_cond_token.expand(b, s, -1, -1), patches), dim=2)

    # ---- trunk ----------------------------------------------------------------------------------
    def run_blocks(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        ops: list[TTTOp],
        states: list[FastWeights] | None = None,
        chunk_frames: int | None = None,
        hook: ProgressHook | None = None,
        shard: FrameShard | None = None,
        keep_states: bool = True,
    ) -> AggregatorOutput:
        """tokens [B, S, P, C]; `ops` index the flattened S*P token axis of the global blocks
        (with a `shard`: this process's frames, the TTT updates summed over the processes);
        `keep_states=False`: each layer's fast weights go once its block has run."""
        b, s, p, c = tokens.shape
        pos = patch_positions(b * s, grid_hw[0], grid_hw[1], self.patch_start_idx, tokens.device)
        limit = position_limit(*grid_hw)  # known here: RoPE never reads it back from the device
        global_pos = pos.reshape(b, s * p, 2)
        step = chunk_frames or s
        chunk_tokens = step * p if chunk_frames else None
        keep = set(self.cfg.aggregator.dpt_layer_idx)
        x = tokens.reshape(b * s, p, c)
        outputs: list[Tensor] = []
        new_states: list[FastWeights | None] = []
        depth = len(self.frame_blocks)
        for i in range(depth):
            frame_block = self.frame_blocks[i]
            x = torch.cat([self._call(frame_block, x[j : j + step], pos[j : j + step], limit) for j in range(0, b * s, step)])
            frame_out = x.reshape(b, s, p, c)
            state = states[i] if states is not None else None
            g, new_state = self._call(self.global_blocks[i], x.reshape(b, s * p, c), ops, state, global_pos, chunk_tokens, shard)
            new_states.append(new_state if keep_states else None)
            x = g.reshape(b * s, p, c)
            if i in keep:
                outputs.append(torch.cat((frame_out, g.reshape(b, s, p, c)), dim=-1))
            if hook is not None:
                hook("aggregator", i + 1, depth)
        return AggregatorOutput(outputs, new_states, self.patch_start_idx)

    def _call(self, block: nn.Module, *args):
        return checkpointed(block, *args) if self.checkpointing and torch.is_grad_enabled() else block(*args)
