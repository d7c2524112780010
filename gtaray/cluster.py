"""The Ray session and the cluster's checks, before any trial starts.

    init_ray()            # join RAY_ADDRESS (or --address), else start a local Ray
    check_cluster(exp)    # resources, shared storage, data and weights on every worker node

gtaray's Ray settings reach every process of every node through the job's runtime_env, not
through this process's environment (which only processes started here would inherit).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import Any

import ray

from gtaray.config import ConfigError, Experiment
from gtaray.preflight import check_resources, placeable_workers
from gtaray.stopping import stop_on_sigterm
from gtaray.storage import Store

# Reports reach the trial's driver at this poll interval (Ray's default: 2 s).
SETTINGS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180",
}
# Where S3/GCS clients find credentials and endpoints: passed on to every node when set here.
CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def init_ray(address: str | None = None, **local: Any) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS) when one is named; otherwise start a
    local Ray with every core (`local`: ray.init arguments for it, e.g. the tests' num_cpus=2).
    Never attaches to a cluster that was not asked for."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {k: os.environ.get(k, v) for k, v in SETTINGS.items()}
    env_vars |= {k: os.environ[k] for k in CREDENTIALS if k in os.environ}
    start: dict[str, str] = {}
    if address is None:
        # One machine is not preempted; the watcher is one more actor process per trial.
        env_vars["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
        # Ray's State API finds "the" cluster from RAY_ADDRESS, else the latest one started on
        # the machine. With two Rays on one machine Train's placement-group cleaner asked the
        # wrong one, took each live trial for dead and leaked its CPUs: later trials hung. So
        # the GCS port is chosen here and every process of this Ray is told the address.
        port = _free_port()
        env_vars["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
        start = {"RAY_GCS_SERVER_PORT": str(port), "RAY_ADDRESS": env_vars["RAY_ADDRESS"]}
    elif address != "auto":
        env_vars["RAY_ADDRESS"] = address
    os.environ.update({k: v for k, v in env_vars.items() if k != "RAY_ADDRESS"})
    # The dashboard stays on: Train's placement-group cleaner needs it to see a finished
    # trial's controller die and release its CPUs.
    with _environment(start):  # inherited by the processes a local start spawns
        ray.init(
            address=address or "local",
            runtime_env={"env_vars": env_vars},
            log_to_driver=False,
            logging_level="WARNING",
            configure_logging=True,
            **(local if address is None else {}),
        )
    stop_on_sigterm()  # ray.init's own handler exits mid-sweep (gtaray.stopping)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def live_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the Ray cluster this process is connected to."""
    return [dict(n["Resources"]) for n in live_nodes()]


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


def worker_nodes(exp: Experiment) -> list[dict]:
    """The live nodes that can hold at least one of a trial's workers."""
    return [n for n in live_nodes() if placeable_workers(exp, [n["Resources"]]) > 0]


@ray.remote(num_cpus=0)
def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _missing_on_nodes(nodes: list[dict], paths: list[str]) -> dict[str, list[str]]:
    """{node address: the paths it cannot see}, found by a tiny task pinned to each node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    refs = {
        f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})": _missing.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(paths)
        for n in nodes
    }
    found = {name: ray.get(ref, timeout=120) for name, ref in refs.items()}
    return {name: missing for name, missing in found.items() if missing}


def check_cluster(exp: Experiment) -> None:
    """What would fail or hang on a cluster, refused before any trial starts: resources it
    cannot place, results in a folder the nodes do not share, and data or weights a worker
    node does not have."""
    wait_for_resources(exp)
    count = len(live_nodes())
    if count == 1:  # the node the driver runs on: the local preflight has checked it
        return
    store = Store.at(exp.results.dir)
    if store.kind is None:
        raise ConfigError(
            f"results.dir: {store.root} is a local folder, but this Ray cluster has "
            f"{count} nodes that must all write to it; use s3://bucket/prefix, "
            "gs://bucket/prefix, or file:///path for a folder every node mounts (NFS)"
        )
    paths = []
    if exp.data.root is not None:
        paths += [os.path.join(exp.data.root, name) for name in _real_datasets(exp)]
    if exp.model.pretrained:
        from gtaray.models.pretrained import resolve_source

        paths.append(str(resolve_source(exp.model.pretrained)))
    marker = None
    if store.kind == "file":  # a mount must really be shared
        marker = f".gtaray-shared-{uuid.uuid4().hex}"
        store.write_atomic(marker, b"")
        paths.append(store.path(marker))
    try:
        missing = _missing_on_nodes(worker_nodes(exp), paths) if paths else {}
    finally:
        if marker:
            store.fs.delete_file(store.path(marker))
    if missing:
        node, what = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more node(s))" if len(missing) > 1 else ""
        shown = "results.dir (not shared)" if marker and store.path(marker) in what else what[0]
        raise ConfigError(f"node {node}: cannot see {shown}{more}")


def _real_datasets(exp: Experiment) -> list[str]:
    return [d for d in (exp.data.source, exp.data.target) if d != "synthetic"]
