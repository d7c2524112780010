"""Shared fixtures: one Ray per test session, and a way to run the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture(scope="session")
def ray_address():
    """Start Ray once (2 CPUs, small object store, dashboard on: Train's cleaner needs it)."""
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180")
    context = ray.init(
        num_cpus=2,
        object_store_memory=128 * 1024**2,
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield context.address_info["address"]
    ray.shutdown()


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`gtaray ARGS` in a fresh process (as from a shell), with extra environment variables."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gtaray", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )
