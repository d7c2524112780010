"""`gtaray report`: read the rows and curves, print the tables, write the pictures.

    gtaray report s3://bucket/results --select target_val --format markdown --plots figures/

Files that cannot be read are skipped with one line each on stderr; nothing readable is an
error (the CLI exits 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from gtaray import plots
from gtaray.ablation import FINAL, budgets, render_budgets
from gtaray.config import Experiment
from gtaray.errors import ConfigError
from gtaray.report import protocol_view, render, summarise
from gtaray.results import load_curves, load_trials, read_snapshot
from gtaray.search_report import render_search, summarise_search
from gtaray.storage import Store
from gtaray.study import read_study


def _snapshot(folder: str, name: str) -> Experiment | None:
    """The experiment an experiment folder was started with, None if unreadable."""
    try:
        snapshot = read_snapshot(folder, name)
        return Experiment.model_validate(snapshot["experiment"]) if snapshot else None
    except (OSError, ValueError, KeyError, TypeError):  # ConfigError is a ValueError
        return None


def run_report(
    folder: str,
    experiment: str | None = None,
    fmt: str = "table",
    select: str = "last",
    plots_dir: Path | None = None,
    top: int = 5,
) -> None:
    problems: list[str] = []
    trials = load_trials(folder, experiment, problems)
    names = sorted(trials["experiment"].dropna().unique())
    curves = pd.concat(
        [load_curves(folder, n, problems).assign(experiment=n) for n in names] or [pd.DataFrame()]
    )
    for line in problems:
        print(f"gtaray: {line}", file=sys.stderr)
    if trials.empty:
        what = f" for experiment {experiment!r}" if experiment else ""
        raise ConfigError(f"{folder}: no readable trial results{what}")
    console = Console()
    snapshots = {name: _snapshot(folder, name) for name in names}
    ablations = {n: e for n, e in snapshots.items() if e is not None and e.sweep.mode == "ablation"}
    searched = trials["experiment"].isin(list(ablations)) & (trials.get("phase") != FINAL)
    table_rows = trials[~searched]  # an ablation's table: its final phase only
    summary = summarise(protocol_view(table_rows, curves, select))
    sys.stdout.write(render(summary, fmt, select, console))
    for name, exp in ablations.items():
        sys.stdout.write(render_budgets(budgets(trials[trials["experiment"] == name], exp), fmt))
    searches = {}
    for name in names:
        exp = snapshots[name]
        if exp is not None and exp.sweep.mode == "search":
            rows = trials[trials["experiment"] == name]
            searches[name] = summarise_search(rows, exp, top, read_study(folder, exp))
            if fmt != "table":
                sys.stdout.write(f"\nSearch {name}:\n\n")
            sys.stdout.write(render_search(searches[name], fmt, console))
    if plots_dir is not None:
        for path in [
            *_plots(summary, curves, searches, plots_dir),
            *_samples(folder, names, plots_dir),
        ]:
            print(f"plot: {path}", file=sys.stderr)


def _samples(folder: str, names: list[str], out: Path) -> list[Path]:
    """The sample grids the trials saved, copied next to the other figures."""
    store, copied = Store.at(folder), []
    for name in names:
        for file in store.names(f"{name}/samples", ".png"):
            target = out / "samples" / f"{name}-{file}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.read_bytes(f"{name}/samples/{file}"))
            copied.append(target)
    return copied


def _plots(summary, curves, searches, out: Path) -> list[Path]:
    written = []
    for name, part in summary.groupby("experiment"):
        mine = curves[curves["experiment"] == name] if "experiment" in curves else curves
        if not mine.empty and "target_miou" in mine.columns:
            written.append(plots.plot_curves(mine, out / f"{name}-curves.png", name))
        if any(c.startswith("iou_") for c in part.columns):
            written.append(plots.plot_class_iou(part, out / f"{name}-class-iou.png", name))
    for name, search in searches.items():
        if search.importances:
            written.append(
                plots.plot_importance(search.importances, out / f"{name}-importance.png")
            )
    return written
