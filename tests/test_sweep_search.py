"""Sweeps beyond the grid: Optuna + ASHA, divergence as a row, resume after a kill."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from gtaray.config import load_experiment
from gtaray.sweep import run_sweep
from tests.conftest import EXPERIMENTS, ROOT, run_cli

pytestmark = pytest.mark.ray


def trials(out, name):
    files = sorted((out / name / "trials").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None


def test_optuna_samples_in_range_and_asha_prunes(tmp_path, ray_address):
    # Designed for pruning: learning rates from "learns nothing" (1e-9) to "learns" (1e-2),
    # one trial at a time so every rung decision compares against finished peers.
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.mode=search",
            "sweep.num_samples=4",
            "sweep.space.lr_f={low: 1.0e-9, high: 1.0e-2}",
            "sweep.space.beta={low: 0.01, high: 1.0}",
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
    assert rows["lr_f"].between(1e-9, 1e-2).all()
    assert rows["beta"].between(0.01, 1.0).all()
    assert set(rows["variant"]) <= {"source_only", "target_oracle"}
    assert rows["lr_f"].nunique() == 4  # sampled, not the file's fixed value
    pruned = rows[rows["status"] == "pruned"]
    assert len(pruned) >= 1, rows[["lr_f", "status", "target_val_miou"]]
    assert (pruned["iterations_done"] < 9).all()
    assert set(rows["status"]) <= {"completed", "pruned"}


def test_diverging_trial_is_a_row_and_the_sweep_goes_on(tmp_path, ray_address):
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [f"results.dir={tmp_path}", "optim.lr_f=1e9", "sweep.seeds=[0]", "sweep.max_concurrent=1"],
    )
    run_sweep(exp, show_progress=False)
    rows = trials(tmp_path, exp.name)
    assert sorted(rows["variant"]) == ["source_only", "target_oracle"]
    assert (rows["status"] == "diverged").all()
    assert rows["target_miou"].isna().all()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_after_kill_finishes_without_rerunning(tmp_path, ray_address):
    out = tmp_path / "results"
    sweep = [
        "sweep",
        str(EXPERIMENTS / "smoke.yaml"),
        "--out",
        str(out),
        "-o",
        "sweep.max_concurrent=1",
    ]
    args = [sys.executable, "-m", "gtaray", *sweep]
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    driver = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    folder = out / "smoke" / "trials"
    deadline = time.time() + 300
    while time.time() < deadline and not list(folder.glob("*.parquet")):
        time.sleep(0.2)
    first = list(folder.glob("*.parquet"))
    assert len(first) == 1, "no trial finished in time"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {p.name: (digest(p), p.stat().st_mtime_ns) for p in folder.glob("*.parquet")}

    refused = run_cli(*sweep, env={"RAY_ADDRESS": ray_address})
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = run_cli(*sweep, "--resume", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = trials(out, "smoke")
    assert len(rows) == 4 and rows["trial_id"].is_unique
    assert (rows["status"] == "completed").all()
    for name, (sha, mtime) in before.items():  # finished trials were not run again
        assert (digest(folder / name), (folder / name).stat().st_mtime_ns) == (sha, mtime)


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
