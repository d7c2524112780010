"""Shared fixtures: one Ray per test session, and a way to run the CLI as a user does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


S3_BUCKET = "gtaray-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on 127.0.0.1 (moto's server) with one bucket, for the whole session.
    The standard AWS variables point every S3 client here, Ray's processes included (they are
    set before Ray starts, and init_ray passes them on)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.time() + 60
    while True:
        try:
            client.create_bucket(Bucket=S3_BUCKET)
            break
        except Exception:
            if time.time() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)
    yield client
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_address(s3):
    """Start Ray once, the way the product does (`init_ray`), with 2 CPUs and a small object
    store; the dashboard stays on (Train's placement-group cleaner needs it)."""
    import ray

    from gtaray.cluster import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2, object_store_memory=128 * 1024**2)
    yield ray.get_runtime_context().gcs_address
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


def no_ray_env(tmp_path: Path) -> tuple[Path, dict]:
    """Point Ray's temp dir somewhere empty, so a Ray start would leave a session folder."""
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    return ray_tmp, {"RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": ""}


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2 and one line on stderr that contains every fragment."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pytest_terminal_summary(terminalreporter):
    """The reliability suite's counts (bad configs, bad data files, faults, rows lost)."""
    from tests.reliability.tally import line, measured_line

    for text in (line(), measured_line()):
        if text:
            terminalreporter.write_line(text)
