"""The terminal side of the command line: one progress bar per pipeline stage, SIGTERM turned
into the same unwinding as Ctrl+C, and what a command says of a failure."""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from typing import TextIO

from tqdm import tqdm

from ..cancel import Cancelled
from ..errors import PEER_LOST_EXIT, USER_ERRORS, PeerLostError


class StageBar:
    """One progress bar per pipeline stage on a terminal; written to a log or a pipe, one line per
    stage when it ends instead (a bar's carriage-return frames would fill the log)."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.stage: str | None = None
        self.bar: tqdm | None = None
        self.done, self.total, self.started = 0, 0, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.started = stage, time.perf_counter()
            if self.live:
                # stages count blocks, frames or files of unequal cost: a rate per "step" would mislead
                # a total of 0: not known yet (frames counted as they decode)
                fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]" if total > 0 else "{desc}: {n_fmt} [{elapsed}]"
                self.bar = tqdm(total=total or None, desc=f"{stage:>11}", leave=False, file=self.stream, bar_format=fmt)
        self.done, self.total = done, total
        if self.bar is not None:
            self.bar.total = total or None
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.stage is not None and not self.live and not self.quiet:
            count = f"{self.done}/{self.total}" if self.total > 0 else f"{self.done}"
            print(f"{self.stage:>11}: {count} [{time.perf_counter() - self.started:.1f} s]", file=self.stream, flush=True)
        self.stage = None


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, `kill` and service managers send), raised where the program is,
    so it unwinds like Ctrl+C: staged outputs are discarded and the previous ones kept."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def terminate_like_interrupt():
    """Installs the SIGTERM handler (main thread only); returns the previous one to restore,
    or None where no handler could be installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate)


def report_failure(exc: BaseException) -> int:
    """What a command says of a failure and the exit code it ends with: a cancel, a signal or
    Ctrl+C in a word; what the user can fix in one line; anything else (a bug) with its
    traceback and a line saying so."""
    if isinstance(exc, Cancelled):
        print("cancelled", file=sys.stderr)
        return 130
    if isinstance(exc, Terminated):
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, SystemExit):  # as the interpreter ends it: None is success, a message is said
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    if isinstance(exc, USER_ERRORS):  # what the user can fix: one line
        print(f"zipmap: error: {exc}", file=sys.stderr)
        return PEER_LOST_EXIT if isinstance(exc, PeerLostError) else 2
    traceback.print_exception(exc)
    print("zipmap: internal error: this is a bug in ZipMap Studio; please report it with the traceback above", file=sys.stderr)
    return 3
