"""Which engine makes a scene, chosen by name from one registry: the network (`zipmap`), COLMAP
alone (`colmap`), the network refined by COLMAP's bundle adjustment (`refine`), or `auto`, the
best real result this machine can give (`AutoEngine`). Every engine follows
`pipeline.engine.Engine`; the command line and the app build `ReconstructOptions` the same way
and call `reconstruct_scene`, so an option means the same in each and is refused the same way
where an engine cannot take it. Stages that follow any engine (the dense stage) run here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .cancel import CancelToken, Progress
from .errors import InputError
from .io.reconstruction import Reconstruction

if TYPE_CHECKING:
    from .io.inputs import InputSet
    from .pipeline.engine import Capabilities, Engine, Inputs, Say
    from .pipeline.reconstruct_options import ReconstructOptions
    from .pipeline.reconstructor import Reconstructor

NetworkLoader = Callable[[], "Reconstructor"]  # the network, loaded only by the engines that run it
MEASURED_CAMERAS = ("colmap", "given")  # a scene's `cameras` record on which the dense stage runs by default


def _network(load: NetworkLoader) -> Engine:
    from .pipeline.network_engine import NetworkEngine

    return NetworkEngine(load)


def _classical(load: NetworkLoader) -> Engine:
    from .sfm.engine import ClassicalEngine

    return ClassicalEngine()


def _refine(load: NetworkLoader) -> Engine:
    from .pipeline.network_engine import NetworkEngine
    from .sfm.refine import RefineEngine

    return RefineEngine(NetworkEngine(load))


REGISTRY: dict[str, Callable[[NetworkLoader], Engine]] = {"zipmap": _network, "colmap": _classical, "refine": _refine}


def make_engine(name: str, network: NetworkLoader | None = None, *, model: str | None = None) -> Engine:
    """The engine called `name`; `network`: how to load the network, called only when an engine
    that runs it first needs it. `auto` chooses (`AutoEngine.choose`); `model`: the checkpoint
    the user named, None when they named none."""
    if name == "auto":
        return AutoEngine.choose(network, model)
    if name not in REGISTRY:
        raise InputError(f"no engine {name!r}; choose from auto, {', '.join(REGISTRY)}")

    def no_network() -> Reconstructor:
        raise InputError(f"the {name} engine runs the network, and no model was given")

    return REGISTRY[name](network or no_network)


def engine_name(engine: str, refine: bool) -> str:
    """The registry's name for what a user chose: `--engine` and `--refine` (the network, refined)."""
    if refine and engine == "colmap":
        raise InputError("--refine adjusts ZipMap's cameras with COLMAP; the classical engine's are COLMAP's already")
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

        official = cached_official_path()
        if model:
            named = official is not None and Path(model).resolve() == official  # the official weights, already loaded
            return cls(_network(network or _bundled), OFFICIAL if named else f"the model you named ({Path(model).name})")
        spec = cached_official()
        if spec is not None:
            return cls(_network(_opened(spec)), OFFICIAL)
        return cls(_classical(_bundled), NO_OFFICIAL, _network(network or _bundled))

    def describe(self) -> str:
        return f"{self.first.describe()} (auto: {self.why})"

    def refuse(self, options: ReconstructOptions) -> None:
        self.first.refuse(options)

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


def _bundled() -> Reconstructor:
    from .pipeline.reconstructor import Reconstructor

    return Reconstructor.bundled()


@functools.lru_cache(maxsize=1)
def _opened_once(spec: str) -> Reconstructor:
    """The official weights read once a session (5.5 GB): every later auto run reuses them."""
    from .pipeline.reconstructor import Reconstructor

    return Reconstructor.open(spec)


def _opened(spec: str) -> NetworkLoader:
    return lambda: _opened_once(spec)


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
    if options.masks is not None:
        inputs = masked_inputs(inputs, options)
    recon = engine.reconstruct(inputs, options, progress, cancel, say)
    if options.masks is not None and recon.masks is None:
        from .pipeline.masking import apply_masks, scene_masks

        recon = apply_masks(recon, scene_masks(recon, options.masks))
    if dense_applies(recon, options):
        from .pipeline.dense_stage import densify

        recon = densify(recon, progress, cancel)
    return recon


def masked_inputs(inputs: Inputs, options: ReconstructOptions) -> InputSet:
    """The inputs loaded, every frame's mask found (a missing one is said before any work)."""
    from .io.inputs import InputSet, load_inputs

    loaded = inputs if isinstance(inputs, InputSet) else load_inputs(list(inputs), options.sampling, options.max_frames)
    assert options.masks is not None
    options.masks.check_covers(loaded.names(), [f.source for f in loaded.frames])
    return loaded


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
