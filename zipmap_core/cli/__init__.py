"""`zipmap`: the headless command line. Each command's options and work live in their own module
(reconstruct, scenes, checkpoints, training; `zipmap bench` in bench_cli); this one builds the
parser and turns what goes wrong into one line. Torch and the engine are imported by the command
that runs, so `--help` and argument errors answer at once."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback

from ..cancel import Cancelled
from ..errors import USER_ERRORS
from . import checkpoints, reconstruct, scenes, training
from .terminal import StageBar, Terminated, terminate_like_interrupt

__all__ = ["StageBar", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from ..bench.cli import add_bench_parser

    parser = argparse.ArgumentParser(prog="zipmap", description="ZipMap 3D reconstruction from photos and videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    reconstruct.add_parsers(sub)
    scenes.add_parsers(sub)
    add_bench_parser(sub)
    checkpoints.add_parsers(sub)
    training.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    previous = terminate_like_interrupt()
    try:
        return args.func(args)
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:  # what the user can fix: one line
        print(f"zipmap: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - anything else is ours to fix: the traceback, and a line saying so
        traceback.print_exc()
        print("zipmap: internal error: this is a bug in ZipMap Studio; please report it with the traceback above", file=sys.stderr)
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
