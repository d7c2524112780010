"""Paper-style tables from the Parquet results: one line per variant, mean ± std over seeds.

gtaray report results --experiment ablations --format markdown
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from gtaray.config import VARIANTS


def summarise(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, variant): trial counts by status, mean/std mIoU and class IoUs."""
    iou_cols = [c for c in trials.columns if c.startswith("iou_")]
    rows = []
    for (experiment, variant), group in trials.groupby(["experiment", "variant"], sort=False):
        scored = group[group["status"].isin(["completed", "pruned"])]
        row = {
            "experiment": experiment,
            "variant": variant,
            "trials": len(group),
            "completed": int((group["status"] == "completed").sum()),
            "diverged": int((group["status"] == "diverged").sum()),
            "pruned": int((group["status"] == "pruned").sum()),
            "failed": int((group["status"] == "failed").sum()),
            "seeds": int(scored["seed"].nunique()),
            "miou_mean": _mean(scored["target_miou"]),
            "miou_std": _std(scored["target_miou"]),
            "selected_on": ",".join(sorted(set(group["selection_metric"].dropna()))),
        }
        for col in iou_cols:
            row[col] = _mean(scored[col])
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {v: i for i, v in enumerate(VARIANTS)}
    table["_order"] = table["variant"].map(order)
    return table.sort_values(["experiment", "_order"]).drop(columns="_order").reset_index(drop=True)


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")


def _std(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.1f}"


def _miou_cell(row: pd.Series) -> str:
    if np.isnan(row["miou_std"]):
        return _pct(row["miou_mean"])
    return f"{_pct(row['miou_mean'])} ± {_pct(row['miou_std'])}"


def render(summary: pd.DataFrame, fmt: str = "table", console: Console | None = None) -> str:
    """Print (table) or return (csv, markdown) the summary; mIoU and IoUs in percent."""
    iou_cols = [c for c in summary.columns if c.startswith("iou_")]
    if fmt == "csv":
        return summary.to_csv(index=False)
    headers = ["experiment", "variant", "trials", "status", "mIoU (%)", "selected on"]
    headers += [c.removeprefix("iou_") for c in iou_cols]
    lines = []
    for _, row in summary.iterrows():
        status = f"{row['completed']} ok"
        for name in ("pruned", "diverged", "failed"):
            if row[name]:
                status += f", {row[name]} {name}"
        cells = [row["experiment"], row["variant"], str(row["trials"]), status, _miou_cell(row)]
        cells += [row["selected_on"]] + [_pct(row[c]) for c in iou_cols]
        lines.append(cells)
    if fmt == "markdown":
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out) + "\n"
    # A terminal is too narrow for 19 class columns: per-class IoU gets a table of its own.
    console = console or Console()
    table = Table(title="target mIoU by variant (mean ± std over seeds)")
    for h in headers[:6]:
        table.add_column(h, justify="left" if h in ("experiment", "variant", "status") else "right")
    for cells in lines:
        table.add_row(*cells[:6])
    console.print(table)
    seen = [c for c in iou_cols if summary[c].notna().any()]
    if seen:
        per_class = Table(title="per-class target IoU (%), mean over seeds")
        per_class.add_column("class")
        for _, row in summary.iterrows():
            per_class.add_column(f"{row['variant']}", justify="right")
        for col in seen:
            per_class.add_row(col.removeprefix("iou_"), *[_pct(v) for v in summary[col]])
        console.print(per_class)
    return ""


def plot_curves(curves: pd.DataFrame, out: Path) -> Path:
    """Target mIoU against iteration, one line per trial, coloured by variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {v: f"C{i}" for i, v in enumerate(VARIANTS)}
    for (variant, _trial), group in curves.groupby(["variant", "trial_id"]):
        ax.plot(
            group["iteration"],
            100 * group["target_miou"],
            color=colours.get(variant),
            alpha=0.7,
            label=variant,
        )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("target mIoU (%)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def print_metrics(metrics: dict, console: Console | None = None) -> None:
    """The final metrics of one trial (`gtaray train`), mIoUs in percent."""
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float) and ("miou" in key or key.startswith("iou_")):
            value = _pct(value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    (console or Console()).print(table)
