"""Live terminal view of a sweep: trials by state, best selection metric, elapsed and ETA."""

from __future__ import annotations

import math
import time
from typing import ClassVar

from rich.console import Console
from rich.live import Live
from rich.text import Text


class SweepProgress:
    current: ClassVar[SweepProgress | None] = None  # the sweep running in this process

    def __init__(self, planned: int, metric: str, console: Console | None = None):
        self.planned, self.metric = planned, metric
        self.console = console or Console(stderr=True)
        self.counts: dict[str, int] = {}
        self.best = math.nan
        self.t0 = time.perf_counter()
        self.live = Live(self._render(), console=self.console, refresh_per_second=2,
                         transient=False)

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.live.start()

    def update(self, trials, metric_value: float | None = None) -> None:
        self.counts = {}
        for trial in trials:
            self.counts[trial.status] = self.counts.get(trial.status, 0) + 1
        if metric_value is not None and not math.isnan(metric_value):
            self.best = metric_value if math.isnan(self.best) else max(self.best, metric_value)
        self.live.update(self._render())

    def _render(self) -> Text:
        elapsed = time.perf_counter() - self.t0
        done = self.counts.get("TERMINATED", 0) + self.counts.get("ERROR", 0)
        eta = "?" if not done else f"{elapsed / done * max(self.planned - done, 0):.0f}s"
        best = "-" if math.isnan(self.best) else f"{100 * self.best:.1f}"
        return Text(
            f"trials {done}/{self.planned} done, {self.counts.get('RUNNING', 0)} running, "
            f"{self.counts.get('ERROR', 0)} errored | best {self.metric} {best} | "
            f"elapsed {elapsed:.0f}s, remaining ~{eta}"
        )

    def stop(self, elapsed: float) -> None:
        self.live.update(self._render())
        self.live.stop()
        SweepProgress.current = None
