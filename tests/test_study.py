"""The search journal on an object store: a local copy uploaded whole, continued from the
store's copy by the next process, each trial once."""

from __future__ import annotations

import time

from gtaray.config import load_experiment
from gtaray.storage import Store
from gtaray.study import JOURNAL, StudyJournal, read_study
from tests.conftest import EXPERIMENTS, S3_BUCKET


def _row(trial_id: str, lr: float, value: float, status: str = "completed") -> dict:
    return {
        "trial_id": trial_id,
        "optim.lr_f": lr,
        "train.seed": 0,
        "status": status,
        "iterations_done": 6,
        "target_val_miou": value,
    }


def test_on_s3_the_journal_is_uploaded_whole_and_continued_by_the_next_process(s3):
    location = f"s3://{S3_BUCKET}/study-{time.time_ns()}"
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={location}",
            "sweep.mode=search",
            "sweep.space.lr_f={low: 1e-6, high: 1e-2}",
        ],
    )
    store = Store.at(location)
    StudyJournal(exp, store).record(
        _row("a", 1e-4, 0.3), [{"iteration": 6, "target_val_miou": 0.3}]
    )
    assert store.exists(f"{exp.name}/{JOURNAL}")
    later = StudyJournal(exp, store)  # another process: starts from the store's copy
    later.record(_row("a", 1e-4, 0.3))  # already there
    later.record(_row("b", 1e-3, 0.1, status="diverged"))
    trials = read_study(location, exp).get_trials()
    assert [t.user_attrs["trial_id"] for t in trials] == ["a", "b"]
    assert trials[0].value == 0.3 and trials[0].intermediate_values == {6: 0.3}
    assert trials[1].state.name == "FAIL"
