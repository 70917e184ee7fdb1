"""The frames the user brings: drops, File > Open and File > Add dialogs, how videos are
sampled, and the input list (remove, hide). Decoding runs as a background job.

Opening is a new input set (it replaces the frames and the scene made from them); adding is a
separate, explicit action (File > Add…, or a drop with Ctrl held), as in photo tools where a
new import is a new project."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QInputDialog

from zipmap_core.options import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from . import dialogs
from .jobs import Job

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from zipmap_core.io.inputs import Frame, InputSet, VideoSampling

    from .job_runner import JobRunner
    from .panels import InputPanel
    from .state import AppState

SAMPLING_CHOICES = ["1 per second", "2 per second", "32 evenly spaced", "64 evenly spaced", "every frame"]


class InputController:
    def __init__(self, state: AppState, jobs: JobRunner, inputs: InputPanel, parent: QWidget) -> None:
        self.state, self.jobs, self.inputs, self.parent = state, jobs, inputs, parent
        self.ask_video_sampling = True
        inputs.removed.connect(self.remove_frames)
        state.inputs_changed.connect(inputs.set_frames)

    @property
    def frames(self) -> list[Frame]:
        return self.state.frames

    # ---- dialogs ---------------------------------------------------------------------------------
    def images_dialog(self, add: bool = False) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        title = "Add images" if add else "Open images"
        paths = dialogs.open_files(self.parent, title, f"Images ({pattern});;All files (*)")
        if paths:
            self.load(paths, add=add)

    def folder_dialog(self, add: bool = False) -> None:
        path = dialogs.folder(self.parent, "Add folder" if add else "Open folder")
        if path:
            self.load([path], add=add)

    def video_dialog(self, add: bool = False) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(VIDEO_SUFFIXES))
        path = dialogs.open_file(self.parent, "Add video" if add else "Open video", f"Videos ({pattern})")
        if path:
            self.load([path], add=add)

    def ask_sampling(self, paths: list[str]) -> VideoSampling | None:
        """Asks how to sample videos (None: the user said no); without asking (tests) one frame a
        second. Only input sets with a video ask."""
        from zipmap_core.io.inputs import VideoSampling, is_video  # the engine's inputs (torch) load where they are used

        if not any(is_video(Path(p)) for p in paths) or not self.ask_video_sampling:
            return VideoSampling(fps=1.0)
        choice, ok = QInputDialog.getItem(self.parent, "Video sampling", "Take frames:", SAMPLING_CHOICES, 0, False)
        if not ok:
            return None
        if choice == "every frame":
            return VideoSampling(fps=None)
        number = float(choice.split()[0])
        return VideoSampling(fps=number) if "second" in choice else VideoSampling(fps=None, max_frames=int(number))

    # ---- loading ---------------------------------------------------------------------------------
    def load(self, paths: list[str], add: bool = False, sampling: VideoSampling | None = None) -> Job | None:
        """Decodes `paths` in the background; `add` appends them to the current frames, otherwise
        they become the new input set. `sampling` given (a script, the command line) skips the
        question for this load only."""
        from zipmap_core.io.inputs import Preparation, load_inputs

        sampling = sampling or self.ask_sampling(paths)
        if sampling is None:
            return None
        # frames are held at the model's input size (re-read if that size changes before a run)
        prepare = Preparation(*self.state.model_input())
        job = Job(lambda progress, cancel: load_inputs(paths, sampling, cancel=cancel, prepare=prepare))
        job.succeeded.connect(lambda loaded: self._loaded(loaded, add))
        job.failed.connect(lambda msg: self.state.notify(f"Nothing could be loaded; the current inputs are kept.\n{msg}"))
        return job if self.jobs.run(job, "load") else None

    def _loaded(self, loaded: InputSet, add: bool) -> None:
        if not add:
            self.state.set_scene(None)  # a new input set: the old scene was made from other frames
        self.state.set_frames((self.frames if add else []) + loaded.frames)
        if loaded.skipped:
            listing = "\n".join(f"• {name}: {reason}" for name, reason in loaded.skipped)
            self.state.notify(f"{len(loaded.skipped)} file(s) could not be used and were skipped:\n{listing}")
        if loaded.notes:  # a video gave fewer frames than asked, or a clip is short for its rate
            self.state.notify("Video sampling:\n" + "\n".join(f"• {note}" for note in loaded.notes))
        verb = f"{len(loaded.frames)} added, " if add else ""
        self.state.say(f"{verb}{len(self.frames)} images loaded — press Reconstruct (Ctrl+R)")

    def remove_frames(self, rows: list[int]) -> None:
        drop = set(rows)
        self.state.set_frames([f for i, f in enumerate(self.frames) if i not in drop])
