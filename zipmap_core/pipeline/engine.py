"""What every engine is: something that makes a `Reconstruction` from inputs and options, says
what it is, refuses the options it cannot take, and declares what it can do. The network, the
classical engine and refinement implement it; `zipmap_core.engines` picks one by name, and the
command line and the app never ask an engine's type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..cancel import CancelToken, Progress
from ..io.inputs import InputSet
from ..io.reconstruction import Reconstruction
from .reconstruct_options import ReconstructOptions

if TYPE_CHECKING:
    from .reconstructor import Reconstructor

Say = Callable[[str], None]  # a line for the user, said while the run goes on
Inputs = Sequence[str | Path] | InputSet


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, known without loading anything."""

    keeps_state: bool  # its scenes can keep a scene state (when its model has a novel-view head)
    runs_network: bool  # it may run the loaded network (so it holds the model while it runs)
    network_first: bool  # it runs the network before anything else: its model must be there, and fit, before it starts
    streams: bool  # grows a scene window by window (live mode, --window-size)
    splits: bool  # one run split across processes (--nproc, torchrun)


class Engine(Protocol):
    name: str
    capabilities: Capabilities
    why: str | None  # why it was chosen for the user (`auto`'s reason); None: the user named it

    def describe(self) -> str:
        """One line on what makes the scene, where it runs (the command line's `model:` line)."""
        ...

    def network(self) -> Reconstructor | None:
        """The network it runs first, loaded now (the one a split run's processes share, whose
        scene state is judged); None where it runs none first."""
        ...

    def refuse(self, options: ReconstructOptions) -> None:
        """Raises `InputError` naming what of `options` this engine cannot do; before any work."""
        ...

    def reconstruct(
        self,
        inputs: Inputs,
        options: ReconstructOptions,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Say | None = None,
    ) -> Reconstruction: ...
