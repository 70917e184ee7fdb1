"""The frames the user brings: drops, File > Open dialogs, how videos are sampled, and the
input list (remove, hide). Decoding runs as a background job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QInputDialog

from zipmap_core.io.inputs import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    InputSet,
    VideoSampling,
    is_video,
    load_inputs,
)

from .jobs import Job

if TYPE_CHECKING:
    from .main_window import MainWindow

SAMPLING_CHOICES = ["1 per second", "2 per second", "32 evenly spaced", "64 evenly spaced"]


class InputController:
    def __init__(self, window: "MainWindow") -> None:
        self.w = window
        self.frames: list[Frame] = []
        self.ask_video_sampling = True
        window.inputs.removed.connect(self.remove_frames)

    def open_images_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        paths, _ = QFileDialog.getOpenFileNames(self.w, "Open images", "", f"Images ({pattern});;All files (*)")
        if paths:
            self.add_inputs(paths)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.w, "Open folder")
        if path:
            self.add_inputs([path])

    def open_video_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(VIDEO_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self.w, "Open video", "", f"Videos ({pattern})")
        if path:
            self.add_inputs([path])

    def video_sampling(self, paths: list[str]) -> VideoSampling | None:
        """Asks how to sample videos; without asking (tests, scripts) one frame per second."""
        if not any(is_video(Path(p)) for p in paths) or not self.ask_video_sampling:
            return VideoSampling(fps=1.0)
        choice, ok = QInputDialog.getItem(self.w, "Video sampling", "Take frames:", SAMPLING_CHOICES, 0, False)
        if not ok:
            return None
        number = float(choice.split()[0])
        return VideoSampling(fps=number) if "second" in choice else VideoSampling(fps=None, max_frames=int(number))

    def add_inputs(self, paths: list[str]) -> None:
        sampling = self.video_sampling(paths)
        if sampling is None:
            return
        job = Job(lambda progress, cancel: load_inputs(paths, sampling, should_stop=lambda: cancel.cancelled))
        job.succeeded.connect(self._loaded)
        job.failed.connect(lambda msg: self.w.notify(f"Nothing could be loaded.\n{msg}"))
        self.w.jobs.run(job, "load")

    def _loaded(self, loaded: InputSet) -> None:
        self.frames += loaded.frames
        self.w.inputs.set_frames(self.frames)
        if loaded.skipped:
            listing = "\n".join(f"• {name}: {reason}" for name, reason in loaded.skipped)
            self.w.notify(f"{len(loaded.skipped)} file(s) could not be used and were skipped:\n{listing}")
        self.w.status_info.setText(f"{len(self.frames)} images loaded — press Reconstruct (Ctrl+R)")

    def remove_frames(self, rows: list[int]) -> None:
        drop = set(rows)
        self.frames = [f for i, f in enumerate(self.frames) if i not in drop]
        self.w.inputs.set_frames(self.frames)
