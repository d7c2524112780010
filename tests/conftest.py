"""Shared fixtures: one Ray per test session, and a way to run the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_server import local_s3

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


S3_BUCKET = "gtaray-tests"


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on 127.0.0.1 (moto's server) with one bucket, for the whole session.
    The standard AWS variables point every S3 client here, Ray's processes included (they are
    set before Ray starts, and init_ray passes them on)."""
    with local_s3(S3_BUCKET) as client:
        yield client


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    """A results location of each kind: a local folder, and a folder in the session's S3."""
    if request.param == "local":
        return str(tmp_path / "results")
    request.getfixturevalue("s3")
    return f"s3://{S3_BUCKET}/{tmp_path.name}/results"


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
