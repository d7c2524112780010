"""What a search sweep found: the top trials by the sweep's validation metric, parameter
importances (Optuna's own, on a study rebuilt from the finished rows), and the best
configuration as a ready `-o` line. Never ranked by test mIoU: that is only shown beside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from gtaray.config import Experiment, LogUniform


@dataclass
class SearchSummary:
    metric: str  # the validation metric the sweep selected on
    params: list[str]  # searched experiment keys (optim.lr_f, ...)
    top: pd.DataFrame  # best first: trial_id, status, the params, the metric, target_miou
    importances: dict[str, float]  # {key: importance}, most important first ({} if too few)
    best_overrides: str  # "-o optim.lr_f=... -o method.variant=..."


def search_distributions(exp: Experiment) -> dict:
    """Optuna's distribution of each searched key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for key, value in exp.sweep.space.searched().items():
        if isinstance(value, LogUniform):
            out[key] = FloatDistribution(value.low, value.high, log=True)
        else:
            out[key] = CategoricalDistribution(list(value))
    return out


def trial_params(row, exp: Experiment) -> dict:
    """A row's searched values as Optuna params (floats for the continuous ones)."""
    params = {}
    for key, dist in search_distributions(exp).items():
        value = row[key]  # rows name their config columns by the same dotted keys
        params[key] = value if hasattr(dist, "choices") else float(value)
    return params


def rebuilt_study(rows: pd.DataFrame, exp: Experiment):
    """An in-memory study of the completed rows (for results written before the journal)."""
    import optuna

    metric, distributions = exp.sweep.metric, search_distributions(exp)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    done = rows[(rows["status"] == "completed") & rows[metric].notna()]
    for _, row in done.iterrows():
        study.add_trial(
            optuna.trial.create_trial(
                params=trial_params(row, exp), distributions=distributions, value=float(row[metric])
            )
        )
    return study


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator) over the completed trials."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not complete[0].distributions:
        return {}
    return dict(optuna.importance.get_param_importances(study))


def best_configuration(rows: pd.DataFrame, exp: Experiment) -> dict | None:
    """The best searched values as experiment updates (`{"optim.lr_f": ...}`): the completed
    trial, or with seed groups the group, of the best sweep.metric (a validation split: the
    test split never chooses); None when no trial completed."""
    metric = exp.sweep.metric
    done = rows[(rows["status"] == "completed") & rows[metric].notna()]
    if done.empty:
        return None
    groups = done["config_id"].fillna(done["trial_id"]) if "config_id" in done else done["trial_id"]
    best = done[groups == done.groupby(groups)[metric].mean().idxmax()].iloc[0]
    return trial_params(best, exp)


def as_overrides(values: dict | None) -> str:
    """`{"optim.lr_f": 1e-4}` as `-o optim.lr_f=0.0001` flags ("" for None)."""
    parts = []
    for key, value in (values or {}).items():
        parts.append(f"-o {key}={value:.4g}" if isinstance(value, float) else f"-o {key}={value}")
    return " ".join(parts)


def best_overrides(rows: pd.DataFrame, exp: Experiment) -> str:
    """The best configuration as `-o key=value` flags ("" if none)."""
    return as_overrides(best_configuration(rows, exp))


def summarise_search(rows: pd.DataFrame, exp: Experiment, k: int = 5, study=None) -> SearchSummary:
    """The top k rows by the selection metric, the importances (from the sweep's journal
    when it wrote one, else from a study rebuilt from the rows) and the best as `-o` flags."""
    metric = exp.sweep.metric
    params = list(search_distributions(exp))
    columns = ["trial_id", "status", *params, metric, "target_miou"]
    ranked = rows.sort_values(metric, ascending=False, na_position="last")[columns]
    return SearchSummary(
        metric,
        params,
        ranked.head(k),
        importances(study if study is not None else rebuilt_study(rows, exp)),
        best_overrides(rows, exp),
    )


def render_search(summary: SearchSummary, fmt: str = "table", console=None) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    headers = list(summary.top.columns)
    rows = [[cell(v) for v in r] for r in summary.top.itertuples(index=False)]
    lines = [f"Ranked by {summary.metric} (validation; target_miou is the test split, shown only)."]
    if summary.importances:
        lines.append(
            "Parameter importance (Optuna): "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary.importances.items())
        )
    else:
        lines.append("Parameter importance: needs at least 2 completed trials.")
    if summary.best_overrides:
        lines.append(f"Best configuration: {summary.best_overrides}")
    if fmt == "markdown":
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out) + "\n\n" + "\n".join(lines) + "\n"
    if fmt == "csv":
        return summary.top.to_csv(index=False)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"top {len(rows)} trials of the search")
    for h in headers:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    console = console or Console()
    console.print(table)
    for line in lines:
        console.print(line)
    return ""
