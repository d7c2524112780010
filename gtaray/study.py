"""A search's Optuna study on disk, for optuna-dashboard and the search report.

    journal = StudyJournal(exp, store)      # <exp>/optuna.log, an Optuna JournalStorage file
    journal.sync(load_trials(...))          # at a sweep's start: the rows it does not have yet
    journal.record(row, curve)              # each finished trial, as its row is written
    optuna-dashboard results/<exp>/optuna.log

The searcher's own study lives in Tune's pickled state, which a dashboard cannot read and a
killed sweep rolls back to its last save; this journal is written from the rows instead (the
sweep's source of truth), one Optuna trial per gtaray trial, keyed by its trial id. So a
resumed sweep appends what is new and never records a trial twice. Completed trials carry the
selection metric as their value and their evaluations as intermediate values; pruned trials
are PRUNED, diverged and failed ones FAIL. Test-split metrics are left out: a dashboard is for
choosing, and the test split never chooses. On a URI the journal is a local copy (in the temp
folder) uploaded whole after each write, so a reader of the store never sees a partial file.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import pandas as pd

from gtaray.config import Experiment
from gtaray.search_report import search_distributions, trial_params
from gtaray.storage import Store

JOURNAL = "optuna.log"
_STATES = {"completed": "COMPLETE", "pruned": "PRUNED"}  # anything else: FAIL


class StudyJournal:
    def __init__(self, exp: Experiment, store: Store, study: str | None = None) -> None:
        # study: its name in the journal (an ablation keeps one study per variant)
        self.exp, self.store, self.name = exp, store, study or exp.name
        self.key = f"{exp.name}/{JOURNAL}"
        if store.is_local:
            self.path = Path(store.path(self.key))
        else:
            where = hashlib.sha256(store.uri(self.key).encode()).hexdigest()[:16]
            self.path = Path(tempfile.gettempdir()) / "gtaray-optuna" / where / JOURNAL
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if store.exists(self.key):  # continue the copy in the store, not an older local one
                self.path.write_bytes(store.read_bytes(self.key))
            else:
                self.path.unlink(missing_ok=True)

    def study(self):
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(self.path)))
        return optuna.create_study(
            storage=storage, study_name=self.name, direction="maximize", load_if_exists=True
        )

    def recorded(self, study=None) -> set[str]:
        study = study or self.study()
        return {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)}

    def record(self, row: dict, curve: list[dict] | None = None) -> None:
        """Add one finished trial, unless it is there already."""
        study = self.study()
        if row["trial_id"] in self.recorded(study):
            return
        study.add_trial(self._trial(row, curve or []))
        self._upload()

    def sync(self, rows: pd.DataFrame, curves: pd.DataFrame | None = None) -> int:
        """Add the rows the journal lacks (a sweep stopped between a row and its journal
        entry); how many were added."""
        if rows.empty:
            return 0
        study = self.study()
        have = self.recorded(study)
        added = 0
        for row in rows.to_dict("records"):
            if row["trial_id"] in have:
                continue
            mine = curves[curves["trial_id"] == row["trial_id"]] if curves is not None else None
            points = mine.to_dict("records") if mine is not None and len(mine) else []
            study.add_trial(self._trial(row, points))
            added += 1
        if added:
            self._upload()
        return added

    def _trial(self, row: dict, curve: list[dict]):
        import optuna
        from optuna.trial import TrialState

        metric = self.exp.sweep.metric
        state = TrialState[_STATES.get(row["status"], "FAIL")]
        value = row.get(metric)
        finite = value is not None and not (isinstance(value, float) and math.isnan(value))
        if state == TrialState.COMPLETE and not finite:
            state = TrialState.FAIL  # Optuna's COMPLETE needs a value
        steps = {
            int(p["iteration"]): float(p[metric])
            for p in curve
            if metric in p and p[metric] is not None and not math.isnan(float(p[metric]))
        }
        return optuna.trial.create_trial(
            state=state,
            value=float(value) if state == TrialState.COMPLETE else None,
            params=trial_params(row, self.exp),
            distributions=search_distributions(self.exp),
            intermediate_values=steps,
            user_attrs={
                "trial_id": row["trial_id"],
                "seed": int(row["train.seed"]),
                "status": row["status"],
                "iterations_done": int(row.get("iterations_done") or 0),
            },
        )

    def _upload(self) -> None:
        if not self.store.is_local:
            self.store.write_atomic(self.key, self.path.read_bytes())


def read_study(folder: str, exp: Experiment):
    """The study a search wrote, or None when it wrote none (an older results folder)."""
    store = Store.at(folder)
    if not store.exists(f"{exp.name}/{JOURNAL}"):
        return None
    return StudyJournal(exp, store).study()
