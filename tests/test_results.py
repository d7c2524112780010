"""Parquet rows: schema, atomic replacement, temp files ignored; report statistics."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from gtaray.report import protocol_view, render, summarise
from gtaray.results import (
    load_trials,
    row_columns,
    trial_path,
    write_trial,
)

CLASSES = ["road", "traffic light"]


def row(trial_id: str, variant: str, seed: int, miou: float, status: str = "completed") -> dict:
    now = datetime.now(UTC)
    base = {name: None for name in row_columns()}
    base |= {
        "experiment": "exp",
        "trial_id": trial_id,
        "method.variant": variant,
        "train.seed": seed,
        "data.source": "synthetic",
        "data.target": "synthetic",
        "status": status,
        "target_miou": miou,
        "iterations_done": 10,
        "selection_metric": "target_val_miou",
        "start_time": now,
        "end_time": now,
        "iou_road": miou,
        "iou_traffic_light": math.nan,
    }
    return base


def test_write_trial_is_atomic_and_replaces_its_own_file(tmp_path):
    path = Path(write_trial(row("t1", "full", 0, 0.5), CLASSES, tmp_path))
    assert str(path) == trial_path(tmp_path, "exp", "t1")
    write_trial(row("t1", "full", 0, 0.7), CLASSES, tmp_path)
    files = sorted(path.parent.iterdir())
    assert files == [path.parent / "history", path]  # no temp file left behind
    table = pd.read_parquet(path)
    assert table["target_miou"].tolist() == [0.7]
    assert "iou_traffic_light" in table.columns
    # the replaced row is kept out of the table, in the trial's history
    (old,) = (path.parent / "history").iterdir()
    assert old.name == "t1.1.parquet"
    assert pd.read_parquet(old)["target_miou"].tolist() == [0.5]
    assert load_trials(tmp_path)["target_miou"].tolist() == [0.7]


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="status"):
        write_trial(row("t1", "full", 0, 0.5, status="weird"), CLASSES, tmp_path)
    incomplete = row("t2", "full", 0, 0.5)
    del incomplete["git_sha"]
    with pytest.raises(ValueError, match="git_sha"):
        write_trial(incomplete, CLASSES, tmp_path)
    assert not (tmp_path / "exp").exists()


def test_readers_ignore_temp_files_and_count_each_trial_once(tmp_path):
    path = Path(write_trial(row("t1", "full", 0, 0.5), CLASSES, tmp_path))
    (path.parent / ".t2.abc.tmp").write_bytes(b"half a file")
    (path.parent / ".t3.parquet").write_bytes(path.read_bytes())
    trials = load_trials(tmp_path)
    assert trials["trial_id"].tolist() == ["t1"]


def test_summary_gives_mean_and_std_over_seeds_per_variant(tmp_path):
    for i, (variant, seed, miou) in enumerate(
        [("full", 0, 0.4), ("full", 1, 0.6), ("source_only", 0, 0.2), ("source_only", 1, 0.3)]
    ):
        write_trial(row(f"t{i}", variant, seed, miou), CLASSES, tmp_path)
    write_trial(row("t9", "full", 2, math.nan, status="diverged"), CLASSES, tmp_path)
    view = protocol_view(load_trials(tmp_path), pd.DataFrame(), "last")
    summary = summarise(view).set_index("variant")
    assert summary.loc["full", "miou_mean"] == pytest.approx(0.5)
    assert summary.loc["full", "miou_std"] == pytest.approx(pd.Series([0.4, 0.6]).std())
    assert summary.loc["full", "trials"] == 3 and summary.loc["full", "diverged"] == 1
    assert summary.loc["source_only", "miou_mean"] == pytest.approx(0.25)
    assert list(summary.index) == ["source_only", "full"]  # paper order: bound first
    markdown = render(summary.reset_index(), "markdown")
    assert "| exp | full | 2 completed, 1 diverged | 2 | 50.0 ± 14.1 |" in markdown
    assert "| exp | source_only | 2 completed | 2 | 25.0 ± 7.1 |" in markdown


def test_curve_plot_has_a_band_per_variant(tmp_path):
    from gtaray.plots import plot_curves
    from gtaray.results import load_curves, write_curve

    for trial, variant in (("a", "full"), ("b", "source_only"), ("c", "full")):
        rows = [
            {"iteration": i, "target_miou": 0.1 * i, "method.variant": variant, "trial_id": trial}
            for i in (1, 2, 3)
        ]
        write_curve(rows, tmp_path, "exp", trial)
    curves = load_curves(tmp_path, "exp")
    assert len(curves) == 9
    out = plot_curves(curves, tmp_path / "exp" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_whose_column_types_disagree_are_still_read_together(tmp_path):
    # One Arrow concatenation cannot join a float column with a string one (a curve written
    # by another version, say); the reader then joins the files through pandas.
    from gtaray.results import load_curves, write_curve

    write_curve([{"trial_id": "a", "iteration": 3, "note": 0.5}], tmp_path, "exp", "a")
    write_curve([{"trial_id": "b", "iteration": 3, "note": "text"}], tmp_path, "exp", "b")
    problems: list[str] = []
    curves = load_curves(tmp_path, "exp", problems)
    assert problems == [] and sorted(curves["trial_id"]) == ["a", "b"]
    assert sorted(map(str, curves["note"])) == ["0.5", "text"]


def test_a_rows_settings_are_the_flattened_experiment_searched_keys_included(tmp_path):
    from gtaray.config import load_experiment
    from gtaray.results import config_columns, trial_row
    from tests.conftest import EXPERIMENTS

    exp = load_experiment(
        EXPERIMENTS / "search.yaml",
        ["optim.lr_f=0.00123", "method.beta=7.5", "data.source=gta5", "data.target=cityscapes"]
        + ["data.root=/data"]
        + ["model.arch=authors"],
    )
    written = trial_row(exp, "t1", {"iteration": 3}, CLASSES, error=None)
    flat = _flatten(exp.model_dump(mode="json"))
    settings = {k: v for k, v in flat.items() if k.split(".")[0] in {
        "data", "model", "method", "optim", "train", "scaling"}}  # fmt: skip
    assert config_columns(exp) == settings and len(settings) > 50
    for key, value in settings.items():
        assert written[key] == value, key
    for key in exp.sweep.space.searched():  # each searched key is a column of the same name
        assert key in written
    assert written["optim.lr_f"] == 0.00123 and written["data.source"] == "gta5"
    assert written["data.seed"] == exp.data.seed and written["train.seed"] == exp.train.seed
    # and it survives Parquet with its type, None included
    one = row("t1", "full", 0, 0.5) | written | {"status": "completed"}
    write_trial(one, CLASSES, tmp_path)
    back = load_trials(tmp_path).iloc[0]
    assert back["optim.lr_f"] == 0.00123 and back["model.arch"] == "authors"
    assert back["data.root"] == "/data" and pd.isna(back["model.pretrained"])
    assert back["optim.betas_f"] == "[0.9, 0.999]"


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = json.dumps(value) if isinstance(value, list) else value
    return out


def test_a_row_of_the_older_schema_is_read_once_with_its_bare_names_mapped(tmp_path):
    from gtaray.results import OLDER_NAMES

    write_trial(row("new", "full", 1, 0.5), CLASSES, tmp_path)
    old = pd.read_parquet(tmp_path / "exp" / "trials" / "new.parquet")
    old = old[[c for c in old.columns if not c.startswith(("data.", "model.", "optim."))]]
    old = old.rename(columns={v: k for k, v in OLDER_NAMES.items() if v in old.columns})
    old.assign(trial_id="old", **{"lr_f": 0.01}).to_parquet(tmp_path / "exp/trials/old.parquet")
    problems: list[str] = []
    rows = load_trials(tmp_path, problems=problems).set_index("trial_id")
    assert "variant" not in rows.columns and "seed" not in rows.columns
    assert rows.loc["old", "method.variant"] == "full" and rows.loc["old", "train.seed"] == 1
    assert rows.loc["old", "optim.lr_f"] == 0.01
    written = [*old.columns, "lr_f"]
    renamed = sum(c in OLDER_NAMES for c in written)
    empty = len(set(row_columns()) - {OLDER_NAMES.get(c, c) for c in written})
    (note,) = problems  # one line for the file
    assert note.endswith(f"older schema, {renamed} column(s) renamed, {empty} column(s) empty")
