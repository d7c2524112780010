"""The cluster path, on one machine: results on a real S3 API (moto's server on 127.0.0.1) and
a Ray cluster of several nodes (tests/multinode.py). Every service is started by the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from gtaray.results import load_curves, load_trials
from gtaray.storage import Store, local_log
from tests.conftest import (
    EXPERIMENTS,
    ROOT,
    S3_BUCKET,
    assert_one_line_error,
    run_cli,
)
from tests.ports import free_port

pytestmark = pytest.mark.ray


def sweep_args(out: str, *overrides: str) -> list[str]:
    args = ["sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", out]
    for o in overrides:
        args += ["-o", o]
    return args


def s3_keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_sweep_on_s3_survives_a_kill_resumes_from_the_uri_and_reports(tmp_path, s3, ray_address):
    out = f"s3://{S3_BUCKET}/{tmp_path.name}/results"
    args = sweep_args(out, "sweep.seeds=[0]", "sweep.max_concurrent=1")
    driver = subprocess.Popen(
        [sys.executable, "-m", "gtaray", *args],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    store = Store.at(out)
    deadline = time.time() + 300
    while not store.exists("smoke/.sweep.lock") and time.time() < deadline:
        time.sleep(0.2)
    # While it runs, a second sweep of the S3 experiment is refused (the lock object).
    second = run_cli(*args, "--resume", env={"RAY_ADDRESS": ray_address})
    assert_one_line_error(second, "a sweep of this experiment is running", f"pid {driver.pid}")
    while not store.names("smoke/trials", ".parquet") and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(store.names("smoke/trials", ".parquet")) == 1

    # Resumed with an MLflow server that is down (tracking is not part of the experiment's
    # identity): each trial's tracker error is one line, and the sweep still completes.
    server = f"http://127.0.0.1:{free_port()}"
    down = f"tracking.mlflow={{tracking_uri: '{server}'}}"
    resumed = run_cli(*args, "-o", down, "--resume", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = local_log(store, "smoke/sweep.log").read_text()  # on this machine: not an object
    assert len(re.findall(rf"^gtaray: mlflow tracker, trial \S+: .*{server}/", log, re.M)) == 1
    # The killed sweep's lock is taken over at once: its host is this one, its pid is gone.
    assert f"pid {driver.pid}): pid {driver.pid} on this host is gone" in resumed.stderr
    assert not store.exists("smoke/.sweep.lock")
    rows = load_trials(out, "smoke")
    assert len(rows) == 2 and rows["trial_id"].is_unique
    assert (rows["status"] == "completed").all()
    assert sorted(load_curves(out, "smoke").groupby("trial_id").size()) == [2, 2]
    keys = s3_keys(s3, f"{tmp_path.name}/results/smoke/")
    for trial_id in rows["trial_id"]:  # Train's checkpoints are in the bucket too
        assert any(f"/train/{trial_id}/checkpoint_" in k and k.endswith("state.pt") for k in keys)
    assert any(k.endswith("/experiment.json") for k in keys)
    assert any("/tune/" in k for k in keys)
    assert not [k for k in keys if k.endswith(".tmp")]  # no partial objects

    report = run_cli("report", out, "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert "| smoke | source_only | 1 completed | 1 |" in report.stdout
    status = run_cli("status", out)  # from the URI, as on a login node
    assert status.returncode == 0, status.stderr
    assert "smoke: finished\n  trials: 2 of 2 have a row (2 completed)\n" in status.stdout


@pytest.fixture(scope="module")
def multinode(s3):
    """A head (0 CPUs) and two 1-CPU worker nodes; the S3 variables reach every node."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.multinode"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    address = process.stdout.readline().strip()
    assert address, "the multi-node cluster did not start"
    yield address
    process.stdin.close()
    process.wait(timeout=120)


def test_sweep_on_two_nodes_places_a_trial_on_each(tmp_path, multinode):
    out = f"s3://{S3_BUCKET}/{tmp_path.name}/results"
    result = run_cli(*sweep_args(out, "sweep.seeds=[0]"), env={"RAY_ADDRESS": multinode})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = load_trials(out, "smoke")
    assert len(rows) == 2 and (rows["status"] == "completed").all()
    assert rows["node_id"].str.len().min() > 0
    assert rows["node_id"].nunique() == 2  # one trial per 1-CPU node, at the same time


