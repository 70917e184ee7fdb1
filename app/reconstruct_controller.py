"""Reconstruct and Cancel: the engine the model panel names runs on the input set (with the masks
the user added) in the background; the scene it makes replaces the current one, while a failure
or a cancel keeps it. What the engine says on the way (auto's choices) goes to the status bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine_notes import build_engine, planned
from .jobs import Job

if TYPE_CHECKING:
    from zipmap_core.io.reconstruction import Reconstruction

    from .job_runner import JobRunner
    from .model_controller import ModelController
    from .panels import ModelPanel
    from .state import AppState


class ReconstructController:
    def __init__(self, state: AppState, jobs: JobRunner, models: ModelController, panel: ModelPanel) -> None:
        self.state, self.jobs, self.models, self.panel = state, jobs, models, panel

    def start(self) -> Job | None:
        """Reconstructs the input set with the chosen engine; None (with a word to the user) when
        it cannot start. A run that may use the network (auto may fall back to it) holds the model
        for its length, and waits for it while a render or a load has it (`JobRunner`'s rule)."""
        # the engine (torch, pycolmap) is imported here, the first time it runs: never before the window is up
        from zipmap_core.engines import reconstruct_scene
        from zipmap_core.io.inputs import InputSet
        from zipmap_core.pipeline.reconstruct_options import ReconstructOptions

        state = self.state
        engine = build_engine(state)
        network_first = engine.capabilities.network_first
        uses_model = engine.capabilities.runs_network  # auto may fall back to the network
        if state.rec is None and network_first:
            state.notify(
                "The model is still loading; Reconstruct again once the status bar says it is ready."
                if self.models.loading
                else "No model is loaded."
            )
            return None
        if not state.frames:
            state.notify("Add photos, a folder or a video first (drag them onto the window).")
            return None
        frames = list(state.frames)
        mode, resolution = state.model_input()
        if network_first and not self.models.memory_allows(frames, mode, resolution):
            return None
        if not network_first:
            state.say("reconstructing with COLMAP: features, matching, mapping, then dense depth")
        options = ReconstructOptions(mode=mode, resolution=resolution, masks=state.masks)
        fast_bf16 = self.panel.fast_bf16.isChecked()

        def work(progress, cancel):
            if state.rec is not None:
                state.rec.fast_cpu_bf16 = fast_bf16  # set where the run holds the model, not while a render may use it
            recon = reconstruct_scene(engine, InputSet(frames), options, progress=progress, cancel=cancel, say=job.say)
            return recon.ensure_points()  # derived here, not on the GUI thread that draws them

        job = Job(work)
        job.said.connect(state.say)
        job.succeeded.connect(self.show)
        what, _ = planned(state)
        job.failed.connect(lambda msg: state.notify(f"Reconstruction failed ({what}); the previous scene is kept.\n{msg}"))
        job.cancelled.connect(lambda: state.say("reconstruction cancelled; the previous scene is kept"))
        return job if self.jobs.run(job, "reconstruct", uses_model=uses_model) else None

    def show(self, recon: Reconstruction | None, keep_view: bool = False) -> None:
        """Makes `recon` the scene (None: none); the status bar says what made it, and why."""
        self.state.set_scene(recon, keep_view)

    def cancel(self) -> None:
        self.jobs.cancel()
