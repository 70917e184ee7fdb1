"""Background work for the GUI: engine calls run on superqt workers (a thread pool), report
progress through a queued Qt signal and stop through the engine's cooperative CancelToken."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import create_worker

from zipmap_core.cancel import Cancelled, CancelToken
from zipmap_core.errors import USER_ERRORS


def error_text(exc: BaseException) -> str:
    """What the user is shown: the message of a problem they can fix (`USER_ERRORS`); for anything
    else, that it is a bug, with its traceback printed to the terminal for the report."""
    if isinstance(exc, USER_ERRORS):
        return str(exc) or type(exc).__name__
    traceback.print_exception(exc)
    return (
        f"Internal error: this is a bug in ZipMap Studio ({type(exc).__name__}: {exc}). "
        f"Please report it with the traceback printed in the terminal."
    )


class Job(QObject):
    """One cancellable engine call. Signals arrive on the GUI thread."""

    progress = Signal(str, int, int)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    ended = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """`func(*args, progress=..., cancel=..., **kwargs)` runs off the GUI thread."""
        super().__init__()
        self.token = CancelToken()
        self._func, self._args, self._kwargs = func, args, kwargs
        self._worker = None
        self.running = False

    def _run(self) -> Any:
        return self._func(*self._args, progress=self._report, cancel=self.token, **self._kwargs)

    def _report(self, stage: str, done: int, total: int) -> None:
        self.token.check()
        self.progress.emit(stage, done, total)

    def start(self) -> Job:
        self.running = True
        # passing `errored` here stops superqt from re-raising the error in the event loop
        self._worker = create_worker(
            self._run,
            _start_thread=False,
            _connect={"returned": self._on_returned, "errored": self._on_error, "finished": self._on_finished},
        )
        self._worker.start()
        return self

    def cancel(self) -> None:
        self.token.cancel()

    def _on_returned(self, value: Any) -> None:
        if self.token.cancelled:
            self.cancelled.emit()
        else:
            self.succeeded.emit(value)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled) or self.token.cancelled:
            self.cancelled.emit()
        else:
            self.failed.emit(error_text(exc))

    def _on_finished(self) -> None:
        self.running = False
        self.ended.emit()


class LatestOnly(QObject):
    """Runs at most one job at a time and keeps at most one pending request: a newer request
    replaces the pending one, so live rendering never builds a queue."""

    result = Signal(object, object)  # (request key, value)
    failed = Signal(str)

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__()
        self._func = func
        self._job: Job | None = None
        self._pending: tuple[Any, tuple] | None = None
        self.started_count = 0

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def pending(self) -> int:
        return int(self._pending is not None)

    def request(self, key: Any, *args: Any) -> None:
        if self._job is None:
            self._start(key, args)
        else:
            self._pending = (key, args)

    def _start(self, key: Any, args: tuple) -> None:
        self.started_count += 1
        job = Job(lambda *a, progress, cancel: self._func(*a), *args)
        job.succeeded.connect(lambda value: self.result.emit(key, value))
        job.failed.connect(self.failed.emit)
        job.ended.connect(self._next)
        self._job = job.start()

    def _next(self) -> None:
        self._job = None
        if self._pending is not None:
            key, args = self._pending
            self._pending = None
            self._start(key, args)
