"""One sweep per experiment at a time: a lock object in the experiment's folder.

    lock = SweepLock(Store.at(exp.results.dir), exp.name)
    lock.refuse_if_held()         # before anything else: one line naming the running process
    with lock.held():             # atomic create; a heartbeat renews the lease while it runs
        run_sweep(exp)

Two `make demo`s in two terminals, or a requeued SLURM job whose first run still holds the
folder, would otherwise run the same trials into one folder. The lock is `<exp>/.sweep.lock`,
JSON with the holder's host, pid, start time and a lease that a heartbeat thread renews every
LEASE_S / 4 seconds. It is created atomically where the store can:
- a local folder or a file:// mount: O_CREAT | O_EXCL (also across the hosts of an NFS mount);
- S3: a conditional PUT (If-None-Match: *), through boto3 when it is installed;
- elsewhere (S3 without boto3, GCS): written if absent, then read back: the one whose token
  is there holds it (two starts within the same second could both see their own write).
A lock left by a process that died (SIGKILL, a lost node) is taken over, with one line, once
its lease has expired, or at once when it names this host and a pid that is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gtaray.errors import ConfigError
from gtaray.storage import Store

LOCK = ".sweep.lock"
LEASE_S = 120.0


class LockHeld(ConfigError):
    """Another live sweep holds the experiment (exit 2, like other refused input)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class SweepLock:
    def __init__(self, store: Store, experiment: str, lease_s: float = LEASE_S) -> None:
        self.store, self.key, self.lease_s = store, f"{experiment}/{LOCK}", lease_s
        self.token = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._made: list[Path] = []  # folders this lock created (local stores), deepest first

    # --- reading ---------------------------------------------------------------------------

    def holder(self) -> dict | None:
        """The lock's content, or None when there is none (or it is unreadable: half-written
        by a process that died while writing it, which a live holder's heartbeat rewrites)."""
        try:
            return json.loads(self.store.read_bytes(self.key))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def stale_reason(self, holder: dict) -> str | None:
        """Why a holder no longer counts (None: it does)."""
        if holder.get("host") == self.host and not _pid_alive(int(holder.get("pid", -1))):
            return f"pid {holder.get('pid')} on this host is gone"
        if time.time() > float(holder.get("lease_until", 0)):
            return "its lease expired"
        return None

    def refuse_if_held(self) -> None:
        holder = self.holder()
        if holder is not None and self.stale_reason(holder) is None:
            raise self._held_by(holder)

    def _held_by(self, holder: dict) -> LockHeld:
        return LockHeld(
            f"{self.store.uri(self.key)}: a sweep of this experiment is running (host "
            f"{holder.get('host')}, pid {holder.get('pid')}, since {holder.get('started')}); "
            "wait for it to end or stop it, then --resume"
        )

    # --- holding ---------------------------------------------------------------------------

    def _content(self) -> bytes:
        body = {
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "lease_until": time.time() + self.lease_s,
            "token": self.token,
        }
        return json.dumps(body).encode()

    def _create(self) -> bool:
        """Create the lock if there is none; True if this process now holds it."""
        data = self._content()
        if self.store.is_local:
            path = Path(self.store.path(self.key))
            missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made = missing or self._made
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.store.kind == "s3":
            created = _s3_put_if_absent(self.store.path(self.key), data)
            if created is not None:
                return created
        if self.store.exists(self.key):
            return False
        self.store.write_atomic(self.key, data)
        time.sleep(1.0)  # let a racing writer's object land, then see whose is there
        holder = self.holder()
        return holder is not None and holder.get("token") == self.token

    def _try_create(self) -> bool:
        try:
            return self._create()
        except (OSError, _ClientError) as e:  # read-only keys, a read-only mount, a full disk
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            where = self.store.uri(self.key)
            raise ConfigError(f"{where}: cannot write the lock: {first}") from None

    def acquire(self) -> None:
        if self._try_create():
            return
        holder = self.holder() or {}
        why = self.stale_reason(holder) if holder else "it is unreadable"
        if why is None:
            raise self._held_by(holder)
        print(
            f"gtaray: taking over {self.store.uri(self.key)} (host {holder.get('host')}, "
            f"pid {holder.get('pid')}): {why}",
            file=sys.stderr,
        )
        self._delete()
        if not self._try_create():  # another process took it over first
            raise self._held_by(self.holder() or {})

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            holder = self.holder()
            if holder is not None and holder.get("token") != self.token:
                return  # taken over (our lease had expired): never overwrite the new holder
            with contextlib.suppress(OSError):
                self.store.write_atomic(self.key, self._content())

    def _delete(self) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.store.fs.delete_file(self.store.path(self.key))

    def release(self) -> None:
        self._stop.set()
        holder = self.holder()
        if holder is not None and holder.get("token") == self.token:
            self._delete()
        for folder in self._made:  # a start refused after the lock leaves no folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty: the sweep wrote into it, and so into its parents
                break

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        beat = threading.Thread(target=self._heartbeat, name="gtaray-lock", daemon=True)
        beat.start()
        try:
            yield
        finally:
            self.release()


try:
    from botocore.exceptions import ClientError as _ClientError
except ImportError:  # boto3 is optional: without it S3 locks are written through pyarrow

    class _ClientError(Exception):  # type: ignore[no-redef]
        pass


def _s3_put_if_absent(path: str, data: bytes) -> bool | None:
    """PUT `bucket/key` only if absent (S3 conditional writes): True if created, False if it
    existed, None when boto3 is not installed or the store does not support the condition."""
    try:
        import boto3
    except ImportError:
        return None
    bucket, key = path.split("/", 1)
    client = boto3.client("s3")  # endpoint and credentials from the environment, as pyarrow's
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except _ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        if code == "NotImplemented":
            return None
        raise
    return True
