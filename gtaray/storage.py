"""Where results live: a local folder or a URI (s3://, gs://, file://), all through pyarrow.fs.

    store = Store.at("s3://bucket/results")      # or "results", "/abs/results", "file:///mnt/nfs"
    store.write_atomic("smoke/trials/t1.parquet", data)
    store.read_bytes("smoke/experiment.json")
    store.uri("smoke/train")                      # what Ray's storage_path takes

Paths given to a Store are relative to its root. Writes are atomic: a temporary file renamed
on a filesystem, one whole-object PUT on an object store (an object appears complete or not at
all). Credentials and endpoints come from the environment (AWS_*, GOOGLE_*), never from a YAML.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from gtaray.config import check_location, scheme


@dataclass(frozen=True)
class Store:
    fs: pafs.FileSystem
    root: str  # the root's path on fs (no trailing slash)
    kind: str | None  # None (a local path), "file", "s3" or "gs"

    @staticmethod
    def at(location: str | Path) -> Store:
        location = str(location)
        if scheme(location) is None:  # relative to the working directory of this moment
            return Store(pafs.LocalFileSystem(), str(Path(location).resolve()), None)
        return _remote(location)

    @property
    def is_local(self) -> bool:
        """A folder of this machine's filesystem (a plain path or file://)."""
        return self.kind in (None, "file")

    def path(self, relative: str = "") -> str:
        return f"{self.root}/{relative}".rstrip("/") if relative else self.root

    def uri(self, relative: str = "") -> str:
        """The location as Ray's storage_path and the user take it."""
        path = self.path(relative)
        return path if self.kind is None else f"{self.kind}://{path}"

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def is_file(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type == pafs.FileType.File

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as f:
            return f.read()

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Readers see the old object/file or the whole new one, never a part."""
        path = self.path(relative)
        parent = path.rsplit("/", 1)[0]
        if not self.is_local:  # one PUT: the object appears when the upload completes
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        self.fs.create_dir(parent, recursive=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.rsplit('/', 1)[1]}.", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; results are for everyone
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def copy(self, source: str, target: str) -> None:
        self.write_atomic(target, self.read_bytes(source))

    def names(self, folder: str, suffix: str = "") -> list[str]:
        """Visible file names in a folder (no dot-names: temporary files), sorted; [] if none."""
        return sorted(self.files(folder, suffix))

    def files(self, folder: str, suffix: str = "") -> dict[str, tuple[int, int | None]]:
        """Visible files of a folder, name -> (size, modification time in ns, None where the
        filesystem has none), from one listing."""
        info = self.fs.get_file_info(pafs.FileSelector(self.path(folder), allow_not_found=True))
        return {
            i.base_name: (i.size, i.mtime_ns)
            for i in info
            if i.type == pafs.FileType.File
            and i.base_name.endswith(suffix)
            and not i.base_name.startswith(".")
        }

    def folders(self, folder: str = "") -> list[str]:
        """Sub-folder names of a folder, sorted."""
        info = self.fs.get_file_info(pafs.FileSelector(self.path(folder), allow_not_found=True))
        return sorted(i.base_name for i in info if i.type == pafs.FileType.Directory)


def on_this_machine(store: Store, key: str, scratch: str) -> Path:
    """Where this process writes files of `key` that cannot be objects (appended to, or
    written by another library): in the store when it is local, else `<tmp>/<scratch>/<key>`."""
    if store.is_local:
        return Path(store.path(key))
    return Path(tempfile.gettempdir()) / scratch / key


def local_log(store: Store, key: str) -> Path:
    """A log file of this process (`<tmp>/gtaray-logs/<key>` for an object store): logs are
    appended line by line, which objects cannot be."""
    return on_this_machine(store, key, "gtaray-logs")


@functools.cache
def _remote(location: str) -> Store:
    # One filesystem object per URI and process: S3/GCS clients are costly to build.
    fs, path = pafs.FileSystem.from_uri(check_location(location))
    return Store(fs, path.rstrip("/"), scheme(location))
