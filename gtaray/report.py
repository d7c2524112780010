"""Paper-style tables from the Parquet results: an ablation table with statistics, and a
per-class table, under a stated protocol.

    gtaray report results --experiment ablations --format markdown --select target_val

The protocol says which evaluation of each trial gives its test mIoU: the last one, or the one
with the best target-val (or source-val) mIoU. Only completed trials are averaged; pruned,
diverged and failed ones are counted apart. Statistics: mean ± sample std over seeds, a 95%
confidence interval from Student's t, and the difference to source_only in the same experiment
with Welch's and the paired t-test p-values, the probability of improvement over source_only
with its bootstrap interval, and how many seeds the difference would need (gtaray.seed_noise).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy import stats

from gtaray.config import VARIANTS
from gtaray.results import PROTOCOLS, PROTOCOLS_13, STATUSES
from gtaray.seed_noise import bootstrap_interval, probability_of_improvement, seeds_needed

PROTOCOL_TEXT = {
    "last": "the target test mIoU at each trial's last evaluation",
    "target_val": "the target test mIoU at the evaluation with the best target-val mIoU "
    "(labelled target images held out of training)",
    "source_val": "the target test mIoU at the evaluation with the best source-val mIoU "
    "(strict UDA: no target labels)",
}


def protocol_view(trials: pd.DataFrame, curves: pd.DataFrame, select: str) -> pd.DataFrame:
    """One row per trial under a protocol: `miou` and the `iou_*` columns at the evaluation
    it selects, `evaluation` its iteration (per-class IoUs of a selected evaluation come from
    the trial's curve)."""
    miou, iteration = PROTOCOLS[select]
    view = trials.copy()
    view["miou"] = pd.to_numeric(view.get(miou), errors="coerce")
    star = PROTOCOLS_13[select]
    view["miou13"] = pd.to_numeric(view[star], errors="coerce") if star in view else math.nan
    view["evaluation"] = view.get(iteration)
    iou_cols = [c for c in view.columns if c.startswith("iou_")]
    if select == "last" or not iou_cols:
        return view
    view[iou_cols] = math.nan
    if curves.empty:
        return view
    # One merge of (trial, selected iteration) with the curves, not a lookup per trial.
    keys = ["trial_id", "iteration"]
    have = [c for c in iou_cols if c in curves]
    at = curves[[*keys, *have]].assign(iteration=pd.to_numeric(curves["iteration"]))
    wanted = pd.DataFrame(
        {"trial_id": view["trial_id"].to_numpy(), "iteration": pd.to_numeric(view["evaluation"])}
    )
    picked = wanted.merge(at.drop_duplicates(keys), on=keys, how="left")
    selected = wanted["iteration"].notna().to_numpy()
    for col in have:
        view[col] = np.where(selected, pd.to_numeric(picked[col]).to_numpy(), math.nan)
    return view


def _ci95(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2:
        return math.nan, math.nan
    sem = values.std(ddof=1) / math.sqrt(len(values))
    if sem == 0:  # equal values (a collapsed variant): scipy would warn and give NaN * 0
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sem)
    return float(low), float(high)


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _paired_p(mine: pd.DataFrame, base: pd.DataFrame) -> float:
    """Paired t-test over the seeds both variants completed (variants share seeds, so seed
    effects on the data order and initialisation cancel); NaN under 2 matched seeds."""
    pairs = pd.merge(
        mine.groupby("train.seed")["miou"].mean(),
        base.groupby("train.seed")["miou"].mean(),
        on="train.seed",
    ).dropna()
    if len(pairs) < 2 or (pairs.iloc[:, 0] - pairs.iloc[:, 1]).std() == 0:
        return math.nan
    return float(stats.ttest_rel(pairs.iloc[:, 0], pairs.iloc[:, 1]).pvalue)


def summarise(view: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset pair, experiment, variant) in paper order: trials by status, and
    over completed trials: n, mean, std, 95% CI, difference to source_only with Welch's and
    the paired (matched seeds) p, mIoU* where the rows have it, mean class IoUs."""
    iou_cols = [c for c in view.columns if c.startswith("iou_")]
    view = view.assign(pair=dataset_pair(view))
    rows = []
    keys = ["pair", "experiment", "method.variant"]
    for (pair, experiment, variant), group in view.groupby(keys, sort=False):
        done = group[group["status"] == "completed"]
        values = done["miou"].dropna().to_numpy(dtype=float)
        low, high = _ci95(values)
        row = {"pair": pair, "experiment": experiment, "variant": variant, "trials": len(group)}
        row |= {s: int((group["status"] == s).sum()) for s in STATUSES}
        row |= {
            "n": len(values),
            "miou_mean": float(values.mean()) if len(values) else math.nan,
            "miou_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "ci_low": low,
            "ci_high": high,
            "miou13_mean": float(done["miou13"].mean()) if len(done) else math.nan,
            "miou13_std": float(done["miou13"].std(ddof=1)) if len(done) > 1 else math.nan,
        }
        row |= {c: float(done[c].mean()) if len(done) else math.nan for c in iou_cols}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["delta_source_only"], table["p_source_only"] = math.nan, math.nan
    table["p_paired_source_only"] = math.nan
    for column in ("p_improvement", "p_improvement_low", "p_improvement_high", "seeds_needed"):
        table[column] = math.nan
    done = view[(view["status"] == "completed") & view["miou"].notna()]
    for i, row in table.iterrows():
        same = done[done["experiment"] == row["experiment"]]
        base = same[same["method.variant"] == "source_only"]
        mine = same[same["method.variant"] == row["variant"]]
        if row["variant"] != "source_only" and len(base) and len(mine):
            a, b = mine["miou"].to_numpy(float), base["miou"].to_numpy(float)
            table.at[i, "delta_source_only"] = a.mean() - b.mean()
            table.at[i, "p_source_only"] = _welch_p(a, b)
            table.at[i, "p_paired_source_only"] = _paired_p(mine, base)
            table.at[i, "p_improvement"] = probability_of_improvement(a, b)
            low, high = bootstrap_interval(a, b)
            table.at[i, "p_improvement_low"], table.at[i, "p_improvement_high"] = low, high
            std = (
                a.std(ddof=1) if len(a) > 1 else math.nan,
                b.std(ddof=1) if len(b) > 1 else math.nan,
            )
            needed = seeds_needed(a.mean() - b.mean(), *std)
            table.at[i, "seeds_needed"] = math.nan if needed is None else needed
    order = {v: i for i, v in enumerate(VARIANTS)}
    table["_order"] = table["variant"].map(order)
    table = table.sort_values(["pair", "experiment", "_order"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def dataset_pair(rows: pd.DataFrame) -> pd.Series:
    """Each row's source -> target datasets ("gta5→cityscapes"); "unknown data" for rows
    written before the rows said."""
    if "data.source" not in rows or "data.target" not in rows:
        return pd.Series("unknown data", index=rows.index)
    known = rows["data.source"].notna() & rows["data.target"].notna()
    pair = rows["data.source"].astype(str) + "→" + rows["data.target"].astype(str)
    return pair.where(known, "unknown data")


def _pct(value: float, digits: int = 1) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.{digits}f}"


def _status(row: pd.Series) -> str:
    parts = [f"{row[s]} {s}" for s in STATUSES if row[s]]
    return ", ".join(parts) or "none"


def _mean_std(mean: float, std: float) -> str:
    return _pct(mean) + ("" if np.isnan(std) else f" ± {_pct(std)}")


def _p(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3g}"


def _ablation_cells(row: pd.Series, star: bool) -> list[str]:
    ci = "-" if np.isnan(row["ci_low"]) else f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"
    delta = "-" if np.isnan(row["delta_source_only"]) else f"{100 * row['delta_source_only']:+.1f}"
    cells = [row["experiment"], row["variant"], _status(row), str(row["n"])]
    cells.append(_mean_std(row["miou_mean"], row["miou_std"]))
    if star:
        cells.append(_mean_std(row["miou13_mean"], row["miou13_std"]))
    improvement = _improvement(row)
    return [
        *cells,
        ci,
        delta,
        _p(row["p_source_only"]),
        _p(row["p_paired_source_only"]),
        improvement,
    ]


def _improvement(row: pd.Series) -> str:
    """P(X > source_only) [bootstrap 95% interval]."""
    if np.isnan(row["p_improvement"]):
        return "-"
    if np.isnan(row["p_improvement_low"]):
        return f"{row['p_improvement']:.2f}"
    low, high = row["p_improvement_low"], row["p_improvement_high"]
    return f"{row['p_improvement']:.2f} [{low:.2f}, {high:.2f}]"


def _statistic_groups(star: bool) -> tuple[tuple[str, ...], ...]:
    """The ablation table's statistics columns in three groups (the block layout's lines):
    the mean and its interval, the difference and its tests, the probability of improvement."""
    means = ("mIoU (%)", *(("mIoU* (%)",) if star else ()), "95% CI")
    return means, ("Δ vs source_only", "p (Welch)", "p (paired)"), ("P(> source_only)",)


def ablation_headers(star: bool) -> list[str]:
    """The ablation table's columns; "mIoU*" (SYNTHIA's 13 of 16 classes) when rows have it."""
    statistics = [h for group in _statistic_groups(star) for h in group]
    return ["experiment", "variant", "trials", "n", *statistics]


def protocol_note(select: str, star: bool = False) -> str:
    note = (
        f"Protocol: {PROTOCOL_TEXT[select]}. Completed trials only: mean ± sample std over "
        "seeds (n), 95% CI from Student's t, Δ = mean minus source_only's in the same "
        "experiment, p from Welch's t-test and from a paired t-test over matched seeds, "
        "P(> source_only): the probability that a random seed of the variant beats a random "
        "seed of source_only, with a stratified bootstrap 95% interval (rliable's). "
        "p-values do not account for how the settings were chosen. Pruned, diverged and "
        "failed trials are counted, not averaged. source_only and target_oracle are the bounds."
    )
    if star:
        note += (
            " mIoU*: the same 16-class model's mean IoU over the 13 classes without wall, "
            "fence and pole (SYNTHIA's protocol)."
        )
    return note


def power_note(summary: pd.DataFrame) -> str:
    """How many seeds each observed difference would need, at the observed spread."""
    parts = []
    for _, row in summary.iterrows():
        if not np.isnan(row.get("seeds_needed", math.nan)):
            name = (
                row["variant"]
                if summary["experiment"].nunique() == 1
                else (f"{row['experiment']}/{row['variant']}")
            )
            parts.append(f"{name} {int(row['seeds_needed'])}")
    if not parts:
        return ""
    return (
        "Seeds per variant that a two-sided t-test (α 0.05, power 0.8) needs to detect each Δ "
        "at the observed std: " + ", ".join(parts) + "."
    )


def _class_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    iou_cols = [c for c in summary.columns if c.startswith("iou_") and summary[c].notna().any()]
    star = _has_star(summary)
    headers = ["experiment", "variant", *(c.removeprefix("iou_") for c in iou_cols), "mIoU"]
    headers += ["mIoU*"] if star else []
    rows = [
        [
            r["experiment"],
            r["variant"],
            *(_pct(r[c]) for c in iou_cols),
            _pct(r["miou_mean"]),
            *([_pct(r["miou13_mean"])] if star else []),
        ]
        for _, r in summary.iterrows()
    ]
    return headers, rows


def _has_star(summary: pd.DataFrame) -> bool:
    return "miou13_mean" in summary and bool(summary["miou13_mean"].notna().any())


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(out) + "\n"


def render(
    summary: pd.DataFrame, fmt: str = "table", select: str = "last", console: Console | None = None
) -> str:
    """Print (table) or return (csv, markdown) the ablation and per-class tables, one set per
    dataset pair (variants are only comparable on the same data)."""
    if fmt == "csv":
        return summary.assign(protocol=select).to_csv(index=False)
    console = console or Console()
    pairs = list(dict.fromkeys(summary["pair"])) if "pair" in summary else [None]
    texts = [
        _render_pair(
            summary if pair is None else summary[summary["pair"] == pair],
            fmt,
            select,
            console,
            pair,
        )
        for pair in pairs
    ]
    return "\n".join(texts) if fmt == "markdown" else ""


def _render_pair(
    summary: pd.DataFrame, fmt: str, select: str, console: Console, pair: str | None
) -> str:
    star = _has_star(summary)
    ablation = [_ablation_cells(r, star) for _, r in summary.iterrows()]
    headers = ablation_headers(star)
    class_headers, class_rows = _class_cells(summary)
    power = power_note(summary)
    if fmt == "markdown":
        text = f"### {pair}\n\n" if pair else ""
        text += _markdown(headers, ablation) + "\n" + protocol_note(select, star) + "\n"
        text += f"\n{power}\n" if power else ""
        if len(class_headers) > 3:
            text += "\nPer-class target IoU (%), mean over completed trials:\n\n"
            text += _markdown(class_headers, class_rows)
        return text
    # A terminal (or a pipe: 80 columns) is narrower than a paper. No name is ever cut: one
    # experiment goes in the title, the ablation table becomes a block per variant when its
    # columns do not fit, and per-class IoU is transposed (a row per class) and split into
    # as many tables of variant columns as it takes.
    experiments = summary["experiment"].unique()
    single = len(experiments) == 1
    title = ", ".join(filter(None, [experiments[0] if single else None, pair]))
    title += ": " if title else ""
    note = protocol_note(select, star) + (f" {power}" if power else "")
    headers, ablation = headers[single:], [cells[single:] for cells in ablation]
    if _table_width(headers, ablation) <= console.width:
        console.print(_table(f"{title}target mIoU by variant", headers, ablation, LEFT))
    else:
        console.print(f"{title}target mIoU by variant", soft_wrap=True)
        for line in _blocks(headers, ablation, single, star):
            console.print(line, soft_wrap=True, highlight=False)
    console.print(note, highlight=False)
    if len(class_headers) <= 3:
        return ""
    class_headers, class_rows = class_headers[single:], [cells[single:] for cells in class_rows]
    per_class = f"{title}per-class target IoU (%), mean over completed trials"
    if _table_width(class_headers, class_rows) <= console.width:
        console.print(_table(per_class, class_headers, class_rows, LEFT))
        return ""
    names = ["/".join(cells[: 2 - single]) for cells in class_rows]  # [experiment/]variant
    values = [cells[2 - single :] for cells in class_rows]
    groups = _column_groups(class_headers[2 - single :], names, values, console.width)
    for k, columns in enumerate(groups, start=1):
        part = f" ({k} of {len(groups)})" if len(groups) > 1 else ""
        rows = [
            [name, *(values[j][i] for j in columns)]
            for i, name in enumerate(class_headers[2 - single :])
        ]
        headers = ["class", *(names[j] for j in columns)]
        console.print(_table(per_class + part, headers, rows, ("class",)))
    return ""


LEFT = ("experiment", "variant", "trials", "class")


def _table(title: str, headers: list[str], rows: list[list[str]], left) -> Table:
    """A table whose cells never wrap nor get cut (callers check that it fits)."""
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="left" if h in left else "right", no_wrap=True)
    for cells in rows:
        table.add_row(*cells)
    return table


def _table_width(headers: list[str], rows: list[list[str]]) -> int:
    """The width of `_table` with no cell wrapped: each column its widest cell, two spaces of
    padding and one border, plus the last border."""
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    return 1 + sum(w + 3 for w in widths)


def _blocks(headers: list[str], rows: list[list[str]], single: bool, star: bool) -> list[str]:
    """The ablation table as a block per row: its names and trials, then its statistics on
    up to three lines (each well under 80 columns)."""
    lines = []
    for cells in rows:
        cell = dict(zip(headers, cells, strict=True))
        head = " / ".join(cells[: 1 if single else 2])
        lines.append(f"{head}: {cell['trials']} (n {cell['n']})")
        for keys in _statistic_groups(star):
            parts = [f"{k} {cell[k]}" for k in keys if cell[k] != "-"]
            if parts:
                lines.append("  " + "   ".join(parts))
    return lines


def _column_groups(classes: list[str], names: list[str], values, width: int) -> list[list[int]]:
    """The variant columns of the transposed per-class table, split into as few groups as fit
    `width` beside the class column, of even sizes where they fit (a group has at least one
    column, even one wider than `width`)."""
    first = 1 + max(len(c) for c in ["class", *classes]) + 3
    widths = [max(len(name), *(len(v) for v in values[j])) + 3 for j, name in enumerate(names)]
    greedy, current, used = [], [], first
    for j, w in enumerate(widths):
        if current and used + w > width:
            greedy.append(current)
            current, used = [], first
        current.append(j)
        used += w
    greedy.append(current)
    size = math.ceil(len(names) / len(greedy))
    even = [list(range(i, min(i + size, len(names)))) for i in range(0, len(names), size)]
    fits = all(first + sum(widths[j] for j in group) <= width for group in even)
    return even if fits and len(even) == len(greedy) else greedy


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
