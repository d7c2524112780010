"""Live terminal views: a sweep's trials by state with the best selection metric, elapsed and
ETA; one trial's progress bar (`gtaray train`); and the redirection that keeps Ray's own output
in a log file instead of the terminal."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any, ClassVar, TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text


class SweepProgress:
    current: ClassVar[SweepProgress | None] = None  # the sweep running in this process

    def __init__(self, planned: int, metric: str, console: Console, already_done: int = 0):
        self.planned, self.metric, self.console = planned, metric, console
        self.running = 0
        self.statuses: dict[str, int] = {"done before": already_done} if already_done else {}
        self.best = math.nan
        self.t0 = time.perf_counter()
        # No redirection: rich would send Python's stdout/stderr (Tune's config box, its
        # "View detailed results" and TensorBoard lines) to the terminal instead of the log.
        self.live = Live(
            self._render(),
            console=console,
            refresh_per_second=2,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.live.start()

    def trial_started(self) -> None:
        self.running += 1
        self.live.update(self._render())

    def trial_result(self, metric_value: float | None) -> None:
        if metric_value is not None and not math.isnan(metric_value):
            self.best = metric_value if math.isnan(self.best) else max(self.best, metric_value)
        self.live.update(self._render())

    def trial_finished(self, status: str) -> None:
        self.running = max(0, self.running - 1)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.live.update(self._render())

    def trial_skipped(self) -> None:
        """A restored trial whose row was already on disk (counted in `done before`)."""
        self.running = max(0, self.running - 1)
        self.live.update(self._render())

    def _render(self) -> Text:
        elapsed = time.perf_counter() - self.t0
        done = sum(self.statuses.values())
        finished_here = done - self.statuses.get("done before", 0)
        left = max(self.planned - done, 0)
        eta = f"~{elapsed / finished_here * left:.0f}s" if finished_here else "?"
        best = "-" if math.isnan(self.best) else f"{100 * self.best:.1f}"
        detail = ", ".join(f"{n} {s}" for s, n in self.statuses.items())
        return Text(
            f"trials {done}/{self.planned} done ({detail or 'none yet'}), {self.running} running"
            f" | best {self.metric} {best} | elapsed {elapsed:.0f}s, remaining {eta}"
        )

    def stop(self) -> None:
        self.live.update(self._render())
        self.live.stop()
        self.console.line()
        SweepProgress.current = None


class TrialProgress:
    """`gtaray train`: a progress bar with iteration, losses, it/s and the last target mIoU."""

    def __init__(self, iterations: int, console: Console | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.progress = Progress(
            "[bold]train",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            "{task.fields[info]}",
            console=console or Console(stderr=True),
            redirect_stdout=False,  # see SweepProgress
            redirect_stderr=False,
        )
        self.task = self.progress.add_task("train", total=iterations, info="starting workers")
        self.last_miou = math.nan

    def __enter__(self) -> TrialProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, report: dict) -> None:
        if "target_miou" in report:
            self.last_miou = report["target_miou"]
        its = report.get("its", report.get("iters_per_second", math.nan))
        losses = " ".join(
            f"{k}={v:.3f}" for k, v in report.items() if k.endswith("/loss") or k == "f/seg"
        )
        miou = "-" if math.isnan(self.last_miou) else f"{100 * self.last_miou:.1f}"
        info = f"{its:.2f} it/s {losses} | target mIoU {miou}"
        self.progress.update(self.task, completed=int(report["iteration"]), info=info)


def follow_trial(fit: Callable[[], Any], queue: Any, view: TrialProgress | None) -> tuple:
    """Run fit() in a thread while reading rank 0's reports from the queue (into the view, if
    any); return fit()'s result and the last full report (a diverged run's has no checkpoint,
    so Ray's result does not carry it)."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fit()
        except BaseException as e:  # re-raised in the caller's thread below
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    last = None
    while thread.is_alive() or not queue.empty():
        with contextlib.suppress(Empty):
            report = queue.get(timeout=0.2)
            if "target_miou" in report:
                last = report
            if view is not None:
                view.update(report)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"], last


@contextlib.contextmanager
def output_to_log(path: Path) -> Iterator[TextIO]:
    """Send everything written to fds 1 and 2 (Ray's banners, warnings, child processes) to a
    log file; yield a stream on the real terminal for our own progress view."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()
