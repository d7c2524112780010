"""The services a command talks to, each asked once, with a deadline, before any work starts.

    check_store("s3://bucket/results")   # the endpoint answers, the bucket exists, keys work
    check_ray_address()                  # RAY_ADDRESS (when set) has a Ray cluster behind it
    check_cuda("--device cuda")          # this process can see a CUDA device

A storage endpoint that does not answer, or a RAY_ADDRESS with nothing behind it, made the
S3 client and Ray retry for minutes. Each question here runs in a daemon thread and gets
ANSWER_S seconds; a client still waiting after that is left behind (it holds nothing: no lock
is taken and nothing is written before these checks) and the command exits 2 in one line.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from gtaray.config import scheme
from gtaray.errors import ConfigError

ANSWER_S = 10.0
T = TypeVar("T")


class ServiceMissing(ConfigError):
    """A service the command needs is not there (exit 2, like other refused input)."""


class NoAnswer(ServiceMissing):
    """A client is still waiting in a thread: the process must exit without waiting for it
    (pyarrow's S3 shutdown would wait for the request, minutes)."""


def ask(what: str, call: Callable[[], T], seconds: float = ANSWER_S) -> T:
    """call()'s result, its exception, or ServiceMissing when it has not answered in time."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="gtaray-ask", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise NoAnswer(f"{what} did not answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# --- the results store -------------------------------------------------------------------


def endpoint(kind: str) -> str:
    """The object store's endpoint as the environment sets it (what the error names)."""
    if kind == "s3":
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return custom or "AWS S3"
    return os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"


# What the S3/GCS clients say, and what it means for the user.
_CAUSES = (
    (r"Could not connect|Connection refused|Couldn't connect|COULDNT_CONNECT", "cannot connect"),
    (r"resolve host|Could not resolve|Name or service not known", "cannot resolve its host"),
    (r"Timeout was reached|timed out|Operation too slow", "no answer (timed out)"),
    (
        r"InvalidAccessKeyId|SignatureDoesNotMatch|ACCESS_DENIED|AccessDenied|Forbidden|"
        r"response code 40[13]|credentials|Unauthorized|\b40[13]\b",
        "the credentials were refused or are missing ({credentials})",
    ),
    (r"NoSuchBucket|NOT_FOUND|does not exist", "the bucket does not exist"),
)


def _cause(error: Exception, kind: str) -> str:
    text = str(error)
    credentials = "AWS_* variables, ~/.aws" if kind == "s3" else "GOOGLE_APPLICATION_CREDENTIALS"
    for pattern, cause in _CAUSES:
        if re.search(pattern, text, re.IGNORECASE):
            return cause.format(credentials=credentials)
    return text.splitlines()[0] if text else type(error).__name__


def check_store(location: str, key: str | None = "results.dir") -> None:
    """An s3:// or gs:// location's endpoint answers and its bucket exists; local folders
    and file:// mounts are checked where they are used."""
    kind = scheme(location)
    if kind not in ("s3", "gs"):
        return
    bucket = location.split("://", 1)[1].strip("/").split("/", 1)[0]
    where = f"{key + ': ' if key else ''}{location}: {endpoint(kind)}"

    import pyarrow.fs as pafs

    from gtaray.storage import Store

    def bucket_info() -> pafs.FileInfo:
        store = Store.at(location)  # building an S3 client may already ask the network
        return store.fs.get_file_info(bucket)

    try:
        info = ask(where, bucket_info)
    except OSError as e:
        raise ServiceMissing(f"{where}: {_cause(e, kind)}") from None
    if info.type == pafs.FileType.NotFound:
        raise ServiceMissing(f"{where}: bucket {bucket!r} does not exist")


# --- the Ray cluster -----------------------------------------------------------------------


def check_ray_address(address: str | None = None) -> None:
    """When RAY_ADDRESS (or `address`) names a cluster, something answers there, and it is a
    Ray GCS (its gRPC service replies, or asks for the cluster's auth token)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "local":
        return
    what = f"RAY_ADDRESS={address}"
    hint = "unset RAY_ADDRESS to start a local Ray"
    from ray._private.services import canonicalize_bootstrap_address

    try:
        if address.startswith("ray://"):  # Ray Client: its server listens on a TCP port
            _connect(address[len("ray://") :])
            return
        gcs = canonicalize_bootstrap_address(address)  # "auto": the latest `ray start` here
        _connect(gcs)
        ask(what, lambda: _ping_gcs(gcs))
    except NoAnswer as e:
        raise NoAnswer(f"{e}: no Ray cluster answers there; {hint}") from None
    except Exception as e:  # ConnectionError, OSError, ValueError (a malformed address)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ServiceMissing(f"{what}: no Ray cluster: {first}; {hint}") from None


def _connect(host_port: str) -> None:
    """A TCP connection: a closed port answers at once (Ray's own client retries for long)."""
    host, port = host_port.rsplit(":", 1)
    socket.create_connection((host.strip("[]"), int(port)), timeout=ANSWER_S).close()


def _ping_gcs(gcs: str) -> None:
    import grpc
    from ray._private.gcs_utils import create_gcs_channel
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(create_gcs_channel(gcs))
    try:
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=ANSWER_S)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:  # a Ray with token auth: it is there
            return
        raise ConnectionError(f"{gcs} is not a Ray GCS ({e.code().name})") from None


# --- the device ----------------------------------------------------------------------------


def check_cuda(key: str) -> None:
    """This process sees a CUDA device (for the commands that use it here, not through Ray:
    Ray's GPU requests are checked against the nodes' resources)."""
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        raise ServiceMissing(f"{key}: this machine has no CUDA device that torch can use{hint}")
