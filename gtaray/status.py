"""`gtaray status [DIR]`: where each experiment of a results folder stands, for a terminal on a
login node. It reads only the results (a local folder or a URI), never Ray.

    ablations: running (host n1, pid 4242, since 2026-12-02T06:10:00+00:00)
      trials: 7 of 18 have a row (6 completed, 1 failed), 2 more under way
      best target_val_miou so far: 0.312 (trial 3f2a_00004, full, seed 1)

A trial that has reported an evaluation (a curve file) but has no row yet is under way while a
sweep holds the lock, and was interrupted when none does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from gtaray.config import Experiment
from gtaray.lock import SweepLock
from gtaray.plan import plan
from gtaray.results import load_curves, load_trials, read_snapshot
from gtaray.search_report import best_overrides
from gtaray.storage import Store


@dataclass
class ExperimentStatus:
    name: str
    state: str  # running, finished, interrupted, not started
    lock: str | None  # who holds the sweep lock, or who left it
    planned: int | None  # None when experiment.json is unreadable
    statuses: dict[str, int] = field(default_factory=dict)  # rows by status
    under_way: int = 0  # trials with evaluations but no row
    metric: str | None = None
    best: float | None = None
    best_trial: str | None = None
    best_configuration: str | None = None  # searches: the best completed trial's `-o` flags


def _holder_line(lock: SweepLock) -> tuple[bool, str | None]:
    """(whether a live sweep holds the experiment, a line naming the holder)."""
    holder = lock.holder()
    if holder is None:
        return False, None
    who = f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('started')}"
    stale = lock.stale_reason(holder)
    return stale is None, who if stale is None else f"{who}; left behind: {stale}"


def _best(rows: pd.DataFrame, curves: pd.DataFrame, metric: str) -> tuple[float | None, str | None]:
    """The best value of the selection metric so far: final rows and every evaluation."""
    candidates = []
    for frame in (rows, curves):
        if metric in frame.columns and "trial_id" in frame.columns:
            values = frame[["trial_id", metric]].dropna()
            if len(values):
                top = values.loc[values[metric].idxmax()]
                candidates.append((float(top[metric]), str(top["trial_id"])))
    if not candidates:
        return None, None
    value, trial = max(candidates)
    return value, trial


def experiment_status(folder: str, name: str) -> ExperimentStatus:
    store = Store.at(folder)
    snapshot = read_snapshot(folder, name)
    exp = Experiment.model_validate(snapshot["experiment"]) if snapshot else None
    rows = load_trials(folder, name)
    curves = load_curves(folder, name)
    live, lock_line = _holder_line(SweepLock(store, name))
    with_rows = set(rows["trial_id"]) if len(rows) else set()
    reported = set(curves["trial_id"]) if "trial_id" in curves.columns else set()
    planned = len(plan(exp).trials) if exp is not None else None
    status = ExperimentStatus(name, "", lock_line, planned)
    status.statuses = dict(rows["status"].value_counts()) if len(rows) else {}
    status.under_way = len(reported - with_rows)
    if live:
        status.state = "running"
    elif planned is not None and len(with_rows) >= planned:
        status.state = "finished"
    elif with_rows or reported:
        status.state = "interrupted"
    else:
        status.state = "not started"
    if exp is not None:
        status.metric = exp.sweep.metric
        status.best, status.best_trial = _best(rows, curves, exp.sweep.metric)
        if exp.sweep.mode == "search" and len(rows):
            status.best_configuration = best_overrides(rows, exp) or None
    return status


def folder_status(folder: str, experiment: str | None = None) -> list[ExperimentStatus]:
    """Every experiment folder (one with experiment.json or trial rows), sorted by name."""
    store = Store.at(folder)
    names = [experiment] if experiment else store.folders()
    found = [
        n
        for n in names
        if store.exists(f"{n}/experiment.json") or store.names(f"{n}/trials", ".parquet")
    ]
    return [experiment_status(folder, n) for n in found]


def render_status(statuses: list[ExperimentStatus]) -> str:
    lines = []
    for s in statuses:
        head = f"{s.name}: {s.state}"
        if s.lock:
            head += f" ({s.lock})"
        lines.append(head)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(s.statuses.items())) or "none yet"
        have = sum(s.statuses.values())
        of = f" of {s.planned}" if s.planned is not None else ""
        trials = f"  trials: {have}{of} have a row ({counts})"
        if s.under_way:
            verb = "under way" if s.state == "running" else "interrupted (resume continues them)"
            trials += f", {s.under_way} more {verb}"
        lines.append(trials)
        if s.metric is not None:
            best = "-" if s.best is None or math.isnan(s.best) else f"{s.best:.4g}"
            where = f" (trial {s.best_trial})" if s.best_trial else ""
            lines.append(f"  best {s.metric} so far: {best}{where}")
        if s.best_configuration:
            lines.append(f"  best configuration: {s.best_configuration}")
    return "\n".join(lines) + "\n"
