"""Ray's side of one trial: the TorchTrainer, and `gtaray train`.

    fit_trial(exp, name, storage)                 # one TorchTrainer run; same name = resume
    run_trial(exp)                                # `gtaray train`: named by the config's hash

The per-worker loop is in gtaray.train; the Ray session in gtaray.cluster; the sweep around
trials in gtaray.sweep.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from gtaray.cluster import check_cluster, init_ray
from gtaray.config import Experiment, scheme
from gtaray.storage import Store, local_log
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
    # Absolute: workers run in folders of their own (and write the trial's sample picture).
    exp = exp.with_updates({"results.dir": Store.at(exp.results.dir).uri()})
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
            resources_per_worker=worker_resources(exp),
        ),
        torch_config=TorchConfig(backend=exp.scaling.dist_backend),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage if scheme(storage) else str(Path(storage).resolve()),
            callbacks=callbacks or [],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=exp.train.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=exp.train.max_failures),
        ),
    )
    return trainer.fit()


def worker_resources(exp: Experiment) -> dict[str, float]:
    """What Ray reserves for each worker: its CPUs, and its share of a GPU with use_gpu."""
    resources = {"CPU": exp.scaling.cpus_per_worker}
    if exp.scaling.use_gpu:
        resources["GPU"] = exp.scaling.gpu_share
    return resources


def run_name(exp: Experiment) -> str:
    """`gtaray train`'s run name. The config's hash is part of it: Ray Train resumes a run of
    the same name, which must only ever be the same config."""
    return f"{exp.name}-{exp.method.variant}-s{exp.train.seed}-{exp.config_hash()}"


def train_storage(exp: Experiment) -> str:
    """Where `gtaray train` keeps its runs: a local path or a URI."""
    return Store.at(exp.results.dir).uri(f"{exp.name}/train")


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
            log = local_log(Store.at(exp.results.dir), f"{exp.name}/train/{name}.log")
            terminal = stack.enter_context(output_to_log(log))
            view = stack.enter_context(TrialProgress(exp.train.iterations, Console(file=terminal)))
        init_ray()
        check_cluster(exp)
        queue = Queue()
        fit = lambda: fit_trial(exp, name, storage, progress=queue)  # noqa: E731
        result, last = follow_trial(fit, queue, view)
    metrics = dict(last or result.metrics or {})
    metrics["checkpoint_path"] = result.checkpoint.path if result.checkpoint else ""
    return metrics
