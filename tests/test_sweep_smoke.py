"""The product path end to end: YAML -> Ray Tune -> TorchTrainer -> Parquet -> report."""

from __future__ import annotations

import pandas as pd
import pytest

from gtaray.results import TRIAL_COLUMNS
from tests.conftest import EXPERIMENTS, run_cli

pytestmark = pytest.mark.ray


def test_smoke_sweep_through_the_cli_writes_one_row_per_trial(tmp_path, ray_address):
    out = tmp_path / "results"
    env = {"RAY_ADDRESS": ray_address}
    result = run_cli("sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    files = sorted((out / "smoke" / "trials").glob("*.parquet"))
    assert len(files) == 4  # 2 variants x 2 seeds
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert set(TRIAL_COLUMNS) <= set(rows.columns)
    assert rows["trial_id"].is_unique
    assert sorted(zip(rows["variant"], rows["seed"], strict=True)) == [
        ("source_only", 0),
        ("source_only", 1),
        ("target_oracle", 0),
        ("target_oracle", 1),
    ]
    assert (rows["status"] == "completed").all()
    assert (rows["iterations_done"] == 6).all()
    assert rows["target_miou"].between(0, 1).all()
    assert (rows["selection_metric"] == "target_val_miou").all()
    curves = pd.concat(pd.read_parquet(f) for f in (out / "smoke" / "curves").glob("*.parquet"))
    assert sorted(curves.groupby("trial_id").size().unique()) == [2]  # evals at 3 and 6

    report = run_cli("report", str(out), "--format", "markdown")
    assert report.returncode == 0, report.stderr
    for variant in ("source_only", "target_oracle"):
        assert f"| smoke | {variant} | 2 |" in report.stdout
