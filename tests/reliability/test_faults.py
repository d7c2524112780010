"""Faults during a sweep, with the Parquet rows checked after each: a killed Ray Train worker,
a trial that raises, Ctrl-C, and the whole process group killed. No row is ever lost or
duplicated, and `--resume` finishes the job."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gtaray.config import load_experiment
from gtaray.results import load_curves, load_trials
from gtaray.sweep import run_sweep
from tests.conftest import EXPERIMENTS, ROOT, assert_one_line_error, run_cli
from tests.faults import KillOnce
from tests.reliability.tally import count

pytestmark = pytest.mark.ray


def account(rows: pd.DataFrame, planned: int) -> None:
    """Every planned trial has exactly one row; tally the rows lost (always 0 when passing)."""
    count("faults injected")
    count("rows lost", max(planned - len(rows), 0))
    assert len(rows) == planned and rows["trial_id"].is_unique


def sweep_args(out: Path, *overrides: str) -> list[str]:
    args = ["sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", str(out)]
    for o in ("sweep.max_concurrent=1", *overrides):
        args += ["-o", o]
    return args


def start_sweep(args: list[str], ray_address: str, **popen) -> subprocess.Popen:
    """`gtaray ARGS` in its own process group, as a shell runs a foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "gtaray", *args],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        start_new_session=True,
        **popen,
    )


def wait_for(paths, timeout: float = 300) -> list[Path]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(paths())
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_killed_worker_fails_its_trial_the_sweep_goes_on_and_resume_retries_it(
    tmp_path, ray_address
):
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.variants=[source_only]",
            "sweep.max_concurrent=1",
            "train.iterations=4",
            "train.eval_every=2",
            "train.max_failures=0",
        ],
    )
    marker = tmp_path / "killed"
    kill = KillOnce(rank=0, iteration=3, marker=str(marker))  # after the checkpoint at 2
    outcome = run_sweep(exp, show_progress=False, step_hook=kill)
    assert marker.exists()
    rows = load_trials(tmp_path, exp.name)
    account(rows, 2)
    assert outcome.statuses == {"failed": 1, "completed": 1}
    failed = rows[rows["status"] == "failed"].iloc[0]
    assert failed["iterations_done"] <= 2  # as far as Tune heard before the kill
    # The message, not the path of Tune's error file.
    assert "WorkerGroupError" in failed["error"] and "worker" in failed["error"], failed["error"]
    assert not failed["error"].startswith("/")
    print(failed["error"])

    outcome = run_sweep(exp, resume=True, show_progress=False)
    rows = load_trials(tmp_path, exp.name)
    account(rows, 2)
    assert outcome.statuses == {"completed": 2} and outcome.unfinished == 0
    retried = rows.set_index("trial_id").loc[failed["trial_id"]]
    assert retried["iterations_done"] == 4 and pd.isna(retried["error"])
    history = list((tmp_path / exp.name / "trials" / "history").glob("*.parquet"))
    assert [pd.read_parquet(h)["status"].item() for h in history] == ["failed"]
    curve = load_curves(tmp_path, exp.name).query("trial_id == @failed.trial_id")
    assert curve["iteration"].tolist() == [2, 4]  # continued from its checkpoint, no duplicate


def test_a_trial_that_raises_is_a_failed_row_and_the_sweep_exits_1(tmp_path, ray_address):
    # The CLI itself, with a fault injected into its trials (never through the environment).
    script = (
        "import gtaray.sweep as s; from tests.faults import RaiseAt; from gtaray.cli import app\n"
        "run = s.run_sweep\n"
        "s.run_sweep = lambda exp, **kw: run(exp, step_hook=RaiseAt(2), **kw)\n"
        "app(prog_name='gtaray')\n"
    )
    args = sweep_args(tmp_path, "sweep.variants=[source_only]", "sweep.seeds=[0]")
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no trial completed (1 failed)" in result.stderr
    rows = load_trials(tmp_path, "smoke")
    account(rows, 1)
    assert rows["status"].tolist() == ["failed"]
    assert "injected fault at iteration 2" in rows["error"].item()


