"""Background work for the app: a `Job` is one cancellable engine call on a worker thread, started
by the one runner (`job_runner.JobRunner`), never by itself. Its signals are psygnal's, as are
the state's and the controllers', and arrive on the GUI thread: Qt's queued signals carry what
the worker reports across threads, inside this module only (`_Relay`)."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from psygnal import Signal
from PySide6.QtCore import QObject, QRunnable, QThreadPool
from PySide6.QtCore import Signal as QtSignal

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


class WorkerRelay(QObject):
    """Carries what workers report to the GUI thread: a Qt signal emitted on another thread reaches
    a slot of this object (made on the GUI thread) queued, in order. The runner owns one for all
    its jobs, alive as long as it is, so no worker ever emits into a deleted object; and a job
    is freed on the GUI thread only once its worker holds nothing of it (`forget`): no Qt object
    it leads to is ever destroyed on a worker thread."""

    reported = QtSignal(object, str, int, int)
    spoken = QtSignal(object, str)
    stepped = QtSignal(object, object)
    delivered = QtSignal(object, str, object)
    finished = QtSignal(object)  # the id of a job (wider than a C int)

    def __init__(self, forget: Callable[[int], None]) -> None:
        super().__init__()
        self.forget = forget
        self.reported.connect(self.on_reported)
        self.spoken.connect(self.on_spoken)
        self.stepped.connect(self.on_stepped)
        self.delivered.connect(self.on_delivered)
        self.finished.connect(self.on_finished)

    def on_reported(self, job: Job, stage: str, done: int, total: int) -> None:
        if job.running:
            job.progress.emit(stage, done, total)

    def on_spoken(self, job: Job, line: str) -> None:
        if job.running:
            job.said.emit(line)

    def on_stepped(self, job: Job, value: object) -> None:
        job.deliver_step(value)

    def on_delivered(self, job: Job, kind: str, payload: object) -> None:
        if kind == "returned":
            job.settle("cancelled" if job.token.cancelled else "succeeded", payload)
        elif isinstance(payload, Cancelled) or job.token.cancelled:
            job.settle("cancelled")
        else:
            assert isinstance(payload, BaseException)
            job.settle("failed", error_text(payload))

    def on_finished(self, key: int) -> None:
        self.forget(key)


class _Work(QRunnable):
    """The worker thread's side of a job: runs it, hands its result or error to the relay, then
    says that it holds nothing of the job any more. The pool deletes it after `run`."""

    def __init__(self, job: Job, relay: WorkerRelay) -> None:
        super().__init__()
        self.job: Job | None = job
        self.relay = relay

    def run(self) -> None:
        job, self.job = self.job, None
        assert job is not None
        key = id(job)
        try:
            outcome: tuple[str, object] = ("returned", job.work())
        except BaseException as exc:  # noqa: BLE001 - every error reaches the GUI thread, none is lost in the pool
            outcome = ("errored", exc)
        self.relay.delivered.emit(job, *outcome)
        del job, outcome
        self.relay.finished.emit(key)


class Job:
    """One cancellable engine call. `func(*args, progress=..., cancel=..., **kwargs)` runs off the
    GUI thread; on the GUI thread come `progress(stage, done, total)` reports and the lines the
    engine says (`said(line)`, from `say` on the worker), then exactly one of
    `succeeded(value)`, `failed(text)`, `cancelled()`, then `ended()`. `released(job)` comes first
    of all at the end: the runner frees what the job held there, so that an outcome's handler may
    start the next job at once."""

    progress = Signal(str, int, int)
    said = Signal(str)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    released = Signal(object)
    ended = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.token = CancelToken()
        self.func, self.args, self.kwargs = func, args, kwargs
        self.running = False  # from when the runner takes it (it may wait for the model) until its outcome is delivered
        self.started = False  # whether a worker thread was given its work
        self.relay: WorkerRelay | None = None
        self.work_item: _Work | None = None  # held until the job is freed: the pool's thread uses it

    def work(self) -> Any:
        """On the worker thread. A job cancelled before a thread was free runs nothing."""
        self.token.check()
        return self.func(*self.args, progress=self.report, cancel=self.token, **self.kwargs)

    def report(self, stage: str, done: int, total: int) -> None:
        """The engine's progress callback (worker thread): also where a cancel stops the work."""
        self.token.check()
        assert self.relay is not None
        self.relay.reported.emit(self, stage, done, total)

    def say(self, line: str) -> None:
        """The engine's `say` callback (worker thread): the line reaches `said` on the GUI thread."""
        assert self.relay is not None
        self.relay.spoken.emit(self, line)

    def start(self, pool: QThreadPool, relay: WorkerRelay) -> None:
        """Hands the work to `pool`; what it reports comes back through `relay` (the runner's)."""
        self.relay = relay
        self.started = True
        self.work_item = _Work(self, relay)
        pool.start(self.work_item)

    def cancel(self) -> None:
        self.token.cancel()

    def deliver_step(self, value: object) -> None:
        """A generator job's value on the GUI thread (`StreamJob.step`)."""

    def settle(self, outcome: str, value: object = None) -> None:
        """Delivers the outcome on the GUI thread, once: "succeeded", "failed" (value: the text)
        or "cancelled". `ended` follows even if a handler of the outcome raised."""
        if not self.running:
            return
        self.running = False
        self.released.emit(self)
        try:
            if outcome == "succeeded":
                self.succeeded.emit(value)
            elif outcome == "failed":
                self.failed.emit(str(value))
            else:
                self.cancelled.emit()
        finally:
            self.ended.emit()

    def disconnect_all(self) -> None:
        """Nobody hears from this job any more (the app is quitting)."""
        for signal in (self.progress, self.said, self.succeeded, self.failed, self.cancelled, self.released, self.ended):
            signal.disconnect()


class StreamJob(Job):
    """A job whose function is a generator: each yielded value arrives as `step` on the GUI thread,
    and the last one is the job's result. One step is in flight at a time: the worker goes on once
    the GUI has taken the last one (a live stream produced windows faster than the 3D view drew
    them, and the queued scenes, each with its own copy of the scene state, took the machine's
    memory). It can pause between steps; a cancel ends a pause."""

    step = Signal(object)

    def __init__(self, func: Callable[..., Iterator[Any]], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self.gate = threading.Event()  # set: running; clear: paused
        self.gate.set()
        self.taken = threading.Event()  # set: the GUI has taken the last step
        self.taken.set()

    def work(self) -> Any:
        self.token.check()
        last = None
        for value in self.func(*self.args, progress=self.report, cancel=self.token, **self.kwargs):
            last = value
            while not self.taken.wait(0.1):
                self.token.check()
            self.taken.clear()
            assert self.relay is not None
            self.relay.stepped.emit(self, value)
            self.gate.wait()
            self.token.check()
        return last

    def deliver_step(self, value: object) -> None:
        try:
            if self.running:
                self.step.emit(value)
        finally:
            self.taken.set()

    @property
    def paused(self) -> bool:
        return not self.gate.is_set()

    def toggle_pause(self) -> None:
        if self.gate.is_set():
            self.gate.clear()
        else:
            self.gate.set()

    def cancel(self) -> None:
        super().cancel()
        self.gate.set()  # a paused stream must run on to see the cancel
        self.taken.set()  # ... and one waiting for the GUI too

    def disconnect_all(self) -> None:
        super().disconnect_all()
        self.step.disconnect()
