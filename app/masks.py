"""Masks as input (File ▸ Add masks…): a folder of pictures in COLMAP's convention, black where a
pixel is to be ignored, one a photo (named like it) or one for a video's frames. They are checked
against the inputs before they are taken (in the background: each is decoded), so that a mask
missing for an input, of another size than its picture, or not a picture at all is one message
and nothing changes; Reconstruct passes them (`ReconstructOptions(masks=...)`), and the scene
keeps the masks it was made with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import dialogs
from .jobs import Job

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from zipmap_core.io.masks import MaskSet

    from .job_runner import JobRunner
    from .panels import InputPanel
    from .state import AppState


def describe(masks: MaskSet | None) -> str | None:
    if masks is None:
        return None
    return f"Masks: {masks.folder.name} ({len(masks.files)} pictures; black is ignored)"


class MaskController:
    def __init__(self, state: AppState, jobs: JobRunner, inputs: InputPanel, parent: QWidget) -> None:
        self.state, self.jobs, self.parent = state, jobs, parent
        state.masks_changed.connect(lambda masks: inputs.show_masks(describe(masks)))
        inputs.clear_masks.connect(self.clear)

    def folder_dialog(self) -> None:
        path = dialogs.folder(self.parent, "Add masks (a folder: one picture an input, black = ignore)")
        if path:
            self.add(path)

    def add(self, folder: str | Path) -> Job | None:
        """Reads the masks of `folder` and checks them against the inputs loaded (in the
        background); they replace the masks set only if every input has a good one."""
        from zipmap_core.io.masks import read_masks

        frames = list(self.state.frames)
        mode, resolution = self.state.model_input()

        def work(progress, cancel) -> MaskSet:
            masks = read_masks(folder)
            masks.check_covers([f.name for f in frames], [f.source for f in frames])
            for i, frame in enumerate(frames):
                image, _ = frame.model_input(mode, resolution, as_uint8=True)
                masks.keep(frame.name, frame.source, frame.original_wh or frame.image.size, mode, tuple(image.shape[-2:]))
                progress("checking masks", i + 1, len(frames))
            return masks

        kept = "the masks set before are kept" if self.state.masks is not None else "no masks are set"
        job = Job(work)
        job.succeeded.connect(self.taken)
        job.failed.connect(lambda msg: self.state.notify(f"Masks not added ({kept}):\n{msg}"))
        return job if self.jobs.run(job, "masks") else None

    def taken(self, masks: MaskSet) -> None:
        self.state.set_masks(masks)
        checked = f", checked against the {len(self.state.frames)} inputs" if self.state.frames else ""
        self.state.say(f"masks from {masks.folder}{checked}: Reconstruct ignores their black pixels")

    def clear(self) -> None:
        self.state.set_masks(None)
        self.state.say("masks cleared: Reconstruct uses every pixel")
