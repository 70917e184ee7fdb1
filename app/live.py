"""Live mode: a video (or a camera OpenCV can open) reconstructed window by window while it
decodes; the cloud and the frusta grow on screen. Frames and the network run in a background
generator job; the GUI thread only draws each grown reconstruction. Pause, resume and cancel
act between windows; when the stream ends the scene is an ordinary one (save, export, novel
views)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from psygnal import Signal
from PySide6.QtWidgets import QInputDialog

from zipmap_core.cancel import CancelToken
from zipmap_core.errors import InputError
from zipmap_core.io.prefetch import prefetch
from zipmap_core.options import VIDEO_SUFFIXES

from . import dialogs
from .jobs import StreamJob

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from zipmap_core.io.inputs import VideoSampling
    from zipmap_core.io.reconstruction import Reconstruction

    from .job_runner import JobRunner
    from .state import AppState

WINDOW_CHOICES = ["2", "4", "8", "16"]


class LiveController:
    """Runs live streams; `running_changed(bool)` tells the window when pausing is possible."""

    running_changed = Signal(bool)

    def __init__(self, state: AppState, jobs: JobRunner, parent: QWidget) -> None:
        self.state, self.jobs, self.parent = state, jobs, parent
        self.job: StreamJob | None = None
        self.windows_shown = 0

    # ---- dialogs -----------------------------------------------------------------------------------
    def video_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(VIDEO_SUFFIXES))
        path = dialogs.open_file(self.parent, "Live from video", f"Videos ({pattern})")
        window = self._ask_window() if path else None
        if path and window:
            self.start(path, window)

    def camera_dialog(self) -> None:
        index, ok = QInputDialog.getInt(self.parent, "Live from camera", "Camera number (0 is the first):", 0, 0, 16)
        window = self._ask_window() if ok else None
        if window:
            self.start(index, window)

    def _ask_window(self) -> int | None:
        choice, ok = QInputDialog.getItem(self.parent, "Live mode", "Frames per window:", WINDOW_CHOICES, 0, False)
        return int(choice) if ok else None

    # ---- the stream ----------------------------------------------------------------------------------
    def start(self, source: str | int, window: int, sampling: VideoSampling | None = None) -> StreamJob | None:
        """Reconstructs `source` (a video path or a camera number) `window` frames at a time."""
        rec = self.state.rec
        if rec is None:
            self.state.notify("No model is loaded.")
            return None
        mode, size = self.state.model_input()
        from zipmap_core.io.inputs import Preparation, VideoSampling, camera_frames, iter_inputs  # torch: where it runs

        sampling = sampling or VideoSampling(fps=2.0)

        def frames(cancel: CancelToken) -> Iterator:
            prepare = Preparation(mode, size)
            if isinstance(source, int):
                return prefetch(camera_frames(source, sampling, prepare, cancel), 2 * window, "camera")
            return iter_inputs([source], sampling, prepare, cancel)

        def work(progress, cancel) -> Iterator[Reconstruction]:
            session = rec.stream(window_size=window, mode=mode, resolution=size)
            for recon in session.run(frames(cancel), window):
                progress("live", recon.num_frames, 0)
                yield recon
            if session.num_frames == 0:
                raise InputError(f"{Path(str(source)).name}: no frames could be decoded")

        job = StreamJob(work)
        job.step.connect(self._grown)
        job.succeeded.connect(self._ended)
        job.failed.connect(lambda msg: self.state.notify(f"Live mode stopped; the frames so far are kept.\n{msg}"))
        job.cancelled.connect(
            lambda: self.state.say(
                f"live mode cancelled after {self.state.recon.num_frames if self.state.recon else 0} frames; the scene so far is kept"
            )
        )
        self.windows_shown = 0
        if not self.jobs.run(job, "live", uses_model=True):
            return None
        self.job = job
        self.running_changed.emit(True)
        job.ended.connect(lambda: self.running_changed.emit(False))
        return job

    def toggle_pause(self) -> None:
        if self.job is not None and self.job.running:
            self.job.toggle_pause()
            self.state.say("live mode paused (P resumes)" if self.job.paused else "live mode resumed")

    def _grown(self, recon: Reconstruction) -> None:
        self.windows_shown += 1
        self.state.set_scene(recon, keep_view=self.windows_shown > 1)
        self.state.say(f"live: {recon.num_frames} frames")

    def _ended(self, recon: Reconstruction | None) -> None:
        if recon is not None:
            self.state.set_scene(recon, keep_view=True)
            self.state.say(f"live mode done: {recon.num_frames} frames — save or export the scene")
