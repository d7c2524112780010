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
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gtaray.results import row_columns
from gtaray.samples import titled
from tests.conftest import EXPERIMENTS, ROOT, assert_one_line_error, run_cli
from tests.ports import free_port
from tests.test_trackers import finished_wandb_records

pytestmark = pytest.mark.ray

# `mlflow server` needs the full mlflow package, which pins pyarrow below what gtaray runs on:
# it gets a venv of its own, made once (like the SLURM tests' apt packages).
MLFLOW_SERVER_VENV = Path.home() / ".cache" / "gtaray-tests" / "mlflow-server"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (SQLite backend), for this module."""
    mlflow = MLFLOW_SERVER_VENV / "bin" / "mlflow"
    if not mlflow.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_SERVER_VENV)], check=True)
        pip = [str(MLFLOW_SERVER_VENV / "bin" / "pip"), "install", "-q", "mlflow>=3"]
        subprocess.run(pip, check=True, timeout=900)
    folder, port = tmp_path_factory.mktemp("mlflow"), free_port()
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--default-artifact-root", str(folder / "artifacts")],
        stdout=(folder / "server.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{uri}/health", timeout=2) as answer,
        ):
            if answer.status == 200:
                break
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError(
                f"mlflow server did not start: {(folder / 'server.log').read_text()}"
            )
        time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


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


def check_the_wandb_runs(folder, rows: pd.DataFrame) -> None:
    """An offline run per trial; the seeds of one configuration (a variant here) share a group."""
    runs = {}
    for run_folder in (folder / "wandb").glob("offline-run-*"):
        records = finished_wandb_records(next(run_folder.glob("run-*.wandb")))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        runs[run.display_name] = run.run_group
    assert sorted(runs) == sorted(rows["trial_id"])
    by_variant = rows.groupby("method.variant")["trial_id"].apply(
        lambda ids: {runs[i] for i in ids}
    )
    assert all(len(groups) == 1 for groups in by_variant)  # one group per configuration
    assert len(set(runs.values())) == 2


def check_the_mlflow_runs(uri: str, rows: pd.DataFrame, curves: pd.DataFrame) -> None:
    """A run per trial on the server, with the trial's settings and its curve."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    by_trial = {r.info.run_name: r for r in runs}
    assert sorted(by_trial) == sorted(rows["trial_id"])
    for _, row in rows.iterrows():
        run = by_trial[row["trial_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.params["method.variant"] == row["method.variant"]
        assert run.data.params["train.seed"] == str(row["train.seed"])
        logged = client.get_metric_history(run.info.run_id, "target_miou")
        curve = curves[curves["trial_id"] == row["trial_id"]].sort_values("iteration")
        assert [m.step for m in logged] == [3, 6]
        assert [m.value for m in logged] == pytest.approx(curve["target_miou"].tolist())


def test_smoke_sweep_through_the_cli_writes_one_row_per_trial(tmp_path, ray_address, mlflow_server):
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
    tracked = [
        "-o",
        "tracking.tensorboard=true",
        "-o",
        "tracking.wandb={project: smoke, mode: offline}",
    ]
    tracked += ["-o", f"tracking.mlflow={{tracking_uri: '{mlflow_server}'}}"]
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
    check_the_wandb_runs(out / "smoke", rows)
    check_the_mlflow_runs(mlflow_server, rows, curves)

    report = run_cli("report", str(out), "--format", "markdown", "--plots", str(tmp_path / "fig"))
    assert report.returncode == 0, report.stderr
    for variant in ("source_only", "target_oracle"):
        assert f"| smoke | {variant} | 2 completed | 2 |" in report.stdout
    figures = sorted(p.name for p in (tmp_path / "fig").rglob("*.png"))
    assert "smoke-curves.png" in figures and len(figures) == 2 + 4  # curves, classes, samples
