"""One background job at a time for the window: its progress in the status bar, Cancel enabled
while it runs, and a clear word when the user asks for a second one."""

from __future__ import annotations

from collections.abc import Callable

from .jobs import Job
from .panels import ModelPanel, StageProgress


class JobRunner:
    def __init__(self, progress: StageProgress, panel: ModelPanel, notify: Callable[[str], None]) -> None:
        self.progress, self.panel, self.notify = progress, panel, notify
        self.current: Job | None = None

    @property
    def running(self) -> bool:
        return self.current is not None and self.current.running

    def run(self, job: Job, name: str) -> bool:
        """Starts `job` unless another one runs; returns whether it started."""
        if self.running:
            self.notify("Another task is running; cancel it first.")
            return False
        self.current = job
        job.progress.connect(self.progress.update_stage)
        job.succeeded.connect(lambda *_: self.progress.finish(f"{name}: done", complete=True))
        job.cancelled.connect(lambda: self.progress.finish(f"{name}: cancelled", complete=False))
        job.failed.connect(lambda *_: self.progress.finish(f"{name}: failed", complete=False))
        job.ended.connect(self._ended)
        self.panel.cancel_button.setEnabled(True)
        self.panel.reconstruct_button.setEnabled(False)
        self.progress.update_stage(name, 0, 0)
        job.start()
        return True

    def cancel(self) -> None:
        if self.running:
            assert self.current is not None
            self.current.cancel()

    def _ended(self) -> None:
        self.panel.cancel_button.setEnabled(False)
        self.panel.reconstruct_button.setEnabled(True)
