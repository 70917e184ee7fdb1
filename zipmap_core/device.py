"""The one device-and-precision policy of the engine: which device runs, in which number format,
and whether this CPU multiplies bfloat16 numbers in hardware.

Inference, training and the benchmarks all take their device and autocast from here, so a GPU
figure, a training step and a user's reconstruction run the same numerics.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import torch

from .errors import InputError
from .options import PRECISIONS

# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) below which bfloat16 products are emulated
_ISA_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def select_device(name: str = "auto") -> torch.device:
    """`auto`: a CUDA GPU, else Apple's MPS, else the CPU; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda or mps)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available")
    return device


def gpu_half_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU has it (compute capability 8 and up), float16 before that."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


CPU_CHUNK_FRAMES = 8  # frames per chunk on a CPU, at most: small working sets stay in cache
# ... and at most this many tokens: the official model's 1041-token frames go one at a time, so
# the working set is one frame's (a chunk of 8 held ~0.2 GB a frame more), while a small model's
# 69-token frames still go 8 at a time (the products stay large enough to run at full speed)
CPU_CHUNK_TOKENS = 2048


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory on a GPU now (None on a CPU, where chunks are sized for the cache)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


def chunk_frames_for(
    device: torch.device, frames: int, tokens_per_frame: int, dim: int, free_bytes: int | None = None, share: float = 0.5
) -> int:
    """Frames per chunk of the frame blocks and the TTT accumulation: on a GPU as many as half
    the free memory holds (about 24 activations of [tokens, dim] in half precision per frame in a
    block: q, k, v, the MLP's 4x hidden, the TTT's SwiGLU hidden and their gradients), so large
    GPUs run few big kernels instead of hundreds of small ones; on a CPU up to 8 frames and
    `CPU_CHUNK_TOKENS` tokens."""
    free = free_device_bytes(device) if free_bytes is None else free_bytes
    if free is None:
        return max(1, min(CPU_CHUNK_FRAMES, frames, CPU_CHUNK_TOKENS // max(tokens_per_frame, 1)))
    per_frame = 24 * tokens_per_frame * dim * 2
    return int(max(1, min(frames, free * share // per_frame)))


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so a timer read after it measures the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- bfloat16 on CPUs ------------------------------------------------------------------------------
def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_units_from(flags: set[str], isa_cap: str | None) -> bool:
    """Whether bfloat16 products run on hardware, from the CPU's feature flags and oneDNN's
    instruction-set cap. `torch.backends.cpu.get_cpu_capability()` cannot tell: it says "AVX512"
    on CPUs with and without AVX512-BF16."""
    hardware = bool(flags & {"avx512_bf16", "amx_bf16"})
    if isa_cap and isa_cap.strip().upper() in _ISA_WITHOUT_BF16:
        return False
    return hardware


@lru_cache(maxsize=1)
def cpu_has_bf16_units() -> bool:
    """This CPU's answer to `bf16_units_from`: PyTorch's own feature query where it has one, the
    kernel's flags otherwise; the oneDNN cap from the environment as PyTorch's kernels read it."""
    flags = _cpu_flags()
    query = getattr(torch, "cpu", None)
    for name, flag in (("_is_avx512_bf16_supported", "avx512_bf16"), ("_is_amx_tile_supported", "amx_bf16")):
        probe = getattr(query, name, None)
        if probe is not None:
            flags = (flags - {flag}) | ({flag} if probe() else set())
    return bf16_units_from(flags, os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"))


def native_bf16_matmul(device: torch.device) -> bool:
    """Whether bfloat16 matrix products on `device` run at hardware speed. CPUs without
    AVX512-BF16 or AMX emulate them with a kernel 45-65x slower than float32 (110 s against
    1.7 s for one Newton-Schulz of the official 1024x2048 fast weights on an AVX2 core)."""
    return device.type != "cpu" or cpu_has_bf16_units()


_FAST_CPU_BF16: ContextVar[bool] = ContextVar("fast_cpu_bf16", default=False)


@contextlib.contextmanager
def fast_cpu_bf16(enabled: bool = True) -> Iterator[None]:
    """Within this block (and this thread), bfloat16 Newton-Schulz on a CPU without bf16 units
    takes a float32 route (bf16 operands, float32 products, one bf16 rounding, as bf16 hardware
    computes): ~65x faster there, at the price of bit-exact parity with the reference's CPU kernel
    (outputs stay inside the golden tolerances). Off by default: parity first."""
    token = _FAST_CPU_BF16.set(enabled)
    try:
        yield
    finally:
        _FAST_CPU_BF16.reset(token)


def fast_bf16_active() -> bool:
    """Whether the caller is inside a `fast_cpu_bf16()` block (benchmarks carry it into autocast)."""
    return _FAST_CPU_BF16.get()


def emulate_bf16_matmul(device: torch.device) -> bool:
    """Whether a bfloat16 product on `device` should take the float32 route now."""
    return _FAST_CPU_BF16.get() and not native_bf16_matmul(device)


# ---- autocast ---------------------------------------------------------------------------------------
HALF_MIN_PARAMS = 100_000_000  # `auto` holds models at least this large in half precision


def inference_half(device: torch.device, precision: str, params: int) -> torch.dtype | None:
    """The type a model's weights are held and run in for inference (None: float32).

    `float32`, `bf16`, `fp16`: as asked. `auto`: half precision for large models (the official
    ones, 1.2 to 1.4 B parameters: half the memory, and products about twice as fast) on devices
    whose half-precision products run in hardware: a GPU (bfloat16, or float16 before compute
    capability 8) and a CPU with AVX512-BF16 or AMX (bfloat16). Small models (our bundled one)
    and other CPUs and Apple's MPS stay in float32: there half precision saves little or runs
    emulated, many times slower."""
    check_precision(precision)
    if precision != "auto":
        return {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if params < HALF_MIN_PARAMS or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cuda":
        return gpu_half_dtype(device)
    return torch.bfloat16 if cpu_has_bf16_units() else None


def inference_precision(
    device: torch.device, fast_bf16: bool = False, half: torch.dtype | None = None
) -> contextlib.AbstractContextManager:
    """Inference numerics: autocast in `half` for a model held in it (`ZipMap.set_precision`), so
    that softmax and norms stay float32 by autocast's rules; otherwise half-precision autocast on
    a GPU (as the authors run it) and float32 on a CPU or MPS, with the opt-in float32 route for
    the bf16 Newton-Schulz."""
    if half is not None:
        return torch.autocast(device.type, dtype=half)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=gpu_half_dtype(device))
    return fast_cpu_bf16(fast_bf16)


def training_half(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast type of training, or None for float32: `auto` is bfloat16 on a GPU that has
    it and float16 on one before compute capability 8 (then the loss is scaled, see
    `needs_loss_scaling`); on a CPU only what is asked (most CPUs emulate bf16 slowly)."""
    check_precision(precision)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "auto" and device.type == "cuda":
        return gpu_half_dtype(device)
    return None


def needs_loss_scaling(device: torch.device, precision: str = "auto") -> bool:
    """float16 gradients underflow without a loss scale; bfloat16 has float32's range."""
    return training_half(device, precision) == torch.float16


def training_precision(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Training numerics: autocast in `training_half`'s type, or none (float32)."""
    half = training_half(device, precision)
    return torch.autocast(device.type, dtype=half) if half is not None else contextlib.nullcontext()


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
