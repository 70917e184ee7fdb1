"""Training configurations the tests share: a few steps of a small model, changed where a test
needs it, so each test states only what it is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zipmap_core.training.trainer import TrainConfig

SMALL_RUN: dict[str, Any] = {"model": "tiny", "steps": 2, "batch": 1, "views": (2, 2), "held_out": 1, "heights": (56,), "device": "cpu"}


def small_run(output: str | Path, **changes: Any) -> TrainConfig:
    """A run of the tiny model on the CPU for 2 steps, one scene of 2 input views and 1 held out
    at 56 px a batch, writing to `output`; `changes` set the rest."""
    return TrainConfig(**{**SMALL_RUN, "output": str(output), **changes})
