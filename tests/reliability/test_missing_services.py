"""Services that are not there, as cluster users meet them: a storage endpoint that refuses or
never answers, a bucket that does not exist, refused credentials, a RAY_ADDRESS with nothing
(or something silent) behind it, a CUDA device the machine lacks. Each is one line naming the
service, exit status 2, in seconds, with no Ray started and nothing written.

The cases run as concurrent `gtaray` processes (two of them wait out the 10 s deadline)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, ROOT, S3_BUCKET, assert_one_line_error
from tests.ports import free_port
from tests.reliability.tally import count

SMOKE = str(EXPERIMENTS / "smoke.yaml")
BOUND_S = 60.0  # far above the 10 s deadline: only a hang (minutes before) reaches it


def _closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


@pytest.fixture(scope="module")
def silent_port():
    """A port that completes TCP handshakes (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def strict_s3():
    """A second moto S3 that checks credentials (IAM auth from its first request on)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline and server.poll() is None
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=30)


def _cases(tmp: Path, s3_endpoint: str, strict: str, silent: int) -> dict[str, tuple]:
    """name: (gtaray args, extra environment, fragments of the one line)."""
    closed = _closed_port()
    local = str(tmp / "results")
    sweep_s3 = ["sweep", SMOKE, "--out"]
    cases = {
        "s3 endpoint refuses": (
            [*sweep_s3, "s3://b/x"],
            {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"},
            ("results.dir: s3://b/x", f"127.0.0.1:{closed}", "cannot connect"),
        ),
        "s3 endpoint silent": (
            [*sweep_s3, "s3://b/x"],
            {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent}"},
            ("results.dir: s3://b/x", f"127.0.0.1:{silent}", "did not answer within 10 s"),
        ),
        "s3 bucket missing": (
            [*sweep_s3, "s3://no-such-bucket/x"],
            {"AWS_ENDPOINT_URL": s3_endpoint},
            ("s3://no-such-bucket/x", "bucket 'no-such-bucket' does not exist"),
        ),
        "s3 credentials refused": (
            ["report", f"s3://{S3_BUCKET}/x"],
            {"AWS_ENDPOINT_URL": strict},
            (f"s3://{S3_BUCKET}/x", "credentials were refused"),
        ),
        "gcs endpoint refuses": (
            ["report", "gs://b/x"],
            {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{closed}"},
            ("gs://b/x", f"127.0.0.1:{closed}"),
        ),
        "ray address refuses": (
            [*sweep_s3, local],
            {"RAY_ADDRESS": f"127.0.0.1:{closed}"},
            (f"RAY_ADDRESS=127.0.0.1:{closed}", "no Ray cluster", "unset RAY_ADDRESS"),
        ),
        "ray address silent": (
            ["train", SMOKE, "-o", f"results.dir={local}"],
            {"RAY_ADDRESS": f"127.0.0.1:{silent}"},
            (f"RAY_ADDRESS=127.0.0.1:{silent}", "did not answer within 10 s"),
        ),
        "ray client refuses": (
            [*sweep_s3, local],
            {"RAY_ADDRESS": f"ray://127.0.0.1:{closed}"},
            ("RAY_ADDRESS=ray://", "no Ray cluster"),
        ),
    }
    import torch

    if not torch.cuda.is_available():
        cases["no cuda device"] = (
            ["bench", "--quick", "--device", "cuda", "--only", "step"],
            {},
            ("--device cuda", "no CUDA device"),
        )
    return cases


@pytest.fixture(scope="module")
def answered(tmp_path_factory, s3, strict_s3, silent_port):
    """Every case started at once; name: (completed process, seconds it took, fragments)."""
    tmp = tmp_path_factory.mktemp("services")
    ray_tmp = tmp / "raytmp"
    ray_tmp.mkdir()
    s3_endpoint = os.environ["AWS_ENDPOINT_URL"]
    running = {}
    for name, (args, env, fragments) in _cases(tmp, s3_endpoint, strict_s3, silent_port).items():
        full_env = {**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp), **env}
        process = subprocess.Popen(
            [sys.executable, "-m", "gtaray", *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running[name] = (process, time.monotonic(), fragments)
    done = {}
    for name, (process, started, fragments) in running.items():
        out, err = process.communicate(timeout=300)
        seconds = time.monotonic() - started
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        done[name] = (result, seconds, fragments)
    yield done, tmp, ray_tmp


@pytest.mark.parametrize(
    "name",
    [
        "s3 endpoint refuses",
        "s3 endpoint silent",
        "s3 bucket missing",
        "s3 credentials refused",
        "gcs endpoint refuses",
        "ray address refuses",
        "ray address silent",
        "ray client refuses",
        "no cuda device",
    ],
)
def test_a_missing_service_is_one_line_in_seconds(answered, name):
    done, tmp, ray_tmp = answered
    if name not in done:
        pytest.skip("this machine has a CUDA device")
    result, seconds, fragments = done[name]
    assert_one_line_error(result, *fragments)
    assert seconds < BOUND_S, (name, seconds)
    assert not (tmp / "results").exists()  # nothing written
    assert not any(ray_tmp.iterdir())  # no Ray session started
    count("missing services", seconds=seconds)
