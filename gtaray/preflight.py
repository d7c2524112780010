"""Checks that run before Ray starts (or, for the cluster's resources, before any trial does):
bad input is one line naming the file and key or path, and nothing is written yet.

    check_start(exp, resume)        # an existing experiment folder: refuse, or may it resume?
    check_inputs(exp)               # the datasets and pretrained weights the trials will read
    check_resources(exp, nodes)     # can the cluster place one trial's workers at all?
    check_local_resources(exp)      # the same for this machine, when no RAY_ADDRESS is set
    check_trackers(exp)             # each tracker turned on has its package installed

Only `check_inputs` imports torch (to open the data); none of them imports Ray.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

from gtaray.config import ConfigError, Experiment
from gtaray.storage import Store

RESULT_FOLDERS = ("trials", "curves", "train", "tune")  # inside an experiment folder


# The package each tracker needs, and the extra that installs it.
TRACKER_PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(exp: Experiment) -> None:
    for name, package in TRACKER_PACKAGES.items():
        if getattr(exp.tracking, name) and not _installed(package):
            raise ConfigError(
                f"tracking.{name}: needs the {package} package, which is not installed "
                f"(pip install 'gtaray[{name}]')"
            )


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken install, or one blocked in sys.modules
        return False


def experiment_dir(exp: Experiment) -> str:
    """The experiment's folder: a local path or a URI."""
    return Store.at(exp.results.dir).uri(exp.name)


def _check_writable(results_dir: Path) -> None:
    """A local results.dir must be a folder this process can create files in."""
    path = results_dir.resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results.dir: {path} is a file, not a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"results.dir: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"results.dir: {existing} is not writable")


def check_start(exp: Experiment, resume: bool) -> bool:
    """Refuse to overwrite, and on resume refuse a changed config; True if the experiment
    folder holds a run to continue."""
    store = Store.at(exp.results.dir)
    if store.is_local:
        _check_writable(Path(store.root))
    folder = store.uri(exp.name)
    if not resume:
        if store.exists(exp.name) and not _holds_only_the_lock(store, exp.name):
            raise ConfigError(
                f"{folder}: experiment already exists; pass --resume to continue it, "
                "or choose another --out / name"
            )
        return False
    for key in (exp.name, *(f"{exp.name}/{sub}" for sub in RESULT_FOLDERS)):
        if store.is_file(key):
            raise ConfigError(f"{store.uri(key)}: is a file where gtaray keeps a folder")
    from gtaray.results import SNAPSHOT, read_snapshot  # the tables load only past here

    snapshot = read_snapshot(exp.results.dir, exp.name)
    if snapshot is None:
        return False
    if snapshot["config_hash"] != exp.config_hash():
        raise ConfigError(
            f"{store.uri(exp.name + '/' + SNAPSHOT)}: config changed since this experiment started "
            f"(hash {snapshot['config_hash']} -> {exp.config_hash()}); use a new name"
        )
    return True


def _holds_only_the_lock(store: Store, name: str) -> bool:
    """The experiment folder holds the sweep lock and nothing else: the lock this very sweep
    took (gtaray.lock) before run_sweep checks again, not a run to overwrite."""
    from gtaray.lock import LOCK

    return store.exists(f"{name}/{LOCK}") and not (store.names(name) or store.folders(name))


def check_inputs(exp: Experiment) -> None:
    """Open every split (reading its data.split_lists, every listed image and label checked)
    and read its first sample, and find the pretrained weights, so that missing or broken input
    fails in one line before Ray starts, not as one failed row per trial. (`gtaray data check`
    decodes every file.)"""
    from dataclasses import astuple

    from gtaray.data.splits import make_splits
    from gtaray.models.pretrained import PretrainedWeightsError, find_weights

    for split in astuple(make_splits(exp), tuple_factory=list):
        split[0]
    if exp.model.pretrained:
        try:
            find_weights(exp.model.pretrained)
        except PretrainedWeightsError as e:
            raise PretrainedWeightsError(f"model.pretrained: {e}") from None


def local_nodes() -> list[dict[str, float]]:
    """This machine as a one-node cluster: its CPUs and its NVIDIA GPUs (no torch import)."""
    gpus = len(list(Path("/dev").glob("nvidia[0-9]*")))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = min(gpus, len([d for d in visible.split(",") if d.strip()]))
    return [{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}]


def placeable_workers(exp: Experiment, nodes: list[dict[str, float]]) -> int:
    """How many of one trial's workers the nodes can hold at once (bundles are identical)."""
    s = exp.scaling
    total = 0
    for node in nodes:
        fit = math.floor(node.get("CPU", 0.0) / s.cpus_per_worker + 1e-9)
        if s.use_gpu:
            fit = min(fit, math.floor(node.get("GPU", 0.0) / s.gpu_share + 1e-9))
        total += fit
    return total


def check_local_resources(exp: Experiment) -> None:
    """Without RAY_ADDRESS the trials run on this machine: refuse what it cannot hold before
    Ray starts (the cluster's own resources are checked again once Ray is up)."""
    if not os.environ.get("RAY_ADDRESS"):
        check_resources(exp, local_nodes(), where="this machine")


def check_resources(
    exp: Experiment, nodes: list[dict[str, float]], where: str = "the Ray cluster"
) -> None:
    """Refuse a trial the nodes can never place (Ray would wait for it forever)."""
    s = exp.scaling
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = sum(n.get("GPU", 0.0) for n in nodes)
    have = f"{where} has {cpus:g} CPUs and {gpus:g} GPUs"
    if len(nodes) > 1:
        have += f" on {len(nodes)} nodes"
    if s.use_gpu and gpus == 0:
        raise ConfigError(f"scaling.use_gpu: true, but {have}")
    placeable = placeable_workers(exp, nodes)
    if placeable < s.num_workers:
        per_worker = f"{s.cpus_per_worker:g} CPU" + (f" + {s.gpu_share:g} GPU" if s.use_gpu else "")
        key = "scaling.num_workers" if placeable else "scaling.cpus_per_worker"
        raise ConfigError(
            f"{key}: a trial needs {s.num_workers} worker(s) x {per_worker}; {have}, "
            f"room for {placeable}"
        )
