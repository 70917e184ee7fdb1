"""The network's own numeric rules: in which type each weight is held, what stays float32, and
in which numerics the heads and the fast weights run.

The engine-wide policy (which device, whether a model runs in half precision, the autocast
around a run) is `zipmap_core.device`'s; this module is the model side of it: given a half type,
which tensors follow it and which must not. Checkpoint loading (`weight_types`), in-place
conversion (`convert_weights`), the heads and the TTT layers read the same rules here, so a
model read straight into half precision and one converted after loading hold the same bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)  # their statistics need float32: their weights stay float32 too
HALF_TYPES = (torch.bfloat16, torch.float16)
# Fast weights are updated and kept in float32 whatever the model is held in: the authors' code
# adds the bf16 Newton-Schulz step to float32 weights under autocast, and rounding the updated
# weights to bf16 doubled a half model's depth difference from float32 (0.7 % to 1.4 %).
FAST_WEIGHT_TYPE = torch.float32


def float32_names(model: nn.Module) -> set[str]:
    """The parameters a half-precision model keeps in float32: the norms'."""
    return {
        f"{m}.{p}" if m else p
        for m, module in model.named_modules()
        if isinstance(module, NORMS)
        for p, _ in module.named_parameters(recurse=False)
    }


def weight_types(model: nn.Module, half: torch.dtype | None) -> dict[str, torch.dtype]:
    """The type each entry of the state dict is held in for `half` (None: float32): the one
    rule for converting a model in place and for reading a checkpoint straight into it."""
    keep = float32_names(model)
    return {name: torch.float32 if half is None or name in keep else half for name in model.state_dict()}


def convert_weights(model: nn.Module, half: torch.dtype | None) -> None:
    """Holds the weights as `weight_types` says, converted one tensor at a time so the model
    never exists twice in memory."""
    types = weight_types(model, half)
    for name, p in model.named_parameters():
        if p.dtype != types[name]:
            p.data = p.data.to(types[name])


def is_half(dtype: torch.dtype) -> bool:
    """Whether weights of this type are held in half precision."""
    return dtype in HALF_TYPES


def fused_newton_schulz(weight_type: torch.dtype) -> bool:
    """Whether a TTT layer whose weights are held in `weight_type` takes the fused Newton-Schulz
    roundings (`ttt.newton_schulz`): nearer float32 than the published ones but not them, so
    only half models, which have their own tolerance, take it; float32 models keep parity."""
    return is_half(weight_type)


def fast_weight_bytes(elements: int) -> int:
    """The memory `elements` fast-weight entries hold (they are kept in `FAST_WEIGHT_TYPE`)."""
    return FAST_WEIGHT_TYPE.itemsize * elements


@contextlib.contextmanager
def head_numerics(half: torch.dtype | None, tokens: list[Tensor]) -> Iterator[list[Tensor]]:
    """The heads' inputs and numerics: a float32 model runs them in float32 without autocast, as
    the reference does; a half model (`half`) runs them in its type (its weights are held in
    it), under the caller's autocast, with float32 final activations."""
    if half is not None:
        yield tokens
        return
    with torch.autocast(device_type=tokens[0].device.type, enabled=False):
        yield [t.float() for t in tokens]
