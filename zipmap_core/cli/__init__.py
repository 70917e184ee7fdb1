"""`zipmap`: the headless command line. Each command's options and work live in their own module
(reconstruct, scenes, checkpoints, training; `zipmap bench` in bench_cli); this one builds the
parser and turns what goes wrong into one line. Torch and the engine are imported by the command
that runs, so `--help` and argument errors answer at once."""

from __future__ import annotations

import argparse
import signal
import sys

from . import checkpoints, reconstruct, scenes, training
from .terminal import StageBar, report_failure, terminate_like_interrupt

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
    except BaseException as exc:  # noqa: BLE001 - every failure is said one way (report_failure)
        return report_failure(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
