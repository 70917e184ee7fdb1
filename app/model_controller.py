"""Models in the window: the one loaded at start (the last chosen, else the official weights when
they are on this machine, else the bundled model), a checkpoint chosen by the user, and the
official weights downloaded once. Loading runs in the background (a download never blocks the
window); a model that fails to load keeps the one before."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from psygnal import Signal
from PySide6.QtWidgets import QInputDialog

from zipmap_core.options import VARIANTS
from zipmap_core.resources import BUNDLED_MODEL

from . import dialogs
from .engine_notes import planned
from .jobs import Job

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QWidget

    from zipmap_core.io.inputs import Frame
    from zipmap_core.pipeline.reconstructor import Reconstructor

    from .job_runner import JobRunner
    from .panels import ModelPanel
    from .state import AppState


def reserve_gui_core() -> None:
    """Leaves one core to the GUI thread: with every core in torch's pool the OS scheduler can
    starve the event loop for hundreds of milliseconds on small machines."""
    import os

    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


def default_model() -> str | None:
    """The model loaded when none is named: the official weights when they are on this machine
    (`official:VARIANT`, never downloaded here), else the bundled model, else None."""
    from zipmap_core.io.download import cached_official

    return cached_official() or (str(BUNDLED_MODEL) if BUNDLED_MODEL.exists() else None)


class ModelController:
    """Loads models. `load_ended(loaded)` says when the last load asked for has ended (a script
    waits for it; a load that fails and falls back to the bundled model ends when that one has),
    `loaded` whether a model is there now; `fell_back(why)`, in one line, that a model named by
    the user could not be loaded and the bundled one is loading instead."""

    load_ended = Signal(bool)
    fell_back = Signal(str)

    def __init__(self, state: AppState, jobs: JobRunner, panel: ModelPanel, settings: QSettings, parent: QWidget) -> None:
        self.state, self.jobs, self.model_panel, self.settings, self.parent = state, jobs, panel, settings, parent
        self.job: Job | None = None  # the last load asked for, until it ends

    @property
    def loading(self) -> bool:
        return self.job is not None

    def remembered(self) -> str | None:
        """The checkpoint last chosen in the app, unless it has since been moved or deleted."""
        path = str(self.settings.value("checkpoint", "") or "")
        if path and not Path(path).is_file():
            self.state.notify(f"The last used checkpoint {path} is gone; using the bundled model.")
            self.settings.remove("checkpoint")
            return None
        return path or None

    def load(self, path: str | None, remember: bool = False) -> Job | None:
        """Load a checkpoint (a path, or `official[:VARIANT]`, downloaded once) in the background:
        the window is usable while torch is imported and the weights are read; None: the default
        (`default_model`). `remember` (choices made in the app, not on the command line) keeps it
        as the next start's default."""
        if path is None and not BUNDLED_MODEL.exists() and default_model() is None:
            self.state.notify("No model: the bundled model is missing. Use File ▸ Load checkpoint…")
            self.job = None
            self.load_ended.emit(self.state.rec is not None)
            return None
        device, fast = self.model_panel.device.currentText(), self.model_panel.fast_bf16.isChecked()

        def work(progress, cancel):
            from zipmap_core.pipeline.reconstructor import Reconstructor  # torch, imported here off the GUI thread

            reserve_gui_core()
            rec = Reconstructor.open(path or default_model(), device, fast_cpu_bf16=fast)
            rec.warm_up()
            return rec, rec.path

        name = Path(path).name if path else "the default model"
        job = Job(work)
        job.succeeded.connect(lambda result: self._loaded(*result, remember))
        job.failed.connect(lambda msg: self._failed(name, msg))
        job.ended.connect(lambda: self._ended(job))
        self.state.say(f"loading {name}…")
        self.job = job
        if not self.jobs.run_beside(job, "loading the model", uses_model=True):  # the app is quitting
            self.job = None
            return None
        return job

    def _ended(self, job: Job) -> None:
        """Only the last load asked for ends the loading: one that failed over to the bundled
        model is followed by that one."""
        if job is self.job:
            self.job = None
            self.load_ended.emit(self.state.rec is not None)

    def memory_allows(self, frames: list[Frame], mode: str, resolution: int) -> bool:
        """Says before a run how much memory it needs and whether it fits (the engine checks again
        before its network runs); a run that cannot fit is not started."""
        from zipmap_core.errors import InputError
        from zipmap_core.pipeline.memory_budget import check_fits, memory_plan

        assert self.state.rec is not None
        image, _ = frames[0].model_input(mode, resolution, as_uint8=True)  # held at this size since loading
        plan = memory_plan(self.state.rec.runtime, len(frames), (int(image.shape[-2]), int(image.shape[-1])))
        try:
            check_fits(plan)
        except InputError as exc:
            self.state.notify(f"Reconstruction not started: {exc}")
            return False
        self.state.say(f"reconstructing: {plan.describe()}")
        return True

    def _failed(self, name: str, message: str) -> None:
        """A model that does not load keeps the one before; with none before, the bundled one."""
        if self.state.rec is None and BUNDLED_MODEL.exists():
            self.state.notify(f"Could not load {name}:\n{message}\nUsing the bundled demonstration model instead.")
            self.fell_back.emit(f"could not load {name} ({' '.join(message.split())}); using the bundled demonstration model instead")
            self.load(str(BUNDLED_MODEL))
        else:
            self.state.notify(f"Could not load {name}; the model loaded before is kept.\n{message}")

    def _loaded(self, rec: Reconstructor, path: Path, remember: bool) -> None:
        self.model_panel.show_model(rec.description, f"{rec.variant} · {rec.precision_name}", rec.cfg.img_size, rec.model.can_render)
        self.state.set_model(rec)  # the engine's line and the demonstration notice follow (`EngineNotes`)
        if remember:
            self.settings.setValue("checkpoint", str(path))
        can = (
            "renders novel views from its scene state"
            if rec.model.can_render
            else (
                "has no novel-view head: virtual cameras show the point-cloud fallback; load "
                "checkpoint_state_query.pt or the bundled model for scene-state renders"
            )
        )
        line, _ = planned(self.state)
        # the model is what Reconstruct runs, or (auto choosing COLMAP) only its fallback: say which
        runs = line.startswith("the network")
        ready = f"ready: drop photos, a folder or a video — Reconstruct runs {line}"
        self.state.say(f"model: {rec.description} ({rec.variant}) — {can}" if runs else ready)

    def load_dialog(self) -> None:
        path = dialogs.open_file(self.parent, "Load checkpoint", "Checkpoints (*.pt *.pth *.safetensors);;All files (*)")
        if path:
            self.load(path, remember=True)

    def download_dialog(self) -> None:
        from zipmap_core.io.download import download_official, progress_tqdm

        variant, ok = QInputDialog.getItem(
            self.parent, "Get official weights", "Checkpoint (≈5.5 GB each):", sorted(VARIANTS, key=lambda v: v != "state_query"), 0, False
        )
        if not ok:
            return
        job = Job(lambda progress, cancel: download_official(variant, tqdm_class=progress_tqdm(progress)))
        job.succeeded.connect(lambda path: self.load(str(path), remember=True))
        job.failed.connect(lambda msg: self.state.notify(f"Download failed:\n{msg}"))
        job.cancelled.connect(lambda: self.state.say("download cancelled; the model loaded before is kept"))
        self.jobs.run(job, "download")