def test_ctrl_c_exits_130_with_a_hint_and_resume_loses_no_curve_point(tmp_path, ray_address):
    args = sweep_args(tmp_path, "sweep.seeds=[0]", "train.iterations=400", "train.eval_every=100")
    driver = start_sweep(args, ray_address, stderr=subprocess.PIPE, text=True)
    train = tmp_path / "smoke" / "train"
    wait_for(lambda: train.glob("*/checkpoint_*/state.pt"))
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C on a terminal sends
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 130, stderr[-2000:]
    assert "continue with: gtaray sweep" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr

    resumed = run_cli(*args, "--resume", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = load_trials(tmp_path, "smoke")
    account(rows, 2)
    assert (rows["status"] == "completed").all()
    curves = load_curves(tmp_path, "smoke")
    for trial_id, curve in curves.groupby("trial_id"):
        assert curve["iteration"].tolist() == [100, 200, 300, 400], trial_id


def test_sigterm_stops_cleanly_with_143_and_resume_runs_each_trial_once(tmp_path, ray_address):
    """What SLURM's time limit, scancel and preemption send: SIGTERM to the sweep process
    (ray.init's own handler would sys.exit mid-sweep; gtaray.stopping routes it to Tune's
    graceful stop)."""
    args = sweep_args(tmp_path, "sweep.seeds=[0]", "train.iterations=400", "train.eval_every=100")
    driver = start_sweep(args, ray_address, stderr=subprocess.PIPE, text=True)
    train = tmp_path / "smoke" / "train"
    wait_for(lambda: train.glob("*/checkpoint_*/state.pt"))
    # While it runs, a second sweep of the experiment is refused, naming the first.
    for extra in ([], ["--resume"]):
        second = run_cli(*args, *extra, env={"RAY_ADDRESS": ray_address})
        assert_one_line_error(second, "a sweep of this experiment is running", f"pid {driver.pid}")
    running = run_cli("status", str(tmp_path))  # reads the folder only, as on a login node
    assert running.returncode == 0, running.stderr
    assert f"smoke: running (host {socket.gethostname()}, pid {driver.pid}, since" in running.stdout
    assert "of 2 have a row" in running.stdout and "under way" in running.stdout
    reported = {
        trial_id: curve["iteration"].tolist()
        for trial_id, curve in load_curves(tmp_path, "smoke").groupby("trial_id")
    }
    driver.send_signal(signal.SIGTERM)  # the process alone, as `kill PID` and scancel do
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    assert "continue with: gtaray sweep" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    stopped = load_curves(tmp_path, "smoke")
    for trial_id, points in reported.items():  # every point reported before the stop is kept
        kept = stopped[stopped["trial_id"] == trial_id]["iteration"].tolist()
        assert kept[: len(points)] == points, trial_id
    interrupted = run_cli("status", str(tmp_path)).stdout
    assert "smoke: interrupted\n" in interrupted and "resume continues them" in interrupted

    resumed = run_cli(*args, "--resume", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = load_trials(tmp_path, "smoke")
    account(rows, 2)
    assert (rows["status"] == "completed").all()
    for trial_id, curve in load_curves(tmp_path, "smoke").groupby("trial_id"):
        assert curve["iteration"].tolist() == [100, 200, 300, 400], trial_id
    finished = run_cli("status", str(tmp_path)).stdout
    best = max(
        rows["target_val_miou"].max(), load_curves(tmp_path, "smoke")["target_val_miou"].max()
    )
    assert "smoke: finished\n  trials: 2 of 2 have a row (2 completed)\n" in finished
    assert f"best target_val_miou so far: {best:.4g}" in finished


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_process_group_killed_then_resume_neither_loses_nor_repeats_a_trial(tmp_path, ray_address):
    args = sweep_args(tmp_path / "results")
    driver = start_sweep(args, ray_address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "results" / "smoke" / "trials"
    first = wait_for(lambda: folder.glob("*.parquet"))
    assert len(first) == 1
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {p.name: (digest(p), p.stat().st_mtime_ns) for p in folder.glob("*.parquet")}

    refused = run_cli(*args, env={"RAY_ADDRESS": ray_address})
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = run_cli(*args, "--resume", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = load_trials(tmp_path / "results", "smoke")
    account(rows, 4)
    assert (rows["status"] == "completed").all()
    for name, (sha, mtime) in before.items():  # finished trials were not run again
        assert (digest(folder / name), (folder / name).stat().st_mtime_ns) == (sha, mtime)
