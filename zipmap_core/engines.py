"""Which engine makes a scene, chosen by name from one registry: the network (`zipmap`), COLMAP
alone (`colmap`), the network refined by COLMAP's bundle adjustment (`refine`), or `auto`, the
best real result this machine can give (`AutoEngine`). Every engine follows
`pipeline.engine.Engine`; the command line and the app build `ReconstructOptions` the same way
and call `reconstruct_scene`, so an option means the same in each and is refused the same way
where an engine cannot take it. Stages that follow any engine (the dense stage) run here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .cancel import CancelToken, Progress
from .errors import InputError
from .io.reconstruction import Reconstruction
from .options import REFINE_NEEDS_NETWORK

if TYPE_CHECKING:
    from .pipeline.engine import Capabilities, Engine, Inputs, Say
    from .pipeline.reconstruct_options import ReconstructOptions
    from .pipeline.reconstructor import Reconstructor

# the network, loaded only by the engines that run it: the checkpoint named (`official:VARIANT`,
# auto's choice), None for the user's own, opened with the user's device, precision and switches
NetworkLoader = Callable[[str | None], "Reconstructor"]
MEASURED_CAMERAS = ("colmap", "given")  # a scene's `cameras` record on which the dense stage runs by default


def _network(load: NetworkLoader, checkpoint: str | None = None) -> Engine:
    from .pipeline.network_engine import NetworkEngine

    return NetworkEngine(lambda: load(checkpoint))


def _classical(load: NetworkLoader) -> Engine:
    from .sfm.engine import ClassicalEngine

    return ClassicalEngine()


def _refine(load: NetworkLoader) -> Engine:
    from .pipeline.network_engine import NetworkEngine
    from .sfm.refine import RefineEngine

    return RefineEngine(NetworkEngine(lambda: load(None)))


REGISTRY: dict[str, Callable[[NetworkLoader], Engine]] = {"zipmap": _network, "colmap": _classical, "refine": _refine}


def make_engine(name: str, network: NetworkLoader | None = None, *, model: str | None = None) -> Engine:
    """The engine called `name`; `network`: how to load the network, called only when an engine
    that runs it first needs it. `auto` chooses (`AutoEngine.choose`); `model`: the checkpoint
    the user named, None when they named none."""
    if name == "auto":
        return AutoEngine.choose(network, model)
    if name not in REGISTRY:
        raise InputError(f"no engine {name!r}; choose from auto, {', '.join(REGISTRY)}")

    def no_network(checkpoint: str | None) -> Reconstructor:
        raise InputError(f"the {name} engine runs the network, and no model was given")

    return REGISTRY[name](network or no_network)


def engine_name(engine: str, refine: bool) -> str:
    """The registry's name for what a user chose: `--engine` and `--refine` (the network, refined)."""
    if refine and engine == "colmap":
        raise InputError(REFINE_NEEDS_NETWORK)
    return "refine" if refine else engine


NO_OFFICIAL = "no official weights on this machine"  # auto's reason for COLMAP
OFFICIAL = "the official weights are on this machine"
FALLBACK = "COLMAP could not register these inputs"  # auto's reason for the network after all


class AutoEngine:
    """The best real result this machine can give: the network when the user named a model or
    the official weights are on this machine; otherwise the classical engine with the dense stage
    (the bundled model is a demonstration), and where COLMAP cannot register the inputs (too few
    or too different photos), the bundled network with its notice. `why` says the reason alone
    (what runs is `describe`'s), and each choice is said in a line."""

    name = "auto"
    capabilities: Capabilities
    why: str | None

    def __init__(self, first: Engine, why: str, fallback: Engine | None = None) -> None:
        self.first, self.why, self.fallback = first, why, fallback
        runs = first.capabilities.runs_network or (fallback is not None and fallback.capabilities.runs_network)
        self.capabilities = replace(first.capabilities, runs_network=runs)  # its first choice's, and the network it may fall back to

    @classmethod
    def choose(cls, network: NetworkLoader | None, model: str | None) -> AutoEngine:
        from .io.download import cached_official, cached_official_path

        load = network or _opened
        official = cached_official_path()
        if model:
            named = model.split(":")[0] == "official" or (official is not None and Path(model).resolve() == official)
            return cls(_network(load), OFFICIAL if named else f"the model you named ({Path(model).name})")
        spec = cached_official()
        if spec is not None:
            return cls(_network(load, spec), OFFICIAL)
        return cls(_classical(load), NO_OFFICIAL, _network(load))

    def describe(self) -> str:
        return f"{self.first.describe()} (auto: {self.why})"

    def network(self) -> Reconstructor | None:
        return self.first.network()

    def refuse(self, options: ReconstructOptions) -> None:
        """Its choice's refusal, saying that auto chose it (the user named no engine)."""
        try:
            self.first.refuse(options)
        except InputError as exc:
            raise InputError(f"{exc} (auto chose it: {self.why}); name an engine that takes these options, e.g. --engine zipmap") from None

    def reconstruct(
        self,
        inputs: Inputs,
        options: ReconstructOptions,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Say | None = None,
    ) -> Reconstruction:
        from .sfm.mapping import NoOverlapError

        why = self.why
        try:
            recon = reconstruct_scene(self.first, inputs, options, progress, cancel, say)
        except NoOverlapError as exc:
            if self.fallback is None:
                raise
            why = f"{FALLBACK} ({exc})"
            if say is not None:
                say(f"auto: {why}; using the network instead")
            recon = reconstruct_scene(self.fallback, inputs, options, progress, cancel, say)
        recon.metadata["auto"] = why
        return recon


def _opened(checkpoint: str | None) -> Reconstructor:
    """The checkpoint named, or the bundled model, with the default settings (a caller with no loader)."""
    from .pipeline.reconstructor import Reconstructor

    return Reconstructor.open(checkpoint) if checkpoint else Reconstructor.bundled()


def reconstruct_scene(
    engine: Engine,
    inputs: Inputs,
    options: ReconstructOptions,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    say: Say | None = None,
) -> Reconstruction:
    """A scene from `inputs` by `engine`, the options it cannot take refused before any work,
    then the stages that follow every engine: the dense stage where it applies (`dense_applies`)."""
    engine.refuse(options)
    recon = engine.reconstruct(inputs, options, progress, cancel, say)
    if options.masks is not None and recon.masks is None:
        from .pipeline.masking import apply_masks, scene_masks

        recon = apply_masks(recon, scene_masks(recon, options.masks))
    if dense_applies(recon, options):
        from .pipeline.dense_stage import densify

        recon = densify(recon, progress, cancel)
    return recon


def dense_applies(recon: Reconstruction, options: ReconstructOptions) -> bool:
    """The dense stage runs once a scene: when asked (`--dense`), and by default on cameras
    COLMAP measured or the user gave (the scene's record says which)."""
    if recon.dense_points is not None:
        return False
    return options.dense if options.dense is not None else recon.metadata.get("cameras") in MEASURED_CAMERAS


def scene_notes(recon: Reconstruction) -> list[str]:
    """What COLMAP did to a scene, in a line each (frames left out named), for the CLI and the app."""
    from .sfm.engine import engine_summary

    notes = []
    if "colmap" in recon.metadata:
        notes.append(engine_summary(recon))
    if "refine" in recon.metadata:
        notes.append(str(recon.metadata["refine"].get("line", "")))
    return notes
