"""What every command shares: the checkpoint option, and the model it names built one way."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..options import PRECISIONS

if TYPE_CHECKING:
    from ..pipeline.reconstructor import Reconstructor

CHECKPOINT_HELP = (
    "an official .pt, our .safetensors, or 'official[:VARIANT]' to download the authors' "
    "checkpoint once (default variant state_query); default: the bundled demonstration model"
)


def add_numerics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fast-cpu-bf16",
        action="store_true",
        help="official checkpoints on a CPU without bf16 units: float32 products for the bf16 "
        "Newton-Schulz, ~65x faster there, within the parity tolerances of the outputs",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the TTT layers' elementwise work (torch.compile; for a GPU; the first run "
        "compiles, and where compiling fails the eager code runs, with a warning)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the type the weights are held and run in (default auto: bf16 or fp16 for the official models on a GPU "
        "or a CPU with bf16 units, half the memory; float32 elsewhere and for small models; float32: the authors' numerics)",
    )


def reconstructor(args: argparse.Namespace, notice: bool = False, checkpoint: str | None = None) -> Reconstructor:
    """The model the user named (`Reconstructor.open`), or `checkpoint` (auto's choice) with the
    user's settings; `notice`: say so when it is the demonstration model."""
    from ..pipeline.reconstructor import Reconstructor
    from ..resources import DEMO_NOTICE, is_bundled_model

    rec = Reconstructor.open(
        checkpoint or args.checkpoint,
        args.device,
        getattr(args, "variant", None),
        fast_cpu_bf16=getattr(args, "fast_cpu_bf16", False),
        compile=getattr(args, "compile", False),
        precision=getattr(args, "precision", "auto"),
    )
    if notice and is_bundled_model(rec.path) and not getattr(args, "quiet", False):
        print(f"note: {DEMO_NOTICE}", file=sys.stderr)
    return rec
