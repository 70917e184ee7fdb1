"""The test-time-training mixer of ZipMap's global blocks (`ttt_block`).

All tokens of all frames are "zipped" into fast weights of a small SwiGLU MLP by one
orthogonalised gradient step; the same weights are then applied to queries. Because the update
is a sum over tokens, it is accumulated here over token chunks, so neither time nor memory ever
holds an all-pairs (N^2) tensor and intermediate activations stay bounded by the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import emulate_bf16_matmul
from .config import TTTConfig
from .numerics import FAST_WEIGHT_TYPE, fused_newton_schulz

if TYPE_CHECKING:
    from .shard import FrameShard

FastWeights = dict[str, Tensor]  # {"w0": [B*h, d, dh], "w1": [B*h, dh, d], "w2": [B*h, d, dh]}

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class TTTOp(NamedTuple):
    """One step of a TTT operation order, over token indices [start, end) (end -1: to the last)."""

    start: int
    end: int
    update: bool
    apply: bool


def bidirectional_order() -> list[TTTOp]:
    """Update on every token, then apply to every token: each frame sees all others."""
    return [TTTOp(0, -1, True, False), TTTOp(0, -1, False, True)]


def windowed_order(total_tokens: int, window_tokens: int) -> list[TTTOp]:
    """For each window: update on it, then apply to it (streaming / online reconstruction)."""
    ops = []
    for start in range(0, total_tokens, window_tokens):
        end = min(start + window_tokens, total_tokens)
        ops += [TTTOp(start, end, True, False), TTTOp(start, end, False, True)]
    return ops


def render_order() -> list[TTTOp]:
    """Apply the stored state only: rendering new views never changes the scene state."""
    return [TTTOp(0, -1, False, True)]


def inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _bf16_matmul_via_float32(x: Tensor, y: Tensor) -> Tensor:
    """The `device.fast_cpu_bf16` route. A bfloat16 matrix product as bf16 hardware computes it: products of bfloat16 numbers are
    exact in float32, sums accumulate in float32, and the result is rounded to bfloat16 once."""
    return (x.float() @ y.float()).to(torch.bfloat16)


def newton_schulz(g: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16, fused: bool = False) -> Tensor:
    """Quintic Newton-Schulz orthogonalisation of a batch of matrices, by default in bfloat16 as
    the authors' code does (its roundings are part of the published behaviour).

    `fused`: each step's polynomial and update as one product-and-add (`baddbmm`), rounded to
    `dtype` once instead of after every product, scaling and sum: a quarter less time on a CPU,
    and nearer float32 (measured: 0.010 relative, against 0.024 for the published roundings),
    but not those roundings, so only half-precision models, which have their own tolerance, use it."""
    a, b, c = NS_COEFFICIENTS
    mm = torch.matmul
    if dtype == torch.bfloat16 and emulate_bf16_matmul(g.device):
        mm = _bf16_matmul_via_float32
    x = g.to(dtype).contiguous()
    tall = g.size(1) > g.size(2)
    if tall:
        x = x.transpose(1, 2)
    x = x / (x.norm(dim=(1, 2), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = mm(x, x.transpose(1, 2))
        if fused and mm is torch.matmul:
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        else:
            poly = b * gram + mm(c * gram, gram)
            x = a * x + mm(poly, x)
    return x.transpose(1, 2) if tall else x


def swiglu(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """The fast-weight network f(x) = (SiLU(x w0) * (x w2)) w1."""
    return (F.silu(x @ w0) * (x @ w2)) @ w1


def fast_weight_gradients(w: FastWeights, k: Tensor, v: Tensor, lr: tuple[Tensor, Tensor, Tensor]) -> FastWeights:
    """Per-token-lr gradient of -<f(k), v> (negated: the ascent direction), summed over tokens.

    k, v: [B*h, l, d]; lr: three [B*h, l, 1]. Sums over tokens add, so chunks can be accumulated.
    """
    w0, w1, w2 = w["w0"], w["w1"], w["w2"]
    gate = k @ w0
    lin = k @ w2
    act = F.silu(gate)
    hidden = act * lin
    dhidden = v @ w1.transpose(-1, -2)
    dlin = dhidden * act
    sig = torch.sigmoid(gate)
    dgate = dhidden * lin * sig * (1 + gate * (1 - sig))
    lr0, lr1, lr2 = lr
    return {
        "w0": (k * lr0).transpose(-1, -2) @ dgate,
        "w1": (hidden * lr1).transpose(-1, -2) @ v,
        "w2": (k * lr2).transpose(-1, -2) @ dlin,
    }


def apply_gradients(
    w: FastWeights,
    grads: FastWeights,
    col_norms: FastWeights,
    steps: int,
    dtype: torch.dtype = torch.bfloat16,
    fused: bool = False,
) -> FastWeights:
    """One orthogonalised step, then each column rescaled to the call's starting column norms.
    The new weights are `numerics.FAST_WEIGHT_TYPE` (float32) whatever the type the layer holds
    its own in (see there why)."""
    out = {}
    for name in ("w0", "w1", "w2"):
        new = w[name].to(FAST_WEIGHT_TYPE) + newton_schulz(grads[name], steps, dtype, fused)
        out[name] = new / (new.norm(dim=1, keepdim=True) + 1e-5) * col_norms[name]
    return out


class _Compiled:
    """`torch.compile`d versions of the elementwise chains around the fast-weight products (the
    gradient's gate/SiLU/sigmoid algebra and the SwiGLU apply: about 15 passes over [tokens,
    head_dim] per layer when eager), built once and shared by every layer. Newton-Schulz stays
    eager: its bfloat16 roundings are part of the published behaviour, and fusion would move
    them. Where compiling fails (no C++ compiler for a CPU, an unsupported device), the eager
    functions serve, with one warning."""

    def __init__(self) -> None:
        self.functions: dict[str, object] = {}
        self.failed: str | None = None

    def get(self, fn):
        if self.failed is not None:
            return fn
        if fn.__name__ not in self.functions:
            self.functions[fn.__name__] = torch.compile(fn, dynamic=True)
        return self.functions[fn.__name__]

    def call(self, fn, *args):
        compiled = self.get(fn)
        if compiled is fn:
            return fn(*args)
        try:
            return compiled(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, say so once
            import warnings

            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"compiled TTT kernels are unavailable here ({self.failed}); running them eagerly", stacklevel=2)
            return fn(*args)


COMPILED = _Compiled()


class TTTLayer(nn.Module):
    """Fast-weight SwiGLU layer with per-token learning rates, gated RMS-normalised output."""

    def __init__(self, dim: int, cfg: TTTConfig) -> None:
        super().__init__()
        if dim % cfg.head_dim:
            raise ValueError(f"dim {dim} is not divisible by the TTT head_dim {cfg.head_dim}")
        self.dim = dim
        self.num_heads = dim // cfg.head_dim
        self.head_dim = cfg.head_dim
        self.steps = cfg.muon_update_steps
        self.ns_dtype = getattr(torch, cfg.ns_dtype)
        hidden = int(cfg.head_dim * cfg.inter_multi)
        gain = math.sqrt(2)
        d = cfg.head_dim
        self.w0 = nn.Parameter(torch.randn(self.num_heads, d, hidden) * gain / math.sqrt(d))
        self.w1 = nn.Parameter(torch.randn(self.num_heads, hidden, d) * gain / math.sqrt(hidden))
        self.w2 = nn.Parameter(torch.randn(self.num_heads, d, hidden) * gain / math.sqrt(d))
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=cfg.bias)
        self.c_proj = nn.Linear(dim, dim, bias=cfg.bias)
        self.lr_fc = nn.Linear(dim, 3 * self.num_heads)
        self.base_lr_inv = inv_softplus(cfg.base_lr)
        self.gate_fn = nn.Sequential(nn.Linear(dim, dim, bias=cfg.bias), nn.SiLU()) if cfg.use_gate_fn else None
        self.o_norm = nn.RMSNorm(cfg.head_dim, eps=1e-5)
        self.compiled = False  # run the elementwise chains compiled (see `_Compiled`)

    def _kernel(self, fn, *args):
        return COMPILED.call(fn, *args) if self.compiled else fn(*args)

    def initial_state(self, batch: int) -> FastWeights:
        return {name: getattr(self, name).repeat(batch, 1, 1) for name in ("w0", "w1", "w2")}

    def _split_heads(self, t: Tensor) -> Tensor:
        b, l, _ = t.shape
        return t.reshape(b, l, self.num_heads, -1).transpose(1, 2).reshape(b * self.num_heads, l, -1)

    def _project(self, x: Tensor, first: int, count: int) -> Tensor:
        """SiLU of parts [first, first+count) of the fused q/k/v projection, split into heads."""
        rows = slice(first * self.dim, (first + count) * self.dim)
        bias = None if self.to_qkv.bias is None else self.to_qkv.bias[rows]
        return F.silu(F.linear(x, self.to_qkv.weight[rows], bias))

    def learning_rates(self, x: Tensor) -> Tensor:
        """Per-token learning rates [B, L, 3*heads]. Computed over the whole sequence and sliced
        per window, as the reference does: a product over a slice may differ from the same rows of
        the whole product by an ULP, which a later bf16 rounding can turn into a visible change."""
        return F.softplus(self.lr_fc(x).float() + self.base_lr_inv)

    def _keys_values(self, x: Tensor, lr: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        k, v = (self._split_heads(t) for t in self._project(x, 1, 2).chunk(2, dim=-1))
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
        lrs = tuple(self._split_heads(t) for t in lr.chunk(3, dim=-1))
        return k, v, lrs  # type: ignore[return-value]

    def _queries(self, x: Tensor) -> Tensor:
        q = self._split_heads(self._project(x, 0, 1))
        return q / (q.norm(dim=-1, keepdim=True) + 1e-5)

    def _output(self, x: Tensor, w: FastWeights) -> Tensor:
        b, l, _ = x.shape
        o = self.o_norm(self._kernel(swiglu, w["w0"], w["w1"], w["w2"], self._queries(x)))
        o = o.reshape(b, self.num_heads, l, self.head_dim).transpose(1, 2).reshape(b, l, self.dim)
        if self.gate_fn is not None:
            o = o * self.gate_fn(x)
        return self.c_proj(o)

    def accumulate(self, x: Tensor, w: FastWeights, grads: FastWeights | None, lr: Tensor | None = None) -> FastWeights:
        """Adds the update contribution of tokens x to `grads` (one chunk of a larger update);
        `lr`: their rows of `learning_rates` of the whole sequence (computed from x if absent)."""
        k, v, lr = self._keys_values(x, self.learning_rates(x) if lr is None else lr)
        g = self._kernel(fast_weight_gradients, w, k, v, lr)
        if grads is None:
            return g
        return {name: grads[name] + g[name] for name in g}

    def forward(
        self,
        x: Tensor,
        ops: Iterable[TTTOp],
        state: FastWeights | None = None,
        chunk_tokens: int | None = None,
        shard: FrameShard | None = None,
    ) -> tuple[Tensor, FastWeights]:
        """x: [B, L, dim] (already normalised by the block). Returns (output, final fast weights).

        With a `shard`, x holds this process's frames only: each update's gradients are summed
        here and then over the processes, so every process applies the same new weights."""
        w = state if state is not None else self.initial_state(x.shape[0])
        col_norms = {name: t.detach().float().norm(dim=1, keepdim=True) for name, t in w.items()}
        outputs = []
        total = x.shape[1]
        ops = list(ops)
        lr = self.learning_rates(x) if any(op.update for op in ops) else None
        for op in ops:
            end = total if op.end == -1 else op.end
            spans = _spans(op.start, end, chunk_tokens)
            if op.update:
                grads = None
                for s, e in spans:
                    grads = self.accumulate(x[:, s:e], w, grads, lr[:, s:e])
                if shard is not None:
                    grads = grads or {name: torch.zeros_like(t) for name, t in w.items()}  # a rank with no tokens
                    shard.all_reduce_([grads["w0"], grads["w1"], grads["w2"]])
                if grads is not None:
                    w = apply_gradients(w, grads, col_norms, self.steps, self.ns_dtype, fused=fused_newton_schulz(self.w0.dtype))
            if op.apply:
                outputs.extend(self._output(x[:, s:e], w) for s, e in spans)
        out = torch.cat(outputs, dim=1) if outputs else x.new_zeros(x.shape[0], 0, self.dim)
        return out, w


def _spans(start: int, end: int, chunk: int | None) -> list[tuple[int, int]]:
    if not chunk or chunk >= end - start:
        return [(start, end)] if end > start else []
    return [(s, min(s + chunk, end)) for s in range(start, end, chunk)]
