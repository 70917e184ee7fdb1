"""The ZipMap network: aggregator trunk plus camera, depth, point and novel-view heads.

This module holds the layers and their composition (encoder -> trunk -> heads). How a pass is
executed (frame chunks, progress hooks, a process's frame shard, the TTT operation order, what
is kept) is an `execution.ExecutionPlan` the composition receives; which tensors stay float32
and in which numerics the heads run are `numerics`' rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import InputError
from . import execution, numerics
from .aggregator import Aggregator, ProgressHook
from .config import ZipMapConfig
from .execution import ExecutionPlan
from .heads.camera_head import CameraHead, CameraMLPHead
from .heads.dpt_head import DENSE_CHUNK_FRAMES, DPTHead
from .shard import FrameShard
from .ttt import FastWeights, TTTLayer, TTTOp, render_order


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

    # ---- numerics (`numerics`) ------------------------------------------------------------------
    def float32_names(self) -> set[str]:
        """The parameters a half-precision model keeps in float32: the norms'."""
        return numerics.float32_names(self)

    def weight_types(self, half: torch.dtype | None) -> dict[str, torch.dtype]:
        """The type each state-dict entry is held in for `half` (`numerics.weight_types`)."""
        return numerics.weight_types(self, half)

    def set_precision(self, half: torch.dtype | None) -> None:
        """Holds the weights in `half` (bfloat16 or float16; None: float32), converted one tensor at
        a time (never a second copy of the model), the norms' in float32. A half model runs under
        autocast in that type (`Reconstructor.precision`), so softmax and the norms' statistics
        stay float32 as autocast's rules say, and weights are never cast again per call."""
        numerics.convert_weights(self, half)
        self.half_type = half

    # ---- execution switches (`execution`) -------------------------------------------------------
    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Training only: the encoder's and the trunk's blocks recompute their activations in the
        backward pass instead of keeping them."""
        execution.use_activation_checkpointing(self, enabled)

    def set_compiled_kernels(self, enabled: bool) -> None:
        """Compile the TTT layers' elementwise chains (`execution.use_compiled_kernels`)."""
        execution.use_compiled_kernels(self, enabled)

    @property
    def can_render(self) -> bool:
        return self.cfg.enable_nvs

    def keeps_state(self, keep_state: bool | None) -> bool:
        """Whether a run keeps its scene state: as asked, by default when this model can render."""
        return execution.keeps_state(self.can_render, keep_state)

    def ops_for(self, frames: int, tokens_per_frame: int, window_size: int | None) -> list[TTTOp]:
        """The TTT operation order for `window_size` (None: the configuration's window)."""
        return execution.op_order(frames, tokens_per_frame, self.cfg.window_size if window_size is None else window_size)

    # ---- reconstruction -------------------------------------------------------------------------
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

        `states` continues a scene (streaming). The other arguments are the pass's
        `ExecutionPlan` (see there): `window_size` 0 forces bidirectional order, None takes the
        configuration's default; `point_head=False` skips the camera-frame point map. With a
        `shard`, `images` are this process's frames of a split reconstruction (bidirectional
        order only): the outputs are this process's frames, except the cameras, which every
        process gets for all frames. `keep_states=False` keeps no layer's fast weights."""
        plan = ExecutionPlan(
            chunk_frames=chunk_frames,
            hook=hook,
            shard=shard,
            window_size=window_size,
            point_head=point_head,
            keep_states=keep_states,
            keep_tokens=keep_tokens,
        )
        return self.run(images, plan, states, tokens)

    def run(
        self, images: Tensor, plan: ExecutionPlan, states: list[FastWeights] | None = None, tokens: Tensor | None = None
    ) -> ModelOutput:
        """The network's composition, executed as `plan` says: encoder, trunk, then the heads."""
        if images.dim() == 4:
            images = images.unsqueeze(0)
        _b, s, _, h, w = images.shape
        continuing = states is not None
        plan.check(continuing, self.cfg.window_size)
        if tokens is None:
            first = plan.holds_reference(continuing)
            tokens = self.aggregator.tokenize_images(images, first_is_reference=first, chunk_frames=plan.chunk_frames)
        plan.report("encoder", 1, 1)
        ops = plan.ops(s, tokens.shape[2], self.cfg.window_size)
        agg = self.aggregator.run_blocks(tokens, self._grid(h, w), ops, states, plan.chunk_frames, plan.hook, plan.shard, plan.keep_states)
        del tokens
        out = ModelOutput(states=agg.states, aggregated=agg.tokens if plan.keep_tokens else [])
        with numerics.head_numerics(self.half_type, agg.tokens) as levels:
            self._run_heads(out, levels, (h, w), agg.patch_start_idx, plan)
        return out

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        """The patch grid of an image of h x w pixels."""
        return h // self.cfg.patch_size, w // self.cfg.patch_size

    def _run_heads(self, out: ModelOutput, levels: list[Tensor], image_hw: tuple[int, int], start: int, plan: ExecutionPlan) -> None:
        """Each head the plan runs reads the trunk's DPT levels: a camera head every frame's camera
        token of the last level, a dense head the patch tokens of all four."""
        heads = plan.heads([name for name in execution.CAMERA_HEADS + execution.DENSE_HEADS if hasattr(self, name)])
        for i, name in enumerate(heads):
            if name in execution.CAMERA_HEADS:
                out.pose_enc_list = getattr(self, name)(plan.all_frames(levels[-1][:, :, :1]))
                out.pose_enc = out.pose_enc_list[-1]
            elif name == "depth_head":
                out.depth, out.depth_conf = self.depth_head(levels, image_hw, start, plan.head_chunk)
            else:
                out.local_points = self.local_point_head(levels, image_hw, start, plan.head_chunk)[0]
            plan.report("heads", i + 1, len(heads))

    # ---- scene state ----------------------------------------------------------------------------
    def ttt_layers(self) -> list[TTTLayer]:
        """The global blocks' test-time-training layers, whose fast weights are the scene state."""
        return [t for b in self.aggregator.global_blocks if isinstance(t := getattr(b, "ttt_block", None), TTTLayer)]

    def state_bytes(self) -> int:
        """A kept scene state's size: every layer's fast weights, in float32 whatever the model is
        held in (`numerics.FAST_WEIGHT_TYPE`: they are updated in float32)."""
        return numerics.fast_weight_bytes(sum(getattr(t, name).numel() for t in self.ttt_layers() for name in ("w0", "w1", "w2")))

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

    # ---- novel views ----------------------------------------------------------------------------
    def render(
        self,
        rays: Tensor,
        states: list[FastWeights],
        chunk_frames: int | None = None,
        hook: ProgressHook | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query the stored scene state with ray maps [B, S, 9, H, W], `chunk_frames` views at a
        time. Returns (rgbd [B, S, H, W, 4]: sigmoid RGB and depth, confidence [B, S, H, W])."""
        if not self.can_render:
            raise InputError("this model has no novel-view head; use a state-query checkpoint")
        plan = ExecutionPlan(chunk_frames=chunk_frames, hook=hook)
        rgbd, confs = [], []
        for begin, end in plan.frame_spans(rays.shape[1]):
            v, c = self._render_views(rays[:, begin:end], states, plan)
            rgbd.append(v)
            confs.append(c)
        return torch.cat(rgbd, dim=1), torch.cat(confs, dim=1)

    def _render_views(self, rays: Tensor, states: list[FastWeights], plan: ExecutionPlan) -> tuple[Tensor, Tensor]:
        """One chunk of views: the stored state applied to the rays' tokens (never updated), then
        the novel-view head. The trunk runs the chunk whole; `plan`'s chunk is this one."""
        h, w = rays.shape[-2:]
        tokens = self.aggregator.tokenize_rays(rays)
        agg = self.aggregator.run_blocks(tokens, self._grid(h, w), render_order(), states, None, plan.hook)
        with numerics.head_numerics(self.half_type, agg.tokens) as levels:
            v, c = self.nvs_head(levels, (h, w), agg.patch_start_idx, DENSE_CHUNK_FRAMES)
        return v, c
