"""The report's pictures (`gtaray report --plots DIR`), as PNG files written with matplotlib:
learning curves (mean and a std band over seeds per variant), per-class IoU bars per variant,
and parameter importances of a search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gtaray.config import VARIANTS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def plot_curves(curves: pd.DataFrame, out: Path, title: str = "") -> Path:
    """Target test mIoU against iteration: mean over a variant's trials, a ±1 std band."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {v: f"C{i}" for i, v in enumerate(VARIANTS)}
    present = [v for v in VARIANTS if v in set(curves["method.variant"])]
    for variant in present:
        by_iteration = curves[curves["method.variant"] == variant].groupby("iteration")[
            "target_miou"
        ]
        mean, std = 100 * by_iteration.mean(), 100 * by_iteration.std(ddof=1).fillna(0)
        n = curves[curves["method.variant"] == variant]["trial_id"].nunique()
        ax.plot(mean.index, mean, color=colours[variant], label=f"{variant} (n={n})")
        ax.fill_between(mean.index, mean - std, mean + std, color=colours[variant], alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("target test mIoU (%)")
    ax.set_title(title or "learning curves: mean ± std over seeds")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_class_iou(summary: pd.DataFrame, out: Path, title: str = "") -> Path:
    """Grouped bars: one group per class, one bar per variant (mean IoU of completed trials)."""
    plt = _pyplot()
    iou_cols = [c for c in summary.columns if c.startswith("iou_") and summary[c].notna().any()]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(iou_cols) * max(1, len(summary)) / 2), 4))
    width = 0.8 / max(1, len(summary))
    x = np.arange(len(iou_cols))
    for i, (_, row) in enumerate(summary.iterrows()):
        colour = f"C{VARIANTS.index(row['variant'])}" if row["variant"] in VARIANTS else None
        values = [100 * row[c] if pd.notna(row[c]) else 0 for c in iou_cols]
        ax.bar(x + i * width, values, width, label=row["variant"], color=colour)
    ax.set_xticks(x + width * (len(summary) - 1) / 2)
    ax.set_xticklabels([c.removeprefix("iou_") for c in iou_cols], rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title or "per-class target IoU")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_importance(importances: dict[str, float], out: Path, title: str = "") -> Path:
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel("importance (Optuna, PED-ANOVA)")
    ax.set_title(title or "parameter importance")
    return _save(fig, out)


def plot_knn(results: list, out: Path) -> Path:
    """One bar per checkpoint: the fraction of source images among target images' neighbours."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(results)), 4))
    labels = [f"{r.variant}\n@{r.iteration}" for r in results]
    colours = [f"C{VARIANTS.index(r.variant)}" if r.variant in VARIANTS else "C0" for r in results]
    ax.bar(range(len(results)), [r.source_fraction for r in results], color=colours)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(f"source fraction of {results[0].k} nearest neighbours" if results else "")
    ax.set_title("k-NN domain mixing in F's feature space (higher = better aligned)")
    return _save(fig, out)
