"""What the app says about the engine: what Reconstruct runs now (auto's choice, known before any
run: `zipmap_core.engines.AutoEngine.choose` decides it and loads nothing), what made the scene
shown and why, and whether the bundled demonstration network is either. Its notice is shown
then, and only then: never over a scene COLMAP made, nor while auto would run COLMAP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zipmap_core.resources import DEMO_NOTICE, is_bundled_model

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings

    from zipmap_core.io.reconstruction import Reconstruction
    from zipmap_core.pipeline.engine import Engine
    from zipmap_core.pipeline.reconstructor import Reconstructor

    from .panels import ModelPanel
    from .state import AppState


def is_bundled(rec: Reconstructor | None) -> bool:
    return rec is not None and is_bundled_model(rec.path)


def named_model(rec: Reconstructor | None) -> str | None:
    """The checkpoint auto is told the user chose: the loaded one, unless it is the bundled model."""
    return None if rec is None or is_bundled(rec) else str(rec.path)


def build_engine(state: AppState) -> Engine:
    """The engine the model panel names, as `zipmap reconstruct` builds it. The network is the
    model loaded when the run needs it (the runner holds the model for the run)."""
    from zipmap_core.engines import engine_name, make_engine
    from zipmap_core.errors import InputError

    def network(checkpoint: str | None) -> Reconstructor:
        if checkpoint is not None:  # auto's choice, and the model loaded is not it (the bundled one, or none)
            raise InputError(
                "auto runs the official weights on this machine, and they are not loaded: load them "
                "(Get official weights…), or choose ZipMap to run the loaded model"
            )
        if state.rec is None:
            raise InputError("no model is loaded: load one (File ▸ Load checkpoint…) or choose COLMAP")
        return state.rec

    return make_engine(engine_name(state.engine, state.refine), network, model=named_model(state.rec))


def planned(state: AppState) -> tuple[str, bool]:
    """(what Reconstruct runs now, in a line; whether that is the bundled network). Choosing the
    engine loads nothing; the network named is the model loaded."""
    from zipmap_core.errors import InputError

    engine = build_engine(state)
    auto = f" (auto: {engine.why})" if engine.why else ""
    if not engine.capabilities.network_first:
        return f"COLMAP + dense depth from the photos{auto}", False
    if state.rec is None:
        return "the network, once the model has loaded", False
    try:
        rec = engine.network()
    except InputError as exc:
        return str(exc), False
    assert rec is not None  # an engine that runs the network first
    refined = ", cameras refined by COLMAP" if state.refine else ""
    return f"the network: {rec.description}{refined}{auto}", is_bundled(rec)


def made_by_bundled(recon: Reconstruction | None, rec: Reconstructor | None) -> bool:
    """Whether the bundled network made `recon` (as far as the model loaded now can tell)."""
    return recon is not None and is_bundled(rec) and rec is not None and recon.metadata.get("model") == rec.description


def made_by(recon: Reconstruction) -> str:
    """What made the scene and why, in a few words (auto's reason as the scene records it)."""
    md = recon.metadata
    what = "COLMAP" if md.get("engine") == "colmap" else str(md.get("model") or "an unknown engine")
    if "refine" in md:
        what += ", refined by COLMAP"
    if "dense" in md:
        what += " + dense depth"
    return f"made by {what}" + (f" (auto: {md['auto']})" if md.get("auto") else "")


def scene_summary(recon: Reconstruction) -> list[str]:
    """What made the scene, its masks, then what COLMAP did to it: the status bar's lines."""
    from zipmap_core.engines import scene_notes

    masked = [] if recon.masks is None else [f"masked: {1 - float(recon.masks.mean()):.0%} of the pixels ignored"]
    return [made_by(recon), *masked, *[n for n in scene_notes(recon) if n]]


class EngineNotes:
    """Keeps the model panel's engine line and its demonstration notice true to the engine in
    use: the notice shows when the bundled network made the scene shown or would make the next
    one, and its box comes once, the first time that happens."""

    def __init__(self, state: AppState, panel: ModelPanel, settings: QSettings) -> None:
        self.state, self.panel, self.settings = state, panel, settings
        for signal in (state.model_changed, state.engine_changed, state.scene_changed):
            signal.connect(self.update, check_nargs=False)
        self.update()

    def update(self, *_: object) -> None:
        line, bundled = planned(self.state)
        demo = bundled or made_by_bundled(self.state.recon, self.state.rec)
        self.panel.show_plan(line, demo, is_bundled(self.state.rec))
        if demo and not self.settings.value("demo_notice_shown", False, type=bool):
            self.settings.setValue("demo_notice_shown", True)  # said in a box once, the first time it applies
            self.state.notify(DEMO_NOTICE)
