"""Fair ablations (`sweep.mode: ablation`): which variant is better when each one is tuned.

    phases(exp)   # search-<variant> for each of sweep.variants, then final
    search phase: Optuna over sweep.space for that variant alone, sweep.num_samples samples,
                  selected on sweep.metric (a validation split), ASHA or seed_asha allowed
    final phase:  each variant's best configuration on sweep.final_seeds (none of them
                  searched): the rows the report's table is made of

Every variant gets the same budget on the same selection metric, so no variant runs at settings
tuned for another. The test split never chooses: the best configuration is taken on
sweep.metric alone (a seed group's mean when the search runs seed groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from gtaray.config import Experiment
from gtaray.search_report import as_overrides, best_configuration

FINAL = "final"


@dataclass(frozen=True)
class Phase:
    name: str  # search-<variant> or final; also the name of its Tune folder, tune-<name>
    exp: Experiment  # what its trials are built from
    variant: str | None  # the variant a search phase tunes


def search_phase(exp: Experiment, variant: str) -> Phase:
    searched = exp.with_updates(
        {"sweep.mode": "search", "method.variant": variant, "sweep.final_seeds": []}
    )
    return Phase(f"search-{variant}", searched, variant)


def phases(exp: Experiment) -> list[Phase]:
    """The search phases in sweep.variants order, then the final one."""
    final = exp.with_updates(
        {"sweep.mode": "grid", "sweep.seeds": list(exp.sweep.final_seeds), "sweep.final_seeds": []}
    )
    return [*(search_phase(exp, v) for v in exp.sweep.variants), Phase(FINAL, final, None)]


def rows_of(rows: pd.DataFrame, phase: Phase) -> pd.DataFrame:
    """The rows a phase wrote; the one phase of a plain grid or search (no name) owns them all."""
    if not phase.name:
        return rows
    return rows[rows["phase"] == phase.name] if "phase" in rows else rows.iloc[0:0]


def chosen_configurations(exp: Experiment, rows: pd.DataFrame) -> dict[str, dict[str, Any] | None]:
    """Each variant's best configuration, taken from its own search's rows on sweep.metric
    alone; None for a variant whose search completed no trial."""
    chosen = {}
    for variant in exp.sweep.variants:
        phase = search_phase(exp, variant)
        chosen[variant] = best_configuration(rows_of(rows, phase), phase.exp)
    return chosen


def final_space(exp: Experiment, rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Each variant's best configuration with its variant, for the final grid; a variant whose
    search completed no trial gets no final trials (its budget line says so)."""
    return [
        {"method.variant": variant, **best}
        for variant, best in chosen_configurations(exp, rows).items()
        if best is not None
    ]


def budgets(rows: pd.DataFrame, exp: Experiment) -> pd.DataFrame:
    """Per variant: its search's trials and iterations, and the configuration it chose."""
    out = []
    for variant, best in chosen_configurations(exp, rows).items():
        mine = rows_of(rows, search_phase(exp, variant))
        out.append(
            {
                "experiment": exp.name,
                "variant": variant,
                "search_trials": len(mine),
                "search_iterations": int(mine["iterations_done"].fillna(0).sum()),
                "chosen": as_overrides(best) or "none (no search trial completed)",
            }
        )
    return pd.DataFrame(out)


def render_budgets(table: pd.DataFrame, fmt: str = "table") -> str:
    """Each variant's tuning budget and chosen configuration, under the ablation table."""
    name = table["experiment"].iloc[0] if len(table) else ""
    if fmt == "csv":
        return "\n" + table.to_csv(index=False)
    lines = [
        f"\n{name}: each variant tuned on its own (same budget, same selection metric), "
        "then its chosen configuration run on the final seeds (the table above):"
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"- {row.variant}: {row.search_trials} search trials, {row.search_iterations} "
            f"iterations; chose {row.chosen}"
        )
    return "\n".join(lines) + "\n"
