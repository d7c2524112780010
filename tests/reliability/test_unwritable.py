"""A results folder that cannot be written: refused in one line when it is so from the start
(tests/reliability/test_bad_configs.py); when the disk fills during a sweep, a clear error and
every Parquet file written before stays whole and readable."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys

import pandas as pd
import pytest

from gtaray.config import load_experiment
from gtaray.results import load_trials
from gtaray.sweep import run_sweep
from tests.conftest import EXPERIMENTS, ROOT
from tests.reliability.tally import count

pytestmark = pytest.mark.ray

ONE_TRIAL = [
    "sweep.variants=[source_only]",
    "sweep.seeds=[0]",
    "train.iterations=2",
    "train.eval_every=2",
]


def test_disk_full_during_a_sweep_is_one_clear_error_and_earlier_rows_stay_whole(
    tmp_path, ray_address
):
    before = load_experiment(
        EXPERIMENTS / "smoke.yaml", [f"results.dir={tmp_path}", "name=before", *ONE_TRIAL]
    )
    run_sweep(before, show_progress=False)
    written = {p: hashlib.sha256(p.read_bytes()).digest() for p in tmp_path.rglob("*.parquet")}
    assert written

    def full_disk() -> None:
        # Files may grow to 14 kB: curves (~12 kB) fit, a trial row (~17 kB) does not. As root
        # this stands in for a full disk (ENOSPC and EFBIG both reach Python as OSError).
        resource.setrlimit(resource.RLIMIT_FSIZE, (14_000, 14_000))

    args = ["sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", str(tmp_path), "-o", "name=full"]
    for o in ONE_TRIAL:
        args += ["-o", o]
    result = subprocess.run(
        [sys.executable, "-m", "gtaray", *args],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=full_disk,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    # (the lines before it are the live progress view)
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last.startswith("gtaray: error: cannot write ") and "File too large" in last, last
    # Tune's state or a row, whichever the full disk stopped first.
    assert str(tmp_path / "full") in last and "--resume" in last
    # Earlier files untouched; no half-written file visible to readers.
    assert {p: hashlib.sha256(p.read_bytes()).digest() for p in written} == written
    assert load_trials(tmp_path)["experiment"].tolist() == ["before"]
    for path in tmp_path.rglob("*.parquet"):
        pd.read_parquet(path)
    count("faults injected")
