"""`sweep.mode: ablation` on the built-in data: 2 variants x 3 samples, then each variant's
best configuration on 2 final seeds that no search used; the test split chooses nothing;
resume continues across the phases."""

from __future__ import annotations

import pytest

from gtaray.ablation import FINAL, budgets
from gtaray.config import load_experiment
from gtaray.results import load_trials
from gtaray.search_report import best_configuration
from gtaray.sweep import run_sweep
from tests.conftest import EXPERIMENTS, run_cli

pytestmark = pytest.mark.ray

VARIANTS = ["source_only", "target_oracle"]


def test_each_variant_is_tuned_alone_then_its_best_runs_on_fresh_seeds(tmp_path, ray_address):
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.mode=ablation",
            f"sweep.variants={VARIANTS}",
            "sweep.seeds=[0]",  # the search runs each sample once, at train.seed 0
            "sweep.num_samples=3",
            "sweep.space.lr_f={low: 1.0e-5, high: 1.0e-2}",
            "sweep.final_seeds=[1, 2]",
            "train.iterations=6",
            "train.eval_every=3",
        ],
    )
    run_sweep(exp, show_progress=False)
    rows = load_trials(tmp_path, exp.name)
    assert len(rows) == 2 * 3 + 2 * 2 and (rows["status"] == "completed").all()
    final = rows[rows["phase"] == FINAL]
    searched = rows[rows["phase"] != FINAL]
    assert set(final["train.seed"]) == {1, 2} and set(searched["train.seed"]) == {0}  # fresh seeds
    for variant in VARIANTS:
        mine = searched[searched["phase"] == f"search-{variant}"]
        assert len(mine) == 3 and set(mine["method.variant"]) == {variant}
        best = mine.loc[mine["target_val_miou"].idxmax()]  # the selection metric, never test
        chosen = final[final["method.variant"] == variant]
        assert sorted(chosen["train.seed"]) == [1, 2]
        assert chosen["optim.lr_f"].tolist() == pytest.approx([best["optim.lr_f"]] * 2)
        # The test split decides nothing: scrambling it leaves the choice unchanged.
        scrambled = mine.assign(
            target_miou=mine["target_miou"].to_numpy()[::-1],
            test_miou_target_val=mine["test_miou_target_val"].to_numpy()[::-1],
        )
        phase_exp = exp.with_updates(
            {"sweep.mode": "search", "sweep.final_seeds": [], "method.variant": variant}
        )
        assert best_configuration(scrambled, phase_exp) == best_configuration(mine, phase_exp)
    budget = budgets(rows, exp).set_index("variant")
    assert (budget["search_trials"] == 3).all() and (budget["search_iterations"] == 18).all()
    report = run_cli("report", str(tmp_path), "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert "| smoke | source_only | 2 completed | 2 |" in report.stdout  # final rows only
    assert "- target_oracle: 3 search trials, 18 iterations; chose -o optim.lr_f=" in report.stdout

    # Killed after its searches: --resume runs the final phase alone; searches stay as they were.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / exp.name / "trials").glob("*")}
    for trial_id in final["trial_id"]:
        (tmp_path / exp.name / "trials" / f"{trial_id}.parquet").unlink()
    import shutil

    shutil.rmtree(tmp_path / exp.name / "tune-final")
    run_sweep(exp, resume=True, show_progress=False)
    again = load_trials(tmp_path, exp.name)
    assert len(again) == 10 and (again["phase"] == FINAL).sum() == 4
    for name, mtime in before.items():
        if name.removesuffix(".parquet") in set(searched["trial_id"]):
            assert (tmp_path / exp.name / "trials" / name).stat().st_mtime_ns == mtime
