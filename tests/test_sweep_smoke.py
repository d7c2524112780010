"""The product path end to end: YAML -> Ray Tune -> TorchTrainer -> Parquet -> report."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gtaray.results import row_columns
from gtaray.samples import titled
from tests.conftest import EXPERIMENTS, ROOT, assert_one_line_error, run_cli

pytestmark = pytest.mark.ray


def run_on_a_terminal(*args: str, env: dict) -> tuple[int, str]:
    """`gtaray ARGS` with a pseudo-terminal as stdout and stderr: what a user's screen shows."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "gtaray", *args],
        stdout=child,
        stderr=child,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    os.close(child)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    return process.wait(timeout=600), screen.decode(errors="replace")


def check_the_tensorboard_runs(folder, curves: pd.DataFrame) -> None:
    """One run per trial, read back with TensorBoard's own reader: the curve's metrics at the
    curve's iterations, with the values the Parquet curve has."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted(p.name for p in (folder / "tensorboard").iterdir())
    assert runs == sorted(curves["trial_id"].unique())
    for trial_id, curve in curves.groupby("trial_id"):
        events = EventAccumulator(str(folder / "tensorboard" / trial_id))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"target_miou", "target_val_miou", "source_val_miou", "iou_road"} <= tags, tags
        assert "training_iteration" not in tags and "iteration" not in tags  # bookkeeping
        for tag in ("target_miou", "iou_road"):
            logged = [(e.step, e.value) for e in events.Scalars(tag)]
            expected = list(zip(curve["iteration"], curve[tag], strict=True))
            assert [s for s, _ in logged] == [3, 6] == [s for s, _ in expected]
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected], abs=1e-6)


def test_smoke_sweep_through_the_cli_writes_one_row_per_trial(tmp_path, ray_address):
    out = tmp_path / "results"
    env = {"RAY_ADDRESS": ray_address}
    smoke = str(EXPERIMENTS / "smoke.yaml")
    second = {}

    def start_a_second_sweep_of_it() -> None:  # as from another terminal, while it runs
        lock = out / "smoke" / ".sweep.lock"
        deadline = time.time() + 300
        while time.time() < deadline:
            with contextlib.suppress(OSError, ValueError):  # absent, or being written
                second["holder"] = json.loads(lock.read_text())
                break
            time.sleep(0.2)
        second["result"] = run_cli("sweep", smoke, "--out", str(out), "--resume", env=env)

    other = threading.Thread(target=start_a_second_sweep_of_it)
    other.start()
    tracked = ["-o", "tracking.tensorboard=true"]
    rc, screen = run_on_a_terminal("sweep", smoke, "--out", str(out), *tracked, env=env)
    other.join()
    assert rc == 0, screen[-3000:]
    assert_one_line_error(
        second["result"], "a sweep of this experiment is running", f"pid {second['holder']['pid']}"
    )
    assert not (out / "smoke" / ".sweep.lock").exists()  # released at the end
    # Tune's own output goes to sweep.log, not to the user's terminal.
    log = (out / "smoke" / "sweep.log").read_text()
    for noise in ("View detailed results", "TensorBoard"):
        assert noise in log and noise not in screen, noise
    assert "trials 4/4 done (4 completed)" in screen

    files = sorted((out / "smoke" / "trials").glob("*.parquet"))
    assert len(files) == 4  # 2 variants x 2 seeds
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert set(row_columns()) <= set(rows.columns)
    assert rows["trial_id"].is_unique
    assert sorted(zip(rows["method.variant"], rows["train.seed"], strict=True)) == [
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

    # Each trial saved its picture: 2 image pairs x (source, G, target, G, prediction, label).
    samples = sorted((out / "smoke" / "samples").glob("*.png"))
    assert len(samples) == 4
    # 2 pairs of 64x32 images, upscaled under the titles' band like any grid of that size.
    assert Image.open(samples[0]).size == titled(np.zeros((2 * 32, 6 * 64, 3), np.uint8), "").size

    check_the_tensorboard_runs(out / "smoke", curves)

    report = run_cli("report", str(out), "--format", "markdown", "--plots", str(tmp_path / "fig"))
    assert report.returncode == 0, report.stderr
    for variant in ("source_only", "target_oracle"):
        assert f"| smoke | {variant} | 2 completed | 2 |" in report.stdout
    figures = sorted(p.name for p in (tmp_path / "fig").rglob("*.png"))
    assert "smoke-curves.png" in figures and len(figures) == 2 + 4  # curves, classes, samples
