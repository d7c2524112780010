"""Sweeps beyond the grid: Optuna + ASHA, divergence as a row, resume after a kill."""

from __future__ import annotations

import pandas as pd
import pytest

from gtaray.config import load_experiment
from gtaray.storage import Store
from gtaray.sweep import run_sweep
from tests.conftest import EXPERIMENTS, run_cli

pytestmark = pytest.mark.ray


def trials(out, name):
    files = sorted((out / name / "trials").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None


def check_the_study_journal(out, exp, rows) -> None:
    """<exp>/optuna.log (what optuna-dashboard opens) has each trial once, as the rows say."""
    from optuna.trial import TrialState

    from gtaray.results import load_curves
    from gtaray.study import StudyJournal, read_study

    study = read_study(str(out), exp)
    by_id = {t.user_attrs["trial_id"]: t for t in study.get_trials()}
    assert sorted(by_id) == sorted(rows["trial_id"])
    for _, row in rows.iterrows():
        trial = by_id[row["trial_id"]]
        assert trial.params["optim.lr_f"] == pytest.approx(row["optim.lr_f"])
        assert trial.params["method.variant"] == row["method.variant"]
        if row["status"] == "completed":
            assert trial.state == TrialState.COMPLETE
            assert trial.value == pytest.approx(row["target_val_miou"])
        else:
            assert trial.state == TrialState.PRUNED and trial.value is None
        assert max(trial.intermediate_values) == row["iterations_done"]
    journal = StudyJournal(exp, Store.at(out))
    assert journal.sync(rows) == 0  # a resume appends only what is missing
    (out / exp.name / "optuna.log").unlink()  # as if stopped between the rows and the journal
    assert journal.sync(rows, load_curves(out, exp.name)) == len(rows)
    assert len(read_study(str(out), exp).get_trials()) == len(rows)


def test_optuna_samples_in_range_and_asha_prunes(tmp_path, ray_address):
    # Designed for pruning: learning rates from "learns nothing" (1e-9) to "learns" (1e-2),
    # one trial at a time so every rung decision compares against finished peers.
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.mode=search",
            "sweep.num_samples=4",
            "sweep.seeds=[0]",  # one trial per sample (two or more seeds: seed groups)
            "sweep.space.lr_f={low: 1.0e-9, high: 1.0e-2}",
            "sweep.space.beta=[0.01, 1.0]",  # listed values: a categorical for Optuna
            "sweep.space.variant=[source_only, target_oracle]",
            "sweep.scheduler=asha",
            "sweep.grace_period=3",
            "sweep.reduction_factor=2",
            "sweep.max_concurrent=1",
            "train.iterations=9",
            "train.eval_every=3",
        ],
    )
    run_sweep(exp, show_progress=False)
    rows = trials(tmp_path, exp.name)
    assert len(rows) == 4 and rows["trial_id"].is_unique
    assert rows["optim.lr_f"].between(1e-9, 1e-2).all()
    assert set(rows["method.beta"]) <= {0.01, 1.0}
    assert set(rows["method.variant"]) <= {"source_only", "target_oracle"}
    assert rows["optim.lr_f"].nunique() == 4  # sampled, not the file's fixed value
    pruned = rows[rows["status"] == "pruned"]
    assert len(pruned) >= 1, rows[["optim.lr_f", "status", "target_val_miou"]]
    assert (pruned["iterations_done"] < 9).all()
    assert set(rows["status"]) <= {"completed", "pruned"}
    # The report summarises a search: ranked on the validation metric, the best as -o flags.
    report = run_cli("report", str(tmp_path), "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert "Search smoke:" in report.stdout and "Ranked by target_val_miou" in report.stdout
    assert "Best configuration: -o optim.lr_f=" in report.stdout
    check_the_study_journal(tmp_path, exp, rows)
    best = report.stdout.split("Best configuration: ", 1)[1].split("\n", 1)[0].strip(" `")
    status = run_cli("status", str(tmp_path))
    assert status.returncode == 0, status.stderr
    assert "smoke: finished\n  trials: 4 of 4 have a row" in status.stdout
    assert f"  best configuration: {best}\n" in status.stdout


def test_seed_asha_runs_each_configuration_as_a_seed_group_decided_together(tmp_path, ray_address):
    """The product's path: gtaray's trainer under seed_asha, 2 configurations x 2 seeds, one
    rung at iteration 3 (the first member there pauses until its sibling arrives)."""
    from ray.tune.search import SearchGenerator

    from gtaray.sweep import _searcher

    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.mode=search",
            "sweep.num_samples=2",
            "sweep.seeds=[0, 1]",
            "sweep.space.lr_f={low: 1.0e-9, high: 1.0e-2}",
            "sweep.space.variant=[source_only]",
            "sweep.scheduler=seed_asha",
            "sweep.grace_period=3",
            "train.iterations=6",
            "train.eval_every=3",
        ],
    )
    run_sweep(exp, show_progress=False)
    rows = trials(tmp_path, exp.name)
    assert len(rows) == 4 and sorted(rows.groupby("config_id")["train.seed"].apply(sorted)) == [
        [0, 1],
        [0, 1],
    ]
    for _, group in rows.groupby("config_id"):  # one configuration, decided as one
        assert group["optim.lr_f"].nunique() == 1 and group["status"].nunique() == 1
        assert group["iterations_done"].nunique() == 1
    # Tune's saved searcher state: Optuna was told each group's mean, once per configuration.
    restored = SearchGenerator(_searcher(exp))
    restored.restore_from_dir(str(tmp_path / exp.name / "tune"))
    told = restored.searcher.told
    means = rows.groupby("config_id")["target_val_miou"].mean()
    assert sorted(told) == sorted(means.index)
    assert [told[g] for g in means.index] == pytest.approx(means.tolist())


def test_diverging_trial_is_a_row_and_the_sweep_goes_on(tmp_path, ray_address):
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [f"results.dir={tmp_path}", "optim.lr_f=1e9", "sweep.seeds=[0]", "sweep.max_concurrent=1"],
    )
    run_sweep(exp, show_progress=False)
    rows = trials(tmp_path, exp.name)
    assert sorted(rows["method.variant"]) == ["source_only", "target_oracle"]
    assert (rows["status"] == "diverged").all()
    assert rows["target_miou"].isna().all()


def test_restored_results_writer_stamps_this_runs_provenance(tmp_path):
    """`--resume` unpickles Tune's callbacks: rows written after it carry this run's revision."""
    import pickle

    from gtaray.provenance import provenance
    from gtaray.sweep import ResultsWriter

    exp = load_experiment(EXPERIMENTS / "smoke.yaml", [f"results.dir={tmp_path}"])
    writer = ResultsWriter(exp, tmp_path)
    writer.provenance = {**writer.provenance, "git_sha": "stale", "gtaray_version": "0.0.0"}
    restored = pickle.loads(pickle.dumps(writer))
    assert restored.provenance == provenance()
    assert restored.provenance["git_sha"] != "stale"
