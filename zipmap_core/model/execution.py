"""How one pass of the network is executed, apart from what it computes.

An `ExecutionPlan` names every choice that changes where and in what pieces the work runs but
not the network's layers: the frame chunk size, the progress hook, this process's frame shard of
a split run, the TTT operation order (bidirectional or windowed), which optional head runs and
what is kept afterwards. `ZipMap.forward` builds one from its keyword arguments and hands it to
the network's composition, so the layers never read a loose execution flag and the rules for
chunks, shards and hooks are written once, here.

Chunking never changes an output: frame blocks, dense heads and TTT accumulation are per-frame
or sums over tokens. The operation order does (a windowed, streaming run sees only past frames),
and so does a shard's reference frame, which is why both are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .aggregator import Aggregator, ProgressHook
from .encoder import DinoEncoder
from .heads.dpt_head import DENSE_CHUNK_FRAMES
from .shard import FrameShard
from .ttt import TTTLayer, TTTOp, bidirectional_order, windowed_order

CAMERA_HEADS = ("camera_head", "camera_mlp_head")  # read each frame's camera token
DENSE_HEADS = ("depth_head", "local_point_head")  # read the patch tokens, a chunk of frames at a time
OPTIONAL_HEADS = ("local_point_head",)  # run only when the plan asks for the camera-frame point map


@dataclass(frozen=True)
class ExecutionPlan:
    """One pass's execution choices (see the module docstring).

    chunk_frames: frames per chunk of the encoder, the frame blocks and the TTT accumulation,
        None: all at once; the dense heads take `head_chunk`.
    hook: called with (stage, done, total) between stages and blocks.
    shard: this process's frames of a reconstruction split across processes (bidirectional
        order only); None: one process holds every frame.
    window_size: TTT window in frames; 0 forces the bidirectional order, None takes the
        configuration's default.
    point_head: run the camera-frame point map (a full-resolution DPT head that a
        reconstruction unprojecting depth never reads).
    keep_states: keep each layer's fast weights past its block (the scene state, needed to
        render or continue the scene; the official model's hold 0.3 to 0.6 GB).
    keep_tokens: keep the trunk's DPT-level tokens in the output.
    """

    chunk_frames: int | None = None
    hook: ProgressHook | None = None
    shard: FrameShard | None = None
    window_size: int | None = None
    point_head: bool = True
    keep_states: bool = True
    keep_tokens: bool = False

    def window(self, default: int | None) -> int | None:
        """The TTT window this pass runs with, `default` being the configuration's."""
        return default if self.window_size is None else self.window_size

    def check(self, continuing: bool, default_window: int | None) -> None:
        """A split run sums TTT updates over every process's frames at once, which only the
        bidirectional order of a new scene does; a windowed or continued one runs in one process."""
        if self.shard is not None and (continuing or self.window(default_window)):
            raise ValueError("the windowed (streaming) order runs in one process: split only bidirectional reconstructions")

    def holds_reference(self, continuing: bool) -> bool:
        """Whether this pass's first frame is the scene's reference view (global frame 0): a new
        scene's, in the process that holds frame 0."""
        return not continuing and (self.shard is None or self.shard.rank == 0)

    def ops(self, frames: int, tokens_per_frame: int, default_window: int | None) -> list[TTTOp]:
        """The TTT operation order of this pass (see `op_order`)."""
        return op_order(frames, tokens_per_frame, self.window(default_window))

    def report(self, stage: str, done: int, total: int) -> None:
        """Tells the hook, if any, how far `stage` has come."""
        if self.hook is not None:
            self.hook(stage, done, total)

    @property
    def head_chunk(self) -> int:
        """Frames per pass through a dense head: the plan's chunk, else `DENSE_CHUNK_FRAMES`."""
        return self.chunk_frames or DENSE_CHUNK_FRAMES

    def all_frames(self, t: Tensor) -> Tensor:
        """Every frame's `t` along dim 1: this process's own, gathered from the others when split
        (the camera head relates all frames' camera tokens)."""
        return t if self.shard is None else self.shard.all_gather_frames(t)

    def heads(self, present: list[str]) -> list[str]:
        """The heads this pass runs, in order, among those the network has (`present`)."""
        order = CAMERA_HEADS + DENSE_HEADS
        return [name for name in order if name in present and (self.point_head or name not in OPTIONAL_HEADS)]

    def frame_spans(self, frames: int) -> list[tuple[int, int]]:
        """[start, end) frame ranges of `chunk_frames` frames (one range when unchunked)."""
        step = self.chunk_frames or frames
        return [(start, min(start + step, frames)) for start in range(0, frames, step)]


def op_order(frames: int, tokens_per_frame: int, window: int | None) -> list[TTTOp]:
    """Windowed (streaming) order for a positive window of frames, bidirectional otherwise."""
    if window and window > 0:
        return windowed_order(frames * tokens_per_frame, window * tokens_per_frame)
    return bidirectional_order()


def keeps_state(can_render: bool, keep_state: bool | None) -> bool:
    """Whether a run keeps its scene state: as asked, and by default when the model can render
    novel views from it (the one rule for the runs and for their memory plan)."""
    return can_render if keep_state is None else keep_state


def use_compiled_kernels(model: nn.Module, enabled: bool) -> None:
    """Compile the TTT layers' elementwise chains (`ttt._Compiled`): pays on a GPU, where the
    eager chains are separate kernel launches and memory passes; the first call compiles."""
    for module in model.modules():
        if isinstance(module, TTTLayer):
            module.compiled = enabled


def use_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Training only: the encoder's and the trunk's blocks recompute their activations in the
    backward pass instead of keeping them."""
    for module in model.modules():
        if isinstance(module, (Aggregator, DinoEncoder)):
            module.checkpointing = enabled
