"""Trackers: where a sweep's trials can be watched while they run, besides gtaray's terminal.

    tracking:
      tensorboard: true     # event files in <results.dir>/<name>/tensorboard/<trial_id>/

    tensorboard --logdir results/<name>/tensorboard

Each tracker is a Tune callback on the Tuner (Ray Train V2 refuses Tune's logger callbacks on
the TorchTrainer), fed the same results as the Parquet curves: every evaluation's metrics and
diagnostics, at its iteration. A tracker never fails a trial: its first error for a trial is
one line in the sweep's log, and it writes nothing more for that trial. On an object store the
event files are written in the temp folder and uploaded when the trial ends.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from gtaray.config import Experiment
from gtaray.metric_names import ALREADY_RECORDED
from gtaray.storage import Store

# Reported for bookkeeping, not as measurements (the step is the iteration itself).
NOT_SCALARS = {*AUTO_RESULT_KEYS, "iteration", "diverged", "workers", ALREADY_RECORDED}


def scalars(result: dict) -> dict[str, float]:
    """The numbers of a trial's result that are measurements, under their reported names
    (`target_miou`, `diag/g_l1`, `f/adv`: TensorBoard groups the names with a slash)."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in NOT_SCALARS and isinstance(v, int | float) and not isinstance(v, bool)
    }


def trackers(exp: Experiment, out: str) -> list[tune.Callback]:
    """The trackers an experiment's `tracking` section turns on. out: results.dir, absolute."""
    return [TensorBoardTracker(exp.name, out)] if exp.tracking.tensorboard else []


class TensorBoardTracker(tune.Callback):
    def __init__(self, experiment: str, out: str):
        self.experiment, self.out = experiment, out
        self._writers: dict = {}
        self._failed: set[str] = set()

    def __getstate__(self) -> dict:  # Tune pickles callbacks with its state: no open files
        return {"experiment": self.experiment, "out": self.out}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["experiment"], state["out"])

    def folder(self, trial_id: str) -> Path:
        """Where this process writes a trial's event files."""
        store = Store.at(self.out)
        key = f"{self.experiment}/tensorboard/{trial_id}"
        if store.is_local:
            return Path(store.path(key))
        return Path(tempfile.gettempdir()) / "gtaray-tensorboard" / key

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get(ALREADY_RECORDED) or "iteration" not in result:
            return
        self._safely(trial.trial_id, self._add, trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(trial.trial_id, self._close, trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely(trial.trial_id, self._close, trial.trial_id)

    def _add(self, trial_id: str, result: dict) -> None:
        # tensorboardX's own synchronous writer: its SummaryWriter queues events for a thread
        # and flushes on a timer, so a running trial's file would lag behind its curve.
        from tensorboardX.event_file_writer import EventsWriter, directory_check
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        if trial_id not in self._writers:
            folder = self.folder(trial_id)
            directory_check(str(folder))
            self._writers[trial_id] = EventsWriter(str(folder / "events"))
        writer, step = self._writers[trial_id], int(result["iteration"])
        for tag, value in scalars(result).items():
            writer.write_event(Event(wall_time=time.time(), step=step, summary=scalar(tag, value)))
        writer.flush()  # watched while it runs: every evaluation reaches the file

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is None:
            return
        writer.close()
        store = Store.at(self.out)
        if not store.is_local:
            folder = self.folder(trial_id)
            for file in sorted(folder.iterdir()):
                key = f"{self.experiment}/tensorboard/{trial_id}/{file.name}"
                store.write_atomic(key, file.read_bytes())

    def _safely(self, trial_id: str, action, *args) -> None:
        if trial_id in self._failed:
            return
        try:
            action(*args)
        except Exception as e:  # a tracker is never a reason for a trial to fail
            self._failed.add(trial_id)
            self._writers.pop(trial_id, None)
            message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            print(f"gtaray: tensorboard tracker, trial {trial_id}: {message}", file=sys.stderr)
