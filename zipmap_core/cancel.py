"""Progress reports and cooperative cancellation, shared by every long-running pipeline step.

A run reports (stage, done, total) through a `Progress` callback and checks a `CancelToken` at
each report, so cancelling takes effect between network blocks, frames or files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class Cancelled(Exception):
    """The run was cancelled; nothing it would have produced was kept."""


class CancelToken:
    """Cooperative cancellation, checked between stages and between network blocks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until cancelled (True) or `timeout` seconds pass (False): for a watcher that
        passes a cancel on to a library with its own token."""
        return self._event.wait(timeout)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("reconstruction cancelled")


def reporter(progress: Progress | None, cancel: CancelToken) -> Progress:
    def report(stage: str, done: int, total: int) -> None:
        cancel.check()
        if progress is not None:
            progress(stage, done, total)

    return report