def test_a_local_results_dir_on_two_nodes_is_refused_in_one_line(tmp_path, multinode):
    result = run_cli(*sweep_args(str(tmp_path / "local")), env={"RAY_ADDRESS": multinode})
    assert_one_line_error(result, "smoke.yaml: results.dir", "local folder", "s3://")
    assert not (tmp_path / "local").exists()


TRAINER = """
import json, sys
from gtaray.cluster import init_ray
from gtaray.config import load_experiment
from gtaray.storage import Store
from gtaray.trainer import fit_trial
from tests.faults import KillOnce

address, out, marker = sys.argv[1:]
init_ray(address)
exp = load_experiment("experiments/smoke.yaml", [
    f"results.dir={out}", "method.variant=source_only", "scaling.num_workers=2",
    "train.iterations=6", "train.eval_every=3", "train.max_failures=1",
])
storage = Store.at(out).uri("across/train")
result = fit_trial(exp, "across", storage, step_hook=KillOnce(1, 5, marker))
print(json.dumps({"iteration": result.metrics["iteration"], "checkpoint": result.checkpoint.path}))
"""


def test_two_workers_on_two_nodes_checkpoint_to_s3_and_restore_after_a_kill(tmp_path, multinode):
    # Two 1-CPU workers on a cluster whose head has no CPU: one worker on each node.
    out = f"s3://{S3_BUCKET}/{tmp_path.name}/results"
    marker = tmp_path / "rank1-killed"
    result = subprocess.run(
        [sys.executable, "-c", TRAINER, multinode, out, str(marker)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists()  # rank 1 was killed at iteration 5 ...
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["iteration"] == 6  # ... and the group restored from iteration 3 on S3
    assert metrics["checkpoint"].startswith(f"{S3_BUCKET}/{tmp_path.name}/results/across/train")


NODE_CHECKS = """
import os, sys, ray
from gtaray.cluster import check_cluster, init_ray, live_nodes
from gtaray.config import ConfigError, load_experiment

address, shared = sys.argv[1:]
init_ray(address)
smoke = "experiments/smoke.yaml"
# Every node got gtaray's settings and the S3 variables through the job's runtime_env.
@ray.remote(num_cpus=0)
def env():
    return os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"), os.environ.get("AWS_ENDPOINT_URL")
print("env", ray.get(env.remote()) == ("0.25", os.environ["AWS_ENDPOINT_URL"]))
print("nodes", len(live_nodes()))
check_cluster(load_experiment(smoke, [f"results.dir=file://{shared}"]))  # a mount all nodes see
print("shared ok")
real = load_experiment(smoke, [
    f"results.dir=file://{shared}", "data.source=gta5", "data.target=cityscapes",
    "data.root=/nonexistent-data", "data.source_train=null", "data.target_train=null",
])
try:
    check_cluster(real)
except ConfigError as e:
    print("refused", e)
"""


def test_every_worker_node_gets_the_settings_and_is_checked_for_data(tmp_path, multinode):
    result = subprocess.run(
        [sys.executable, "-c", NODE_CHECKS, multinode, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "env True" in out and "nodes 3" in out and "shared ok" in out
    (refusal,) = [line for line in out.splitlines() if line.startswith("refused")]
    assert "node 127.0.0.1" in refusal or "node " in refusal
    assert "/nonexistent-data/gta5" in refusal and "more node" in refusal  # both worker nodes
    assert not list(tmp_path.glob(".gtaray-shared-*"))  # the marker is cleaned up


def test_without_ray_address_gtaray_starts_its_own_ray_and_trials_still_release_cpus(
    tmp_path, ray_address
):
    """ray.init() would attach to the session's running cluster; gtaray starts a new one. That
    leaves a second Ray recorded on the machine, the case in which Train's placement-group
    cleaner once asked the wrong cluster whether a trial was alive: every trial's CPUs leaked
    and the third one-CPU trial on 2 CPUs never started."""
    import ray

    from gtaray.config import load_experiment
    from gtaray.sweep import run_sweep

    script = (
        "import ray; from gtaray.cluster import init_ray; init_ray(num_cpus=1); "
        "print(ray.get_runtime_context().gcs_address)"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] != ray_address

    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "sweep.variants=[source_only]",
            "sweep.seeds=[0, 1, 2]",
            "sweep.max_concurrent=1",
            "train.iterations=2",
            "train.eval_every=2",
        ],
    )
    outcome = run_sweep(exp, show_progress=False)
    assert outcome.statuses == {"completed": 3}
    deadline = time.time() + 30  # the last trial's cleaner runs a moment after it ends
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2
