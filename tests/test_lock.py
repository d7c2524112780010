"""One sweep per experiment at a time: the lock refuses a second sweep naming the first, on a
local folder, a file:// mount and S3 (moto's real S3 API), and a lock left by a dead process
is taken over, with one line, instead of blocking --resume forever."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from gtaray.lock import LOCK, LockHeld, SweepLock
from gtaray.storage import Store
from tests.conftest import S3_BUCKET


@pytest.fixture(params=["local", "file", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store.at(tmp_path / "results")
    if request.param == "file":
        return Store.at(f"file://{tmp_path}/results")
    request.getfixturevalue("s3")
    return Store.at(f"s3://{S3_BUCKET}/lock-{time.time_ns()}")


def plant(store: Store, **holder) -> None:
    """A lock written by some other process (as it would have written it)."""
    body = {"host": "elsewhere", "pid": 1, "started": "2026-12-01T00:00:00+00:00"}
    body |= {"lease_until": time.time() + 600, "token": "theirs"} | holder
    store.write_atomic(f"exp/{LOCK}", json.dumps(body).encode())


def test_a_held_lock_refuses_a_second_sweep_naming_the_holder(store):
    first, second = SweepLock(store, "exp"), SweepLock(store, "exp")
    with first.held():
        with pytest.raises(LockHeld) as info:
            second.refuse_if_held()
        message = str(info.value)
        assert f"host {socket.gethostname()}" in message and f"pid {first.pid}" in message
        assert f"since {first.started}" in message and "\n" not in message
        with pytest.raises(LockHeld):  # the atomic create refuses too, not only the check
            second.acquire()
    assert first.holder() is None  # released
    with second.held():
        assert second.holder()["token"] == second.token


def test_a_live_holder_elsewhere_blocks_until_its_lease_expires(store, capsys):
    plant(store)
    with pytest.raises(LockHeld, match="host elsewhere, pid 1"):
        SweepLock(store, "exp").acquire()
    plant(store, lease_until=time.time() - 1)  # a lost node: nobody renewed the lease
    taker = SweepLock(store, "exp")
    with taker.held():
        assert taker.holder()["token"] == taker.token
    err = capsys.readouterr().err
    assert "taking over" in err and "host elsewhere, pid 1" in err and "lease expired" in err


def test_a_dead_pid_on_this_host_is_taken_over_at_once(store, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    plant(store, host=socket.gethostname(), pid=gone.pid)  # its lease has not expired
    taker = SweepLock(store, "exp")
    taker.refuse_if_held()  # not refused
    with taker.held():
        pass
    assert f"pid {gone.pid} on this host is gone" in capsys.readouterr().err


def test_the_heartbeat_renews_the_lease_and_never_overwrites_a_new_holder(tmp_path):
    store = Store.at(tmp_path)
    lock = SweepLock(store, "exp", lease_s=0.4)
    with lock.held():
        first = lock.holder()["lease_until"]
        time.sleep(0.35)
        assert lock.holder()["lease_until"] > first  # renewed every lease / 4
        plant(store, token="new")  # taken over after our lease had lapsed
        time.sleep(0.3)
        assert lock.holder()["token"] == "new"
    assert lock.holder()["token"] == "new"  # release leaves the new holder's lock alone


def test_a_refused_start_leaves_no_folder_the_lock_made(tmp_path):
    store = Store.at(tmp_path / "results")  # neither the results folder nor exp/ exists yet
    with SweepLock(store, "exp").held():
        assert (tmp_path / "results" / "exp" / LOCK).exists()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept" / "exp").mkdir(parents=True)  # folders that were there stay
    with SweepLock(Store.at(tmp_path / "kept"), "exp").held():
        pass
    assert (tmp_path / "kept" / "exp").is_dir()


def test_on_s3_the_lock_is_a_conditional_put(s3):
    from gtaray.lock import _s3_put_if_absent

    path = f"{S3_BUCKET}/conditional-{time.time_ns()}/{LOCK}"
    assert _s3_put_if_absent(path, b"mine") is True
    assert _s3_put_if_absent(path, b"theirs") is False  # If-None-Match: * refused it
    assert s3.get_object(Bucket=S3_BUCKET, Key=path.split("/", 1)[1])["Body"].read() == b"mine"
