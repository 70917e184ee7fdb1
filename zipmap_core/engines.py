"""Which engine makes a scene, chosen by name from one registry: the network (`zipmap`), COLMAP
alone (`colmap`) or the network refined by COLMAP's bundle adjustment (`refine`). Every engine
follows `pipeline.engine.Engine`; the command line and the app build `ReconstructOptions` the same
way and call `reconstruct_scene`, so an option means the same in each and is refused the same
way where an engine cannot take it. Stages that follow any engine (the dense stage) run here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .cancel import CancelToken, Progress
from .errors import InputError
from .io.reconstruction import Reconstruction

if TYPE_CHECKING:
    from .pipeline.engine import Engine, Inputs, Say
    from .pipeline.reconstruct_options import ReconstructOptions
    from .pipeline.reconstructor import Reconstructor

NetworkLoader = Callable[[], "Reconstructor"]  # the network, loaded only by the engines that run it


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


def make_engine(name: str, network: NetworkLoader | None = None) -> Engine:
    """The engine called `name`; `network`: how to load the network, called only when an engine
    that runs it first needs it."""
    if name not in REGISTRY:
        raise InputError(f"no engine {name!r}; choose from {', '.join(REGISTRY)}")

    def no_network() -> Reconstructor:
        raise InputError(f"the {name} engine runs the network, and no model was given")

    return REGISTRY[name](network or no_network)


def engine_name(engine: str, refine: bool) -> str:
    """The registry's name for what a user chose: `--engine` and `--refine`."""
    if refine and engine == "colmap":
        raise InputError("--refine adjusts ZipMap's cameras with COLMAP; the classical engine's are COLMAP's already")
    return "refine" if refine else engine


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
    if dense_applies(engine, options):
        from .pipeline.dense_stage import densify

        recon = densify(recon, progress, cancel)
    return recon


def dense_applies(engine: Engine, options: ReconstructOptions) -> bool:
    """The dense stage runs when asked (`--dense`), and by default on cameras COLMAP measured."""
    return options.dense if options.dense is not None else engine.capabilities.measures_cameras


def scene_notes(recon: Reconstruction) -> list[str]:
    """What COLMAP did to a scene, in a line each (frames left out named), for the CLI and the app."""
    from .sfm.engine import engine_summary

    notes = []
    if "colmap" in recon.metadata:
        notes.append(engine_summary(recon))
    if "refine" in recon.metadata:
        notes.append(str(recon.metadata["refine"].get("line", "")))
    return notes
