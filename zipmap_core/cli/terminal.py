"""The terminal side of the command line: one progress bar per pipeline stage, and SIGTERM
turned into the same unwinding as Ctrl+C."""

from __future__ import annotations

import signal
import sys
import threading

from tqdm import tqdm


class StageBar:
    """One terminal progress bar per pipeline stage."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.stage: str | None = None
        self.bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            # stages count blocks, frames or files of unequal cost: a rate per "step" would mislead
            # a total of 0: not known yet (frames counted as they decode)
            fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]" if total > 0 else "{desc}: {n_fmt} [{elapsed}]"
            self.bar = tqdm(total=total or None, desc=f"{stage:>11}", leave=False, file=sys.stderr, bar_format=fmt)
        assert self.bar is not None
        self.bar.total = total or None
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
