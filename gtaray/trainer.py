"""Ray's side of one trial: the Ray session, the TorchTrainer, and `gtaray train`.

    init_ray()                                    # join RAY_ADDRESS or start a quiet local Ray
    fit_trial(exp, name, storage)                 # one TorchTrainer run; same name = resume
    run_trial(exp)                                # `gtaray train`: named by the config's hash

The per-worker loop is in gtaray.train; the sweep around trials in gtaray.sweep.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from gtaray.config import ConfigError, Experiment
from gtaray.preflight import check_resources
from gtaray.train import StepHook, train_fn_per_worker


def lean_trainer_class() -> type[TorchTrainer]:
    """TorchTrainer without Ray Data's per-run DatasetManager actor.

    gtaray feeds its own data (TripletStream), yet Ray Train 2.60 starts a DatasetManager actor
    for every run, datasets or not: a process start (~2 s on 2 cores) on each trial's critical
    path. This drops that one default callback (a worker's shard provider is optional); with a
    Ray that lacks the private class it falls back to TorchTrainer.
    """
    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    except ImportError:
        return TorchTrainer

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            defaults = super()._create_default_callbacks()
            return [cb for cb in defaults if not isinstance(cb, DatasetsCallback)]

    return LeanTorchTrainer


def init_ray(**local: Any) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a quiet local Ray with every core
    (`local`: ray.init arguments for that local Ray, e.g. the tests' num_cpus=2)."""
    if ray.is_initialized():
        return
    # Set before Ray starts so that its processes inherit them.
    # Reports reach the driver at this poll interval (default 2 s).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180")
    if not os.environ.get("RAY_ADDRESS"):
        # One machine is not preempted; the watcher is one more actor process per trial.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # The dashboard stays on: Train's placement-group cleaner needs it to see a finished
    # trial's controller die and release its CPUs.
    ray.init(
        address=os.environ.get("RAY_ADDRESS"),
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=True,
        **local,
    )


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the Ray cluster this process is connected to."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def wait_for_resources(exp: Experiment) -> None:
    """Refuse a trial the cluster cannot place, after waiting up to scaling.wait_for_nodes_s
    for nodes to join (an autoscaling cluster grows on demand)."""
    deadline = time.monotonic() + exp.scaling.wait_for_nodes_s
    while True:
        try:
            check_resources(exp, cluster_nodes())
            return
        except ConfigError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(2.0)


def fit_trial(
    exp: Experiment,
    name: str,
    storage: str | Path,
    callbacks: list | None = None,
    progress: Any = None,
    step_hook: StepHook | None = None,
) -> ray.train.Result:
    """Run one experiment through a TorchTrainer; a run of the same name resumes its checkpoint.

    progress: a Ray queue for rank 0's live reports; step_hook: called on every rank before
    every step (tests inject faults with it).
    """
    trainer = lean_trainer_class()(
        train_fn_per_worker,
        train_loop_config={
            "experiment": exp.model_dump(mode="json"),
            "progress_queue": progress,
            "step_hook": step_hook,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=exp.scaling.num_workers,
            use_gpu=exp.scaling.use_gpu,
            resources_per_worker={"CPU": exp.scaling.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(Path(storage).resolve()),
            callbacks=callbacks or [],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=exp.train.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=exp.train.max_failures),
        ),
    )
    return trainer.fit()


def run_name(exp: Experiment) -> str:
    """`gtaray train`'s run name. The config's hash is part of it: Ray Train resumes a run of
    the same name, which must only ever be the same config."""
    return f"{exp.name}-{exp.method.variant}-s{exp.train.seed}-{exp.config_hash()}"


def train_storage(exp: Experiment) -> Path:
    return Path(exp.results.dir).resolve() / exp.name / "train"


def run_trial(exp: Experiment, name: str | None = None, show_progress: bool = False) -> dict:
    """One trial without Tune (what `gtaray train` runs); returns the last reported metrics,
    a diverged run's included (they are reported without a checkpoint)."""
    from ray.util.queue import Queue
    from rich.console import Console

    from gtaray.progress import TrialProgress, follow_trial, output_to_log

    name = name or run_name(exp)
    storage = train_storage(exp)
    with contextlib.ExitStack() as stack:
        view = None
        if show_progress:  # Ray's and Train's own output go to a log; our bar to the terminal
            terminal = stack.enter_context(output_to_log(storage / f"{name}.log"))
            view = stack.enter_context(TrialProgress(exp.train.iterations, Console(file=terminal)))
        init_ray()
        wait_for_resources(exp)
        queue = Queue()
        fit = lambda: fit_trial(exp, name, storage, progress=queue)  # noqa: E731
        result, last = follow_trial(fit, queue, view)
    metrics = dict(last or result.metrics or {})
    metrics["checkpoint_path"] = result.checkpoint.path if result.checkpoint else ""
    return metrics
