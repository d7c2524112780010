"""A folder of many small Parquet files read as one table, through a consolidated copy.

    tables = read_folder(store, "smoke/trials", prepare, problems)

Decoding a Parquet file costs 2-4 ms whatever its size (a trial row's footer describes over a
hundred columns), and reading the files as one pyarrow dataset costs the same: 4,000 files took
12 s on 2 cores. So a folder of `INDEX_FROM` files or more gets an index,
`<experiment>/index/<folder>.parquet`: the rows of every file it covers, each tagged with the
file's name, size and modification time, and the note its reading gave. A reader takes from the
index the rows of files that are unchanged (same name, size and time in the folder's listing,
and written 2 s or more before the listing the index was built from, since S3 keeps times in
seconds), reads only the others, and writes the index again when they changed it.

The files stay the record; the index is a cache of them. A file that is gone drops out of it,
one that was rewritten is read again, an unreadable or unindexable index is read around (all
files read, one note), and a failed index write costs nothing but speed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from gtaray.storage import Store

# Below this many files a folder is read file by file (a second at most) and gets no index.
INDEX_FROM = 200

# Files fetched at once from an object store, where each request waits tens of milliseconds:
# one after another, that wait made a report of thousands of trials slow there. Local files
# are read in turn (threads only add lock contention to the decoding, which holds the GIL).
READ_THREADS = 16

# How much older than the listing its index was built from a file must be for the index to
# stand for it.
SETTLE_NS = 2 * 10**9

# What `prepare` makes of one file's table: the rows to keep (None: skip the file, and read it
# again next time) and a note about it (None: nothing to say).
Prepared = tuple[pa.Table | None, str | None]

# The index's own columns, besides the rows' (underscored: no config key or metric has them).
FILE, SIZE, MTIME, NOTE = "_file", "_size", "_mtime_ns", "_note"
LISTED = "gtaray.listed_ns_before_write"  # the index's schema metadata
TAGS = {FILE: pa.string(), SIZE: pa.int64(), MTIME: pa.int64(), NOTE: pa.string()}


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    # ParquetFile.read without threads: a trial's file is one small row group, and
    # read_table's dataset machinery and thread pool cost 5x the decoding itself.
    return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)


def index_key(folder: str) -> str:
    """`smoke/trials` -> `smoke/index/trials.parquet`."""
    parent, _, name = folder.rpartition("/")
    return f"{parent}/index/{name}.parquet" if parent else f"index/{name}.parquet"


def read_folder(
    store: Store,
    folder: str,
    prepare: Callable[[str, pa.Table | Exception], Prepared],
    problems: list[str] | None = None,
    index_from: int = INDEX_FROM,
) -> list[pa.Table]:
    """Every `.parquet` file of `folder` as `prepare` makes it (called with the file's URI
    and its table, or the error reading it raised), in file-name order; the files `prepare`
    keeps are indexed once the folder has `index_from` files."""
    listed = time.monotonic_ns()
    listing = store.files(folder, ".parquet")
    cached, notes, stale = _from_index(store, folder, listing, problems, index_from)
    covered = set() if cached is None else set(cached[FILE].to_pylist())
    names = sorted(set(listing) - covered)
    kept = []  # the files read this time, tagged for the index
    for name, table in zip(
        names, read_tables(store, [f"{folder}/{n}" for n in names]), strict=True
    ):
        rows, note = prepare(store.uri(f"{folder}/{name}"), table)
        if note is not None:
            notes.append(note)
        if rows is not None:
            kept.append(_tagged(rows, name, *listing[name], note))
    if problems is not None:
        problems.extend(notes)
    whole = _concat([cached, *kept] if cached is not None else kept)
    if whole is None:  # column types disagree between files: no index, file by file
        return [_untagged(t) for t in ([cached] if cached is not None else []) + kept]
    if len(listing) >= index_from and (kept or stale):
        _write_index(store, folder, whole, time.monotonic_ns() - listed)
    return [_untagged(whole.sort_by(FILE))] if whole.num_rows else []


def _untagged(table: pa.Table) -> pa.Table:
    # No schema metadata either: rows read through the index and from files look the same.
    return table.drop_columns(list(TAGS)).replace_schema_metadata(None)


def _from_index(
    store: Store,
    folder: str,
    listing: dict[str, tuple[int, int | None]],
    problems: list[str] | None,
    index_from: int,
) -> tuple[pa.Table | None, list[str], bool]:
    """The index's rows of files that are unchanged (None: no usable index), their notes, and
    whether the index held rows of files that changed or are gone."""
    key = index_key(folder)
    parent, _, name = key.rpartition("/")
    written = store.files(parent).get(name) if len(listing) >= index_from else None
    if written is None:
        return None, [], False
    try:
        index = decode(store.read_bytes(key))
        files = index[FILE].to_pylist()
        stamps = zip(index[SIZE].to_pylist(), index[MTIME].to_pylist(), strict=True)
        listed_ns_before = int(index.schema.metadata[LISTED.encode()])
    except (OSError, ValueError, KeyError, TypeError) as e:  # truncated, not Parquet, not an index
        if problems is not None:
            problems.append(f"{store.uri(key)}: index unreadable ({type(e).__name__}), read around")
        return None, [], True
    # A file is taken from the index when its stamp is the same and it was SETTLE_NS older
    # than the listing the index was built from (times by the store's clock): a rewrite within
    # the same second keeps the stamp on stores that keep seconds (S3), so a younger file is
    # read again.
    trusted_before = (written[1] or 0) - listed_ns_before - SETTLE_NS
    current = [
        listing.get(f) == stamp and stamp[1] is not None and stamp[1] < trusted_before
        for f, stamp in zip(files, stamps, strict=True)
    ]
    cached = index.filter(pa.array(current, pa.bool_()))
    notes = {}
    for file, note in zip(cached[FILE].to_pylist(), cached[NOTE].to_pylist(), strict=True):
        if note is not None:
            notes.setdefault(file, note)
    return cached, [notes[f] for f in sorted(notes)], cached.num_rows < index.num_rows


def _tagged(rows: pa.Table, *tags: str | int | None) -> pa.Table:
    """rows with the index's columns: file name, size, modification time, note."""
    for (column, kind), value in zip(TAGS.items(), tags, strict=True):
        rows = rows.append_column(column, pa.array([value] * rows.num_rows, kind))
    return rows


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    if not tables:
        return pa.table({c: pa.array([], t) for c, t in TAGS.items()})
    try:
        # One chunk per column: Parquet's writer took 2.5 s over 2,000 one-row chunks.
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _write_index(store: Store, folder: str, whole: pa.Table, age_ns: int) -> None:
    """The index, with how long before its writing the folder was listed (its files were read
    after that, so only a file older than the listing can be trusted to be what was read)."""
    whole = whole.replace_schema_metadata({LISTED: str(age_ns)})
    # A read-only results folder: the next read is as slow, nothing worse.
    with contextlib.suppress(OSError, pa.ArrowException):
        store.write_atomic(index_key(folder), parquet_bytes(whole))


def read_tables(store: Store, keys: list[str]) -> list[pa.Table | Exception]:
    """Each key's Parquet table, or the error that reading it raised, in the keys' order."""

    def fetch(key: str) -> bytes | Exception:
        try:
            return store.read_bytes(key)
        except OSError as e:
            return e

    def decoded(data: bytes | Exception) -> pa.Table | Exception:
        if isinstance(data, Exception):
            return data
        try:
            return decode(data)
        except (OSError, ValueError) as e:  # truncated, empty, not Parquet (ArrowInvalid)
            return e

    if store.is_local or len(keys) < 2:
        return [decoded(fetch(k)) for k in keys]
    with ThreadPoolExecutor(min(READ_THREADS, len(keys))) as pool:
        return [decoded(data) for data in pool.map(fetch, keys)]
