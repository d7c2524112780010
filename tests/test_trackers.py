"""Trackers' own rules, without a sweep (tests/test_sweep_smoke.py runs all three in a real
one): what counts as a scalar, pickling with Tune's state, a tracker error that is one line and
never raised into Tune, W&B's groups, MLflow's file store and a server that is down."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gtaray.config import ConfigError, load_experiment
from gtaray.trackers import MLflowTracker, TensorBoardTracker, WandBTracker, scalars, trackers
from tests.conftest import (
    EXPERIMENTS,
    ROOT,
    assert_one_line_error,
    no_ray_env,
    run_cli,
)
from tests.ports import free_port

SMOKE = load_experiment(EXPERIMENTS / "smoke.yaml")


def test_scalars_are_the_measurements_only():
    result = {
        "target_miou": 0.3, "diag/g_l1": 0.1, "iteration": 6.0, "training_iteration": 2,
        "timestamp": 1700000000, "diverged": 0.0, "workers": 1.0, "device": "cpu", "done": False,
    }  # fmt: skip
    assert scalars(result) == {"target_miou": 0.3, "diag/g_l1": 0.1}


def test_only_the_named_trackers_are_attached(tmp_path):
    exp = SMOKE
    assert trackers(exp, str(tmp_path)) == []
    on = exp.with_updates({"tracking.tensorboard": True})
    assert [type(t) for t in trackers(on, str(tmp_path))] == [TensorBoardTracker]
    all_three = on.with_updates(
        {"tracking.wandb": {"project": "p"}, "tracking.mlflow": {"tracking_uri": "file:///m"}}
    )
    kinds = [type(t) for t in trackers(all_three, str(tmp_path))]
    assert kinds == [TensorBoardTracker, WandBTracker, MLflowTracker]
    assert all_three.config_hash() == exp.config_hash()  # where it is watched is not what it is


def test_a_tracker_error_is_one_line_and_never_raised(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # the event folder cannot be made under a file
    tracker = pickle.loads(pickle.dumps(TensorBoardTracker(SMOKE, str(blocked))))
    trial = SimpleNamespace(trial_id="t1", config={})
    for _ in range(2):  # reported once, then the trial is left alone
        tracker.on_trial_result(0, [], trial, {"iteration": 3.0, "target_miou": 0.2})
    tracker.on_trial_complete(0, [], trial)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gtaray: tensorboard tracker, trial t1: ")


def test_a_tracker_writes_while_the_trial_runs_and_pickles_without_its_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(SMOKE, str(tmp_path))
    trial = SimpleNamespace(trial_id="t1", config={})
    tracker.on_trial_result(0, [], trial, {"iteration": 3.0, "target_miou": 0.25})
    restored = pickle.loads(pickle.dumps(tracker))  # Tune saves its callbacks mid-run
    assert restored._runs == {}
    events = EventAccumulator(str(tmp_path / "smoke" / "tensorboard" / "t1"))
    events.Reload()  # flushed at each result: readable before the trial ends
    assert [(e.step, e.value) for e in events.Scalars("target_miou")] == [(3, 0.25)]
    tracker.on_trial_complete(0, [], trial)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("tracking.mlflow={tracking_uri: 'databricks://x'}", "tracking.mlflow.tracking_uri"),
        ("tracking.wandb={mode: offline}", "tracking.wandb.project"),
        ("tracking.wandb={project: p, group_by: seed}", "tracking.wandb.group_by"),
    ],
)
def test_unsupported_tracker_settings_are_refused(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_experiment(EXPERIMENTS / "smoke.yaml", [override])


def test_a_tracker_without_its_package_is_one_line_before_ray_starts(tmp_path):
    ray_tmp, env = no_ray_env(tmp_path)
    hide = tmp_path / "hide"  # a sitecustomize that makes `mlflow` unimportable
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    env["PYTHONPATH"] = str(hide)
    result = run_cli(
        "sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", str(tmp_path / "out"),
        "-o", "tracking.mlflow={tracking_uri: 'file:///tmp/m'}", env=env,
    )  # fmt: skip
    assert_one_line_error(result, "tracking.mlflow", "pip install 'gtaray[mlflow]'")
    assert list(ray_tmp.iterdir()) == [] and not (tmp_path / "out").exists()


def trial(trial_id: str, seed: int, beta: float = 0.1) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"train.seed": seed, "method.beta": beta})


def feed(tracker, trials: list, failed: tuple = ()) -> None:
    """Two evaluations per trial, side by side as Tune reports them, then each trial's end."""
    for step in (3, 6):
        for t in trials:
            result = {"iteration": float(step), "target_miou": step / 10, "diag/g_l1": 0.5}
            tracker.on_trial_result(0, [], t, result)
    for t in trials:
        end = tracker.on_trial_error if t.trial_id in failed else tracker.on_trial_complete
        end(0, [], t)


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (LevelDB's log format: 32 KiB blocks
    of records with a 7-byte header, after W&B's 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or a fragmented one's last piece
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def finished_wandb_records(path: Path, timeout_s: float = 30.0) -> list:
    """A run file's records once W&B's service has written them all (its exit record): the
    service process writes behind `finish()`, seen here once in five runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            kinds = sorted({r.WhichOneof("record_type") for r in records})
            raise AssertionError(f"{path}: no exit record after {timeout_s} s, only {kinds}")
        time.sleep(0.2)


def test_wandb_offline_runs_group_the_seeds_of_one_configuration(tmp_path):
    exp = SMOKE.with_updates({"tracking.wandb": {"project": "lsd", "mode": "offline"}})
    tracker = pickle.loads(pickle.dumps(WandBTracker(exp, str(tmp_path))))
    feed(tracker, [trial("a0", 0), trial("a1", 1), trial("b0", 0, beta=10.0)], failed=("b0",))
    folders = sorted((tmp_path / "smoke" / "wandb").glob("offline-run-*"))
    assert len(folders) == 3
    runs, steps = {}, {}
    for folder in folders:
        records = finished_wandb_records(next(folder.glob("run-*.wandb")))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        runs[run.display_name] = run
        steps[run.display_name] = [  # the step is an item, or the record's own field
            {"_step": str(r.history.step.num)}
            | {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
    assert runs["a0"].run_group == runs["a1"].run_group != runs["b0"].run_group
    assert runs["a0"].run_group == f"smoke-{SMOKE.configuration_hash()}"
    assert [(h["_step"], h["target_miou"]) for h in steps["a1"]] == [("3", "0.3"), ("6", "0.6")]
    assert "diag/g_l1" in steps["b0"][0]


def test_mlflow_file_store_runs_have_the_settings_and_the_curve(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"file://{tmp_path}/mlruns"
    exp = SMOKE.with_updates({"tracking.mlflow": {"tracking_uri": uri, "experiment": "lsd"}})
    tracker = MLflowTracker(exp, str(tmp_path / "results"))
    feed(tracker, [trial("a0", 0), trial("b0", 0, beta=10.0)], failed=("b0",))
    # A resumed sweep (its callbacks unpickled) continues the trial's run, not a new one.
    again = pickle.loads(pickle.dumps(tracker))
    again.on_trial_result(0, [], trial("a0", 0), {"iteration": 9.0, "target_miou": 0.9})
    again.on_trial_complete(0, [], trial("a0", 0))
    client = MlflowClient(tracking_uri=uri)
    runs = {
        r.info.run_name: r
        for r in client.search_runs([client.get_experiment_by_name("lsd").experiment_id])
    }
    assert sorted(runs) == ["a0", "b0"]
    a0, b0 = runs["a0"], runs["b0"]
    assert a0.data.params["method.beta"] == "0.1" and b0.data.params["method.beta"] == "10.0"
    assert a0.data.params["data.source"] == "synthetic"
    history = client.get_metric_history(a0.info.run_id, "target_miou")
    assert [(m.step, m.value) for m in history] == [(3, 0.3), (6, 0.6), (9, 0.9)]
    assert (a0.info.status, b0.info.status) == ("FINISHED", "FAILED")
    assert a0.data.tags["gtaray.configuration"] != b0.data.tags["gtaray.configuration"]


def test_a_down_mlflow_server_costs_each_trial_one_line_and_no_wait(tmp_path, capsys):
    port = free_port()  # nothing listens on it
    exp = SMOKE.with_updates({"tracking.mlflow": {"tracking_uri": f"http://127.0.0.1:{port}"}})
    tracker = MLflowTracker(exp, str(tmp_path))
    start = time.monotonic()
    feed(tracker, [trial("a0", 0), trial("a1", 1)])
    assert time.monotonic() - start < 30  # no minutes of retries
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split(":")[1] for ln in lines] == [
        " mlflow tracker, trial a0",
        " mlflow tracker, trial a1",
    ]


# A tracker that holds Tune's loop at a trial's first evaluation, as W&B's init can for
# seconds; the trial's last report and its end then both wait for Tune.
SLOW_SWEEP = """
import sys, time
from ray import tune
import gtaray.sweep as sweep
from gtaray.config import load_experiment

class SlowAtFirstResult(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("iteration") == 3.0:
            time.sleep(15)

sweep.trackers = lambda exp, out: [SlowAtFirstResult()]
exp = load_experiment(sys.argv[1], [f"results.dir={sys.argv[2]}", "sweep.seeds=[0]",
                                    "sweep.variants=[source_only]"])
sweep.run_sweep(exp, show_progress=False)
"""


@pytest.mark.ray
def test_a_tracker_that_holds_tunes_loop_never_hangs_a_trial(tmp_path, ray_address):
    """Ray 2.60's Train-in-Tune hand-over loses its last report when the trial function ends
    before Tune took it, and the trial then never ends (sweep._wait_until_tune_took...)."""
    from gtaray.results import load_trials

    command = [sys.executable, "-c", SLOW_SWEEP, str(EXPERIMENTS / "smoke.yaml"), str(tmp_path)]
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    try:
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=240)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the trial never ended: Tune's loop was held at its first evaluation")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = load_trials(tmp_path, "smoke")
    assert rows["status"].tolist() == ["completed"] and rows["iterations_done"].tolist() == [6]
