"""Many trials read through the experiment's index: the same rows as file by file, the files
still the record (changed, new, gone and bad files), locally and on a real S3 API."""

from __future__ import annotations

import os
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gtaray.parquet_folder import LISTED, index_key
from gtaray.results import OLDER_NAMES, load_curves, load_trials, write_curve, write_trial
from gtaray.storage import Store
from tests.test_results import CLASSES, row

EVERY_FILE = 10**9  # an index_from no folder reaches: the reader of before the index


def _trials(location: str, count: int) -> None:
    for i in range(count):
        write_trial(row(f"t{i}", "full", i, i / 10), CLASSES, location)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_the_index_gives_the_rows_file_by_file_gives_and_follows_the_files(location):
    _trials(location, 4)
    store = Store.at(location)
    problems: list[str] = []
    indexed = load_trials(location, "exp", problems, index_from=3)
    assert store.is_file(index_key("exp/trials")) and problems == []
    _same(indexed, load_trials(location, "exp", index_from=EVERY_FILE))
    _same(load_trials(location, "exp", index_from=3), indexed)  # now through the index

    # Rewritten within the second the index was built in, at the same size: S3 keeps the
    # same stamp, and the file is read again because it was too young to be trusted.
    write_trial(row("t1", "full", 1, 0.9), CLASSES, location)
    write_trial(row("t9", "no_aux", 9, 0.3), CLASSES, location)  # new
    store.fs.delete_file(store.path("exp/trials/t0.parquet"))  # gone
    after = load_trials(location, "exp", index_from=3)
    assert dict(zip(after["trial_id"], after["target_miou"], strict=True)) == {
        "t1": 0.9, "t2": 0.2, "t3": 0.3, "t9": 0.3,
    }  # fmt: skip
    _same(after, load_trials(location, "exp", index_from=EVERY_FILE))


def test_curves_are_indexed_as_well(location):
    for i in range(3):
        rows = [{"trial_id": f"t{i}", "iteration": it, "target_miou": i + it} for it in (5, 10)]
        write_curve(rows, location, "exp", f"t{i}")
    indexed = load_curves(location, "exp", index_from=2)
    assert Store.at(location).is_file(index_key("exp/curves"))
    _same(load_curves(location, "exp", index_from=2), indexed)
    _same(indexed, load_curves(location, "exp", index_from=EVERY_FILE))
    assert len(indexed) == 6


def test_a_folder_below_the_threshold_gets_no_index(tmp_path):
    _trials(str(tmp_path), 3)
    assert len(load_trials(tmp_path, "exp")) == 3
    assert not (tmp_path / "exp" / "index").exists()


def test_an_unchanged_file_is_not_read_again(tmp_path):
    # Same name, size and time, and older than the index: the index's row stands, so the
    # file's bytes are never decoded (garbage of the same size, its time put back, still
    # reads as the indexed row).
    _trials(str(tmp_path), 3)
    for path in (tmp_path / "exp" / "trials").glob("*.parquet"):  # written a minute ago
        os.utime(path, ns=(path.stat().st_atime_ns, time.time_ns() - 60 * 10**9))
    before = load_trials(tmp_path, "exp", index_from=2)
    path = tmp_path / "exp" / "trials" / "t1.parquet"
    stat = path.stat()
    path.write_bytes(b"x" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    problems: list[str] = []
    _same(load_trials(tmp_path, "exp", problems, index_from=2), before)
    assert problems == []


def test_bad_files_are_noted_at_every_read_and_never_indexed(tmp_path):
    _trials(str(tmp_path), 3)
    (tmp_path / "exp" / "trials" / "bad.parquet").write_bytes(b"not parquet")
    for _ in range(2):  # building the index, then through it
        problems: list[str] = []
        rows = load_trials(tmp_path, "exp", problems, index_from=2)
        assert sorted(rows["trial_id"]) == ["t0", "t1", "t2"]
        assert problems == [
            f"{tmp_path}/exp/trials/bad.parquet: skipped, unreadable (ArrowInvalid)"
        ]


def test_an_older_files_note_is_kept_by_the_index(tmp_path):
    _trials(str(tmp_path), 2)
    old = pd.read_parquet(tmp_path / "exp" / "trials" / "t0.parquet")
    old = old.rename(columns={v: k for k, v in OLDER_NAMES.items() if v in old.columns})
    old.assign(trial_id="old").to_parquet(tmp_path / "exp" / "trials" / "old.parquet")
    notes = []
    for _ in range(2):
        problems: list[str] = []
        rows = load_trials(tmp_path, "exp", problems, index_from=2)
        assert rows.set_index("trial_id").loc["old", "method.variant"] == "full"
        notes.append(problems)
    assert notes[0] == notes[1] and len(notes[0]) == 1 and "older schema" in notes[0][0]


def test_a_broken_index_is_read_around_and_rebuilt(tmp_path):
    _trials(str(tmp_path), 3)
    good = load_trials(tmp_path, "exp", index_from=2)
    index = tmp_path / index_key("exp/trials")
    index.write_bytes(index.read_bytes()[:100])  # truncated
    problems: list[str] = []
    _same(load_trials(tmp_path, "exp", problems, index_from=2), good)
    assert problems == [f"{index}: index unreadable (ArrowInvalid), read around"]
    problems = []
    _same(load_trials(tmp_path, "exp", problems, index_from=2), good)
    assert problems == []  # rebuilt by the read before


def test_a_file_rewritten_while_the_index_was_built_is_read_again(tmp_path):
    # The index's stamp of a file is the listing's, taken before the file was read: a file
    # rewritten in the same second after being read (same size, same S3 time) must not be
    # trusted, however long the build took after that.
    _trials(str(tmp_path), 3)
    load_trials(tmp_path, "exp", index_from=2)
    index = tmp_path / index_key("exp/trials")
    table = pq.read_table(index)
    assert int(table.schema.metadata[LISTED.encode()]) > 0
    # The files' times say "a minute before the index", but the build is recorded as having
    # listed the folder two minutes before writing: the files were read after they were
    # written, yet could have changed since within their second; they are read again.
    old = time.time_ns() - 60 * 10**9
    for path in (tmp_path / "exp" / "trials").glob("*.parquet"):
        os.utime(path, ns=(old, old))
    table = pq.read_table(index)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "exp" / "trials").glob("*")}
    table = table.set_column(
        table.schema.get_field_index("_mtime_ns"),
        "_mtime_ns",
        pa.array([stamps[f] for f in table["_file"].to_pylist()], pa.int64()),
    )
    pq.write_table(table.replace_schema_metadata({LISTED: str(120 * 10**9)}), index)
    t1 = tmp_path / "exp" / "trials" / "t1.parquet"
    size = t1.stat().st_size
    write_trial(row("t1", "full", 1, 0.9), CLASSES, tmp_path)
    assert t1.stat().st_size == size
    os.utime(t1, ns=(stamps["t1.parquet"], stamps["t1.parquet"]))  # the same stamp as indexed
    rows = load_trials(tmp_path, "exp", index_from=2).set_index("trial_id")
    assert rows.loc["t1", "target_miou"] == 0.9
