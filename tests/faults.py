"""Faults the tests inject into Ray Train workers through `step_hook` (never an environment
variable read by the product). Pickled by value, so Ray's worker processes need not import
the tests package."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ray import cloudpickle


@dataclass(frozen=True)
class KillOnce:
    """Kill one rank's process at one iteration, once (the marker file records that it did):
    `signal.SIGKILL` as the OOM killer would, or exit status 1."""

    rank: int
    iteration: int
    marker: str
    sig: int = signal.SIGKILL

    def __call__(self, rank: int, iteration: int) -> None:
        if rank == self.rank and iteration == self.iteration and not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), self.sig)


@dataclass(frozen=True)
class RaiseAt:
    """Raise in every rank at one iteration, every time (a bug in the trial)."""

    iteration: int

    def __call__(self, rank: int, iteration: int) -> None:
        if iteration == self.iteration:
            raise RuntimeError(f"injected fault at iteration {iteration}")


cloudpickle.register_pickle_by_value(sys.modules[__name__])
