"""Trackers: where a sweep's trials can be watched while they run, besides gtaray's terminal.

    tracking:
      tensorboard: true     # event files in <results.dir>/<name>/tensorboard/<trial_id>/
      wandb: {project: lsd, mode: offline}       # one run per trial, grouped by configuration
      mlflow: {tracking_uri: http://127.0.0.1:5000}   # or file:///path; one run per trial

    tensorboard --logdir results/<name>/tensorboard

Each tracker is a Tune callback on the Tuner (Ray Train V2 refuses Tune's logger callbacks on
the TorchTrainer), fed the same results as the Parquet curves: every evaluation's metrics and
diagnostics, at its iteration. They all run in the sweep's own process, so each writes exactly
where its YAML says (Tune's MLflow callback loses `tracking_uri` inside trials, ray#36257). A
tracker never fails a trial: its first error for a trial is one line in the sweep's log, and
it writes nothing more for that trial.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from gtaray.config import Experiment
from gtaray.metric_names import ALREADY_RECORDED
from gtaray.results import config_columns
from gtaray.seed_groups import trial_updates
from gtaray.storage import Store, on_this_machine

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
    t = exp.tracking
    chosen = [
        TensorBoardTracker(exp, out) if t.tensorboard else None,
        WandBTracker(exp, out) if t.wandb else None,
        MLflowTracker(exp, out) if t.mlflow else None,
    ]
    return [c for c in chosen if c is not None]


class Tracker(tune.Callback):
    """One run per trial: started at its first result, a point per result, ended with it."""

    name = ""

    def __init__(self, exp: Experiment, out: str):
        self.exp, self.out = exp, out
        self._runs: dict = {}  # trial id: this tracker's open run
        self._failed: set[str] = set()

    def __getstate__(self) -> dict:  # Tune pickles callbacks with its state: no open runs
        return {"exp": self.exp, "out": self.out}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["exp"], state["out"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get(ALREADY_RECORDED) or "iteration" not in result:
            return
        self._safely(trial.trial_id, self._add, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(trial.trial_id, self._end, trial.trial_id, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely(trial.trial_id, self._end, trial.trial_id, True)

    def _add(self, trial, result: dict) -> None:
        if trial.trial_id not in self._runs:
            trial_exp = self.exp.with_updates(trial_updates(trial.config))
            self._runs[trial.trial_id] = self.start(trial.trial_id, trial_exp)
        self.log(self._runs[trial.trial_id], int(result["iteration"]), scalars(result))

    def _end(self, trial_id: str, failed: bool) -> None:
        run = self._runs.pop(trial_id, None)
        if run is not None:
            self.end(trial_id, run, failed)

    def start(self, trial_id: str, exp: Experiment):
        """Open a trial's run (or continue it, after a resume); return its handle."""
        raise NotImplementedError

    def log(self, run, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def end(self, trial_id: str, run, failed: bool) -> None:
        raise NotImplementedError

    def _safely(self, trial_id: str, action, *args) -> None:
        if trial_id in self._failed:
            return
        try:
            action(*args)
        except Exception as e:  # a tracker is never a reason for a trial to fail
            self._failed.add(trial_id)
            self._runs.pop(trial_id, None)
            message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            print(f"gtaray: {self.name} tracker, trial {trial_id}: {message}", file=sys.stderr)


class TensorBoardTracker(Tracker):
    """Event files, one folder per trial; on an object store uploaded when the trial ends."""

    name = "tensorboard"

    def key(self, trial_id: str) -> str:
        """A trial's event folder in the results."""
        return f"{self.exp.name}/tensorboard/{trial_id}"

    def folder(self, trial_id: str) -> Path:
        """Where this process writes it: there, or in the temp folder until the trial ends."""
        return on_this_machine(Store.at(self.out), self.key(trial_id), "gtaray-tensorboard")

    def start(self, trial_id: str, exp: Experiment):
        # tensorboardX's own synchronous writer: its SummaryWriter queues events for a thread
        # and flushes on a timer, so a running trial's file would lag behind its curve.
        from tensorboardX.event_file_writer import EventsWriter, directory_check

        folder = self.folder(trial_id)
        directory_check(str(folder))
        return EventsWriter(str(folder / "events"))

    def log(self, run, step: int, values: dict[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for tag, value in values.items():
            run.write_event(Event(wall_time=time.time(), step=step, summary=scalar(tag, value)))
        run.flush()  # watched while it runs: every evaluation reaches the file

    def end(self, trial_id: str, run, failed: bool) -> None:
        run.close()
        store = Store.at(self.out)
        if not store.is_local:
            for file in sorted(self.folder(trial_id).iterdir()):
                store.write_atomic(f"{self.key(trial_id)}/{file.name}", file.read_bytes())


def _run_id(experiment: str, trial_id: str) -> str:
    """A run id W&B accepts, the same for a trial across a resume."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{experiment}-{trial_id}")[:64]


class WandBTracker(Tracker):
    """A W&B run per trial in the experiment's project; the seeds of one configuration share
    a group. Offline runs are folders under <name>/wandb/ (`wandb sync` them later)."""

    name = "wandb"

    def start(self, trial_id: str, exp: Experiment):
        import wandb

        settings = self.exp.tracking.wandb
        # W&B adds wandb/ to it; from an object store's sweep, `wandb sync` the temp folder.
        folder = on_this_machine(Store.at(self.out), self.exp.name, "gtaray-wandb")
        folder.mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=settings.project,
            mode=settings.mode,
            group=f"{exp.name}-{exp.configuration_hash()}",
            job_type=exp.method.variant,
            name=trial_id,
            id=_run_id(exp.name, trial_id),
            resume="allow",  # a resumed sweep continues the trial's run
            dir=str(folder),
            config=exp.model_dump(mode="json", exclude={"results", "tracking"}),
            reinit="create_new",  # trials run side by side: one open run each
            # Online without a network: give up in 30 s (the sweep's loop waits for it).
            settings=wandb.Settings(console="off", silent=True, init_timeout=30),
        )

    def log(self, run, step: int, values: dict[str, float]) -> None:
        run.log(values, step=step)

    def end(self, trial_id: str, run, failed: bool) -> None:
        run.finish(exit_code=1 if failed else 0)


class MLflowTracker(Tracker):
    """An MLflow run per trial, through a client bound to `tracking_uri` (no global state):
    the settings as parameters, the curve as metrics, the configuration as a tag."""

    name = "mlflow"

    def __init__(self, exp: Experiment, out: str):
        super().__init__(exp, out)
        # A server that is down answers each request at once instead of after minutes of
        # retries: the sweep's loop waits for its callbacks.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # MLflow 3 refuses its file store unless asked for it (it is in maintenance mode).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.exp.tracking.mlflow.tracking_uri)

    def start(self, trial_id: str, exp: Experiment):
        from mlflow.entities import Param

        client = self._client()
        name = self.exp.tracking.mlflow.experiment or self.exp.name
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        run_key = _run_id(exp.name, trial_id)
        tag = f"tags.`gtaray.run` = '{run_key}'"
        earlier = client.search_runs([experiment_id], filter_string=tag, max_results=1)
        if earlier:  # a resumed sweep continues the trial's run
            return client, earlier[0].info.run_id
        run = client.create_run(
            experiment_id,
            run_name=trial_id,
            tags={
                "gtaray.run": run_key,
                "gtaray.experiment": exp.name,
                "gtaray.configuration": exp.configuration_hash(),
                "gtaray.variant": exp.method.variant,
            },
        )
        params = [Param(k, str(v)) for k, v in config_columns(exp).items()]
        client.log_batch(run.info.run_id, params=params)
        return client, run.info.run_id

    def log(self, run, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        client, run_id = run
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def end(self, trial_id: str, run, failed: bool) -> None:
        client, run_id = run
        client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
