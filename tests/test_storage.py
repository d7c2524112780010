"""Results anywhere: local folders and a real S3 API (moto's server on 127.0.0.1)."""

from __future__ import annotations

import pytest

from gtaray.config import load_experiment
from gtaray.results import load_trials, trial_path, write_trial
from gtaray.storage import Store
from tests.conftest import EXPERIMENTS, S3_BUCKET
from tests.test_results import CLASSES, row


def test_rows_round_trip_and_retries_keep_history(location):
    first = write_trial(row("t1", "full", 0, 0.5), CLASSES, location)
    assert first == trial_path(location, "exp", "t1")
    write_trial(row("t1", "full", 0, 0.7), CLASSES, location)
    write_trial(row("t2", "full", 1, 0.6), CLASSES, location)
    rows = load_trials(location).sort_values("trial_id")
    assert rows["target_miou"].tolist() == [0.7, 0.6]
    store = Store.at(location)
    assert store.names("exp/trials/history") == ["t1.1.parquet"]
    assert store.folders() == ["exp"]


def test_s3_writes_are_whole_objects_with_no_temporary_keys(s3, tmp_path):
    location = f"s3://{S3_BUCKET}/{tmp_path.name}/atomic"
    store = Store.at(location)
    store.write_atomic("a/b.json", b"{}")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=tmp_path.name)["Contents"]
    ]
    assert keys == [f"{tmp_path.name}/atomic/a/b.json"]
    assert store.read_bytes("a/b.json") == b"{}"
    assert store.uri("a") == f"s3://{S3_BUCKET}/{tmp_path.name}/atomic/a"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("hdfs://nn/results", "unsupported URI scheme hdfs://"),
        ("http://example.com/r", "unsupported URI scheme http://"),
        ("s3://", "names no bucket"),
    ],
)
def test_unsupported_locations_are_refused(tmp_path, value, fragment):
    from gtaray.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        load_experiment(EXPERIMENTS / "smoke.yaml", [f"results.dir={value}"])
