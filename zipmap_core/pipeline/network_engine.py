"""The network as an engine: a `Reconstructor` behind the engine protocol, loaded when first
needed (so that choosing an engine and checking options loads no weights)."""

from __future__ import annotations

from collections.abc import Callable

from ..cancel import CancelToken, Progress
from ..io.reconstruction import Reconstruction
from .engine import Capabilities, Inputs, Say
from .reconstruct_options import ReconstructOptions
from .reconstructor import Reconstructor


class NetworkEngine:
    name = "zipmap"
    capabilities = Capabilities(keeps_state=True, runs_network=True, network_first=True, streams=True, splits=True)
    why: str | None = None  # named by the user

    def __init__(self, load: Callable[[], Reconstructor]) -> None:
        self._load = load
        self._rec: Reconstructor | None = None

    @property
    def rec(self) -> Reconstructor:
        if self._rec is None:
            self._rec = self._load()
        return self._rec

    def network(self) -> Reconstructor:
        return self.rec

    def describe(self) -> str:
        return f"{self.rec.description} on {self.rec.device}, {self.rec.precision_name}"

    def refuse(self, options: ReconstructOptions) -> None:
        """The network takes every option (a point head it lacks is said before it runs)."""

    def reconstruct(
        self,
        inputs: Inputs,
        options: ReconstructOptions,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        say: Say | None = None,
    ) -> Reconstruction:
        return self.rec.run(inputs, options, progress, cancel, say)
