"""The one runner of the app's background work. Every job (reconstructions, model loads,
downloads, renders, exports, live streams, scene files, input decoding) starts here, on worker
threads of the runner's own pool, through one of three doors:

- `run`: the user's task, one at a time, shown in the status bar with Cancel enabled; a second
  one is refused with a word to the user;
- `run_beside`: work beside the task that the user did not ask to watch (a model loading);
- `latest_only`: requests of which only the newest matters (novel views while a camera moves).

One rule for the shared model (the loaded `Reconstructor`): the jobs that use it (network
reconstructions, live streams, model loads, renders) run one at a time, in the order asked. A
job that needs the model while another one has it waits, and starts when that one has ended
and its outcome has been shown. So a novel-view render asked for during a reconstruction waits
for it rather than running on a model that is busy, and is dropped if the reconstruction brings
a new scene (the virtual cameras go with the old one); a reconstruction asked for during a
render starts when the render is done.

Quitting (`shutdown`) cancels every job and waits for each worker thread to end, so that no
worker reports into an object that is gone and no engine call runs while Python tears down."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psygnal import Signal
from PySide6.QtCore import QThreadPool

from .jobs import Job, WorkerRelay

if TYPE_CHECKING:
    from .panels import ModelPanel, StageProgress
    from .state import AppState

POOL_THREADS = 4  # task, model load, render and a spare: none waits for a thread on a 2-core machine
WAIT_SLICE_MS = 100


class JobRunner:
    """Starts, orders, cancels and waits for the app's jobs. `task_started(name, job)` tells the
    window when the user's task changes (the status bar shows it)."""

    task_started = Signal(str, object)

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(max(POOL_THREADS, QThreadPool.globalInstance().maxThreadCount()))
        self.relay = WorkerRelay(self.forget)
        self.on_workers: dict[int, Job] = {}  # jobs a worker thread may still hold, by id: freed here once it does not
        self.current: Job | None = None  # the user's task, the last one after it has ended
        self.jobs: list[Job] = []  # taken and not yet ended: running or waiting
        self.model_user: Job | None = None  # the one that has the model now
        self.waiting: list[Job] = []  # for the model, in order
        self.closed = False

    @property
    def running(self) -> bool:
        """Whether the user's task runs (or waits for the model)."""
        return self.current is not None and self.current.running

    @property
    def busy(self) -> bool:
        """Whether any job runs or waits."""
        return bool(self.jobs)

    def run(self, job: Job, name: str, uses_model: bool = False) -> bool:
        """Starts `job` as the user's task unless another one runs; returns whether it started."""
        if self.closed:
            return False
        if self.running:
            self.state.notify("Another task is running; cancel it first.")
            return False
        self.current = job
        self.task_started.emit(name, job)
        self.take(job, name, uses_model)
        return True

    def run_beside(self, job: Job, name: str, uses_model: bool = False) -> bool:
        """Starts `job` beside the task (Cancel does not reach it); False once quitting."""
        if self.closed:
            return False
        self.take(job, name, uses_model)
        return True

    def latest_only(self, func: Callable[..., Any], name: str) -> LatestOnly:
        """A renderer of `func(*args)` on the model where only the newest request matters."""
        return LatestOnly(self, func, name)

    def cancel(self) -> None:
        """Cancels the user's task (Esc, the Cancel button)."""
        if self.running:
            assert self.current is not None
            self.cancel_job(self.current)

    def cancel_job(self, job: Job) -> None:
        """A job waiting for the model ends at once, cancelled; a running one is asked to stop."""
        if job in self.waiting:
            self.waiting.remove(job)
            job.settle("cancelled")
        else:
            job.cancel()

    def shutdown(self) -> None:
        """Quitting: cancels every job, waits for every worker thread to end, and disconnects the
        jobs, so an outcome still on its way reaches nobody. Jobs that cannot stop at once (a model
        being read) are waited for; nothing new starts afterwards."""
        self.closed = True
        for job in list(self.waiting):
            self.waiting.remove(job)
            job.disconnect_all()
        for job in self.jobs:
            job.cancel()
        while not self.pool.waitForDone(WAIT_SLICE_MS):
            pass  # in slices: Python runs signal handlers between them (a second Ctrl+C, `quitting`)
        for job in [*self.jobs, *self.on_workers.values()]:
            job.disconnect_all()
        self.jobs.clear()

    # ---- the model rule --------------------------------------------------------------------------
    def take(self, job: Job, name: str, uses_model: bool) -> None:
        job.running = True
        self.jobs.append(job)
        job.released.connect(self.release)
        job.ended.connect(self.start_waiting)
        if not uses_model:
            self.start(job)
            return
        if self.model_user is None and not self.waiting:
            self.model_user = job
            self.start(job)
        else:
            self.waiting.append(job)
            self.state.say(f"{name} waits until the model is free")

    def release(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        if self.model_user is job:
            self.model_user = None

    def start_waiting(self) -> None:
        """After a job's outcome has been shown: the next job waiting for the model, if it is free."""
        if self.closed or self.model_user is not None or not self.waiting:
            return
        job = self.waiting.pop(0)
        self.model_user = job
        self.start(job)

    def start(self, job: Job) -> None:
        self.on_workers[id(job)] = job
        job.start(self.pool, self.relay)

    def forget(self, key: int) -> None:
        """A worker holds nothing of this job any more: the runner lets go of it here, on the GUI thread."""
        self.on_workers.pop(key, None)


class LatestOnly:
    """Runs at most one job at a time and keeps at most one request waiting: a newer request
    replaces the waiting one, so live rendering never builds a queue. `result(key, value)` and
    `failed(text)` arrive on the GUI thread."""

    result = Signal(object, object)
    failed = Signal(str)

    def __init__(self, runner: JobRunner, func: Callable[..., Any], name: str) -> None:
        self.runner, self.func, self.name = runner, func, name
        self.job: Job | None = None
        self.next: tuple[Any, tuple, bool] | None = None
        self.started_count = 0

    @property
    def busy(self) -> bool:
        return self.job is not None

    @property
    def pending(self) -> int:
        return int(self.next is not None)

    def request(self, key: Any, *args: Any, uses_model: bool = True) -> None:
        """`func(*args, cancel=...)` once the running one ends; `uses_model`: it needs the model
        (it waits while a reconstruction holds it)."""
        if self.job is None:
            self.start(key, args, uses_model)
        else:
            self.next = (key, args, uses_model)

    def drop(self) -> None:
        """Forgets the waiting request and cancels the job (its result would be for a scene that
        is gone): `func` is told through its `cancel` token, and stops between views."""
        self.next = None
        if self.job is not None:
            self.runner.cancel_job(self.job)

    def start(self, key: Any, args: tuple, uses_model: bool) -> None:
        func = self.func
        job = Job(lambda *a, progress, cancel: func(*a, cancel=cancel), *args)
        job.succeeded.connect(lambda value: self.result.emit(key, value))
        # a lambda, not `self.failed.emit`: psygnal 0.16 calls a signal's emit once when it is
        # connected as a slot (probing it), which said "Rendering failed: 1" at every render
        job.failed.connect(lambda text: self.failed.emit(text))
        job.ended.connect(self.start_next)
        self.job = job
        self.started_count += 1
        if not self.runner.run_beside(job, self.name, uses_model=uses_model):
            self.job = None

    def start_next(self) -> None:
        self.job = None
        if self.next is not None:
            key, args, uses_model = self.next
            self.next = None
            self.start(key, args, uses_model)


def show_tasks(runner: JobRunner, progress: StageProgress, panel: ModelPanel) -> None:
    """The user's task in the status bar and on the buttons: its stages in the progress bar, and
    Cancel enabled (Reconstruct not) while it runs or waits."""

    def started(name: str, job: Job) -> None:
        job.progress.connect(progress.update_stage)
        job.succeeded.connect(lambda *_: progress.finish(f"{name}: done", complete=True))
        job.cancelled.connect(lambda: progress.finish(f"{name}: cancelled", complete=False))
        job.failed.connect(lambda *_: progress.finish(f"{name}: failed", complete=False))
        job.ended.connect(lambda: set_running(False))
        set_running(True)
        progress.update_stage(name, 0, 0)

    def set_running(running: bool) -> None:
        panel.cancel_button.setEnabled(running)
        panel.reconstruct_button.setEnabled(not running)

    runner.task_started.connect(started)
