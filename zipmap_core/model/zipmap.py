"""The ZipMap network: aggregator trunk plus camera, depth, point and novel-view heads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import InputError
from .aggregator import Aggregator, ProgressHook
from .config import ZipMapConfig
from .heads.camera_head import CameraHead, CameraMLPHead
from .heads.dpt_head import DENSE_CHUNK_FRAMES, DPTHead
from .shard import FrameShard
from .ttt import FastWeights, TTTLayer, TTTOp, bidirectional_order, render_order, windowed_order


@dataclass
class ModelOutput:
    """Raw network outputs; shapes [B, S, ...]."""

    pose_enc: Tensor | None = None
    pose_enc_list: list[Tensor] = field(default_factory=list)
    depth: Tensor | None = None
    depth_conf: Tensor | None = None
    local_points: Tensor | None = None
    states: list[FastWeights | None] = field(default_factory=list)
    aggregated: list[Tensor] = field(default_factory=list)


NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)  # their statistics need float32: their weights stay float32 too


class ZipMap(nn.Module):
    def __init__(self, cfg: ZipMapConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.half_type: torch.dtype | None = None  # the type the weights are held and run in (None: float32)
        dim2 = 2 * cfg.embed_dim
        self.aggregator = Aggregator(cfg)
        kind = cfg.camera_head.kind
        if kind == "transformer":
            self.camera_head = CameraHead(dim2, cfg.camera_head)
        elif kind == "mlp":
            self.camera_mlp_head = CameraMLPHead(dim2, cfg.camera_head.mlp_ratio)
        elif kind != "none":
            raise ValueError(f"unknown camera head {kind!r}")
        if cfg.enable_depth:
            self.depth_head = DPTHead(dim2, cfg.dpt, 2, "exp", True, cfg.patch_size)
        if cfg.enable_local_point:
            self.local_point_head = DPTHead(dim2, cfg.dpt, 3, "xy_exp", False, cfg.patch_size)
        if cfg.enable_nvs:
            self.nvs_head = DPTHead(dim2, cfg.dpt, 5, "sigmoid_exp", True, cfg.patch_size)

    def float32_names(self) -> set[str]:
        """The parameters a half-precision model keeps in float32: the norms'."""
        return {
            f"{m}.{p}" if m else p
            for m, module in self.named_modules()
            if isinstance(module, NORMS)
            for p, _ in module.named_parameters(recurse=False)
        }

    def weight_types(self, half: torch.dtype | None) -> dict[str, torch.dtype]:
        """The type each entry of the state dict is held in for `half` (None: float32): the one
        rule for converting a model in place and for reading a checkpoint straight into it."""
        keep = self.float32_names()
        return {name: torch.float32 if half is None or name in keep else half for name in self.state_dict()}

    def set_precision(self, half: torch.dtype | None) -> None:
        """Holds the weights in `half` (bfloat16 or float16; None: float32), converted one tensor at
        a time (never a second copy of the model), the norms' in float32. A half model runs under
        autocast in that type (`Reconstructor.precision`), so softmax and the norms' statistics
        stay float32 as autocast's rules say, and weights are never cast again per call."""
        types = self.weight_types(half)
        for name, p in self.named_parameters():
            if p.dtype != types[name]:
                p.data = p.data.to(types[name])
        self.half_type = half

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Training only: the encoder's and the trunk's blocks recompute their activations in the
        backward pass instead of keeping them."""
        self.aggregator.checkpointing = enabled
        self.aggregator.patch_embed.checkpointing = enabled

    def set_compiled_kernels(self, enabled: bool) -> None:
        """Compile the TTT layers' elementwise chains (`ttt._Compiled`): pays on a GPU, where the
        eager chains are separate kernel launches and memory passes; the first call compiles."""
        for module in self.modules():
            if isinstance(module, TTTLayer):
                module.compiled = enabled

    @property
    def can_render(self) -> bool:
        return self.cfg.enable_nvs

    def keeps_state(self, keep_state: bool | None) -> bool:
        """Whether a run keeps its scene state: as asked, and by default when this model can
        render novel views from it (the one rule for the runs and for their memory plan)."""
        return self.can_render if keep_state is None else keep_state

    def ops_for(self, frames: int, tokens_per_frame: int, window_size: int | None) -> list[TTTOp]:
        window = self.cfg.window_size if window_size is None else window_size
        if window and window > 0:
            return windowed_order(frames * tokens_per_frame, window * tokens_per_frame)
        return bidirectional_order()

    def forward(
        self,
        images: Tensor,
        states: list[FastWeights] | None = None,
        window_size: int | None = None,
        chunk_frames: int | None = None,
        hook: ProgressHook | None = None,
        keep_tokens: bool = False,
        point_head: bool = True,
        shard: FrameShard | None = None,
        tokens: Tensor | None = None,
        keep_states: bool = True,
    ) -> ModelOutput:
        """images [B, S, 3, H, W] (or [S, 3, H, W]) in [0, 1] (or uint8 bytes); `tokens`: their
        encoder tokens when they were computed while the frames decoded (`early_encoding`).

        `states` continues a scene (streaming); `window_size` 0 forces bidirectional order, None
        takes the configuration's default. `point_head=False` skips the camera-frame point map:
        a reconstruction that unprojects depth never reads it, and it is a full-resolution DPT head
        (about a quarter of the forward pass at 224 px on a CPU).

        With a `shard`, `images` are this process's frames of a reconstruction split across
        processes (bidirectional order only): the outputs are this process's frames, except the
        cameras, which every process gets for all frames. `keep_states=False` keeps no layer's
        fast weights past its block (a model that never renders or continues the scene: the
        official model's 24 layers hold 0.3 to 0.6 GB)."""
        if images.dim() == 4:
            images = images.unsqueeze(0)
        _b, s, _, h, w = images.shape
        p = self.cfg.patch_size
        if shard is not None and (states is not None or (window_size if window_size is not None else self.cfg.window_size)):
            raise ValueError("the windowed (streaming) order runs in one process: split only bidirectional reconstructions")
        reference = states is None and (shard is None or shard.rank == 0)  # the reference view is global frame 0
        if tokens is None:
            tokens = self.aggregator.tokenize_images(images, first_is_reference=reference, chunk_frames=chunk_frames)
        if hook is not None:
            hook("encoder", 1, 1)
        ops = self.ops_for(s, tokens.shape[2], window_size)
        agg = self.aggregator.run_blocks(tokens, (h // p, w // p), ops, states, chunk_frames, hook, shard, keep_states)
        del tokens
        out = ModelOutput(states=agg.states, aggregated=agg.tokens if keep_tokens else [])
        self._run_heads(out, agg.tokens, (h, w), agg.patch_start_idx, chunk_frames, hook, point_head, shard)
        return out

    def _run_heads(
        self,
        out: ModelOutput,
        tokens: list[Tensor],
        image_hw: tuple[int, int],
        start: int,
        chunk_frames: int | None,
        hook: ProgressHook | None,
        point_head: bool = True,
        shard: FrameShard | None = None,
    ) -> None:
        chunk = chunk_frames or 8
        names = ("camera_head", "camera_mlp_head", "depth_head") + (("local_point_head",) if point_head else ())
        heads = [name for name in names if hasattr(self, name)]
        with self._head_numerics(tokens) as tokens:
            for i, name in enumerate(heads):
                if name in ("camera_head", "camera_mlp_head"):
                    # the camera head reads each frame's camera token; split, it needs all frames'
                    cam = tokens[-1][:, :, :1] if shard is None else shard.all_gather_frames(tokens[-1][:, :, :1])
                    out.pose_enc_list = getattr(self, name)(cam)
                    out.pose_enc = out.pose_enc_list[-1]
                elif name == "depth_head":
                    depth, conf = self.depth_head(tokens, image_hw, start, chunk)
                    out.depth, out.depth_conf = depth, conf
                else:
                    out.local_points = self.local_point_head(tokens, image_hw, start, chunk)[0]
                if hook is not None:
                    hook("heads", i + 1, len(heads))

    @contextlib.contextmanager
    def _head_numerics(self, tokens: list[Tensor]) -> Iterator[list[Tensor]]:
        """The heads' inputs and numerics: float32 heads without autocast, as the reference runs
        them; a half model runs them in its type (its weights are held in it), under the caller's
        autocast, with float32 final activations."""
        if self.half_type is not None:
            yield tokens
            return
        with torch.autocast(device_type=tokens[0].device.type, enabled=False):
            yield [t.float() for t in tokens]

    def ttt_layers(self) -> list[TTTLayer]:
        """The global blocks' test-time-training layers, whose fast weights are the scene state."""
        return [t for b in self.aggregator.global_blocks if isinstance(t := getattr(b, "ttt_block", None), TTTLayer)]

    def state_bytes(self) -> int:
        """A kept scene state's size: every layer's fast weights, in float32 whatever the model is
        held in (they are updated in float32)."""
        return 4 * sum(getattr(t, name).numel() for t in self.ttt_layers() for name in ("w0", "w1", "w2"))

    def state_problem(self, states: list[dict]) -> str | None:
        """Why a stored scene state cannot be queried by this model (another model made it), or
        None: one entry per global layer, each fast weight [batch x heads, *this layer's shape]."""
        blocks = self.ttt_layers()
        if len(states) != len(blocks):
            return f"the scene state has {len(states)} layers and this model {len(blocks)}"
        for i, (layer, ttt) in enumerate(zip(states, blocks)):
            for name in ("w0", "w1", "w2"):
                want = tuple(getattr(ttt, name).shape)
                got = tuple(layer[name].shape) if name in layer else None
                if got is None or got[1:] != want[1:] or got[0] % want[0]:
                    return f"layer {i}'s {name} is {list(got or [])}, this model's is [k x {want[0]}, {want[1]}, {want[2]}]"
        return None

    def render(
        self,
        rays: Tensor,
        states: list[FastWeights],
        chunk_frames: int | None = None,
        hook: ProgressHook | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query the stored scene state with ray maps [B, S, 9, H, W].

        Returns (rgbd [B, S, H, W, 4]: sigmoid RGB and depth, confidence [B, S, H, W])."""
        if not self.can_render:
            raise InputError("this model has no novel-view head; use a state-query checkpoint")
        _b, s, _, h, w = rays.shape
        p = self.cfg.patch_size
        step = chunk_frames or s
        rgbd, confs = [], []
        for start in range(0, s, step):
            tokens = self.aggregator.tokenize_rays(rays[:, start : start + step])
            agg = self.aggregator.run_blocks(tokens, (h // p, w // p), render_order(), states, None, hook)
            with self._head_numerics(agg.tokens) as levels:
                v, c = self.nvs_head(levels, (h, w), agg.patch_start_idx, DENSE_CHUNK_FRAMES)
            rgbd.append(v)
            confs.append(c)
        return torch.cat(rgbd, dim=1), torch.cat(confs, dim=1)
