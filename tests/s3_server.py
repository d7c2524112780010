"""A real S3 API on this machine: moto's server on a free 127.0.0.1 port, with one bucket.

    with local_s3("bucket") as client:   # AWS_* now point every S3 client (pyarrow, boto3) here
        ...

Used by the test session (one server for all tests) and by benchmarks/report_scale.py --moto.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from tests.ports import free_port


@contextlib.contextmanager
def local_s3(bucket: str) -> Iterator:
    """The server, started with `bucket` made, its boto3 client yielded; stopped at the end.
    The standard AWS variables are set in this process, so processes it starts (Ray's
    included) reach the same server."""
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
    try:
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield client
    finally:
        server.terminate()
        server.wait(timeout=30)
