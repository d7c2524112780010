"""Trackers' own rules, without a sweep (tests/test_sweep_smoke.py runs the TensorBoard
tracker in a real one): what counts as a scalar, pickling with Tune's state, and a tracker
error that is one line and never raised into Tune."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from gtaray.config import load_experiment
from gtaray.trackers import TensorBoardTracker, scalars, trackers
from tests.conftest import EXPERIMENTS


def test_scalars_are_the_measurements_only():
    result = {
        "target_miou": 0.3, "diag/g_l1": 0.1, "iteration": 6.0, "training_iteration": 2,
        "timestamp": 1700000000, "diverged": 0.0, "workers": 1.0, "device": "cpu", "done": False,
    }  # fmt: skip
    assert scalars(result) == {"target_miou": 0.3, "diag/g_l1": 0.1}


def test_only_the_named_trackers_are_attached(tmp_path):
    exp = load_experiment(EXPERIMENTS / "smoke.yaml")
    assert trackers(exp, str(tmp_path)) == []
    on = exp.with_updates({"tracking.tensorboard": True})
    assert [type(t) for t in trackers(on, str(tmp_path))] == [TensorBoardTracker]
    assert on.config_hash() == exp.config_hash()  # where it is watched is not what it is


def test_a_tracker_error_is_one_line_and_never_raised(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # the event folder cannot be made under a file
    tracker = pickle.loads(pickle.dumps(TensorBoardTracker("smoke", str(blocked))))
    trial = SimpleNamespace(trial_id="t1")
    for _ in range(2):  # reported once, then the trial is left alone
        tracker.on_trial_result(0, [], trial, {"iteration": 3.0, "target_miou": 0.2})
    tracker.on_trial_complete(0, [], trial)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gtaray: tensorboard tracker, trial t1: ")


def test_a_tracker_writes_while_the_trial_runs_and_pickles_without_its_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker("smoke", str(tmp_path))
    trial = SimpleNamespace(trial_id="t1")
    tracker.on_trial_result(0, [], trial, {"iteration": 3.0, "target_miou": 0.25})
    restored = pickle.loads(pickle.dumps(tracker))  # Tune saves its callbacks mid-run
    assert restored._writers == {}
    events = EventAccumulator(str(tmp_path / "smoke" / "tensorboard" / "t1"))
    events.Reload()  # flushed at each result: readable before the trial ends
    assert [(e.step, e.value) for e in events.Scalars("target_miou")] == [(3, 0.25)]
    tracker.on_trial_complete(0, [], trial)
