"""Result tables on disk: one Parquet file per trial, one per trial's learning curve.

    <dir>/<experiment>/trials/<trial_id>.parquet   one row: config, final metrics, provenance
    <dir>/<experiment>/curves/<trial_id>.parquet   one row per evaluation
    <dir>/<experiment>/trials/history/<trial_id>.<n>.parquet   rows a retried trial replaced

`<dir>` is a local folder or a URI (gtaray.storage). Every file is written atomically (a hidden
temporary name renamed, or one whole-object PUT), so a reader never sees half a file and a trial
that re-runs replaces its own file. Readers skip hidden names.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from gtaray.config import ConfigError, Experiment
from gtaray.metric_names import iou_column
from gtaray.parquet_folder import INDEX_FROM, Prepared, decode, parquet_bytes, read_folder
from gtaray.storage import Store

STATUSES = ("completed", "diverged", "pruned", "failed")

# Columns every trial row has besides its settings (in this order); the settings follow under
# their dotted experiment keys (`config_columns`), then the `iou_<class>` columns.
TRIAL_COLUMNS: dict[str, pa.DataType] = {
    "experiment": pa.string(),
    "trial_id": pa.string(),
    "config_id": pa.string(),  # shared by a seed group's trials (else the trial's own id)
    "phase": pa.string(),  # grid, search, or an ablation's search-<variant> / final
    "status": pa.string(),
    "iterations_done": pa.int64(),
    "target_miou": pa.float64(),
    "test_miou_target_val": pa.float64(),
    "iteration_target_val": pa.int64(),
    "test_miou_source_val": pa.float64(),
    "iteration_source_val": pa.int64(),
    # 16-class runs: mIoU* over the 13 classes without wall, fence, pole (NaN otherwise).
    "target_miou_13": pa.float64(),
    "test_miou_13_target_val": pa.float64(),
    "test_miou_13_source_val": pa.float64(),
    "target_val_miou": pa.float64(),
    "source_val_miou": pa.float64(),
    "selection_metric": pa.string(),
    "wall_seconds": pa.float64(),
    "iters_per_second": pa.float64(),
    "device": pa.string(),
    "gtaray_version": pa.string(),
    "git_sha": pa.string(),
    "config_hash": pa.string(),
    "ray_version": pa.string(),
    "torch_version": pa.string(),
    "optuna_version": pa.string(),
    "node_id": pa.string(),
    "start_time": pa.timestamp("s", tz="UTC"),
    "end_time": pa.timestamp("s", tz="UTC"),
    "error": pa.string(),
}

# Settings of the experiment as a whole, not of a trial: its name is the `experiment` column,
# and where its results live or are watched says nothing about them.
NOT_CONFIG = ("name", "sweep", "results", "tracking")


def config_columns(exp: Experiment) -> dict[str, Any]:
    """The trial's settings under their dotted keys (`optim.lr_f`, `data.source`, ...): every
    field of the resolved experiment but NOT_CONFIG. Paths are strings, pairs are JSON."""
    out: dict[str, Any] = {}

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = json.dumps(value) if isinstance(value, list) else value

    walk(exp.model_dump(mode="json", exclude=set(NOT_CONFIG)), "")
    return out


@functools.cache
def config_types() -> dict[str, pa.DataType]:
    """The Parquet type of each of `config_columns`' keys, read from the fields' types (so a
    setting left at None still has its column's type)."""
    return {k: v for k, v in _field_types(Experiment).items() if k.split(".")[0] not in NOT_CONFIG}


def _field_types(model: type[BaseModel], prefix: str = "") -> dict[str, pa.DataType]:
    out: dict[str, pa.DataType] = {}
    for name, field in model.model_fields.items():
        kind = _plain(field.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out |= _field_types(kind, f"{prefix}{name}.")
        else:
            out[prefix + name] = _ARROW.get(kind, pa.string())
    return out


def row_columns() -> list[str]:
    """A trial row's columns but its per-class IoU, in order."""
    return [*TRIAL_COLUMNS, *config_types()]


_ARROW = {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}


def _plain(annotation: Any) -> Any:
    """The Python type under Annotated, `| None` and Literal (a Literal's values' type)."""
    while True:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
        elif origin is Literal:
            return type(args[0])
        elif origin in (Union, UnionType):
            (annotation, *_) = [a for a in args if a is not type(None)]
        else:
            return annotation


# Rows written before the settings were keyed by their dotted paths (read through this once).
OLDER_NAMES = {
    "variant": "method.variant",
    "seed": "train.seed",
    "lr_f": "optim.lr_f",
    "lr_gd": "optim.lr_gd",
    "alpha": "method.alpha",
    "beta": "method.beta",
    "adv_g": "method.adv_g",
    "aux_g": "method.aux_g",
    "l1": "method.l1",
    "reduction": "method.reduction",
    "width": "model.width",
    "gd_width": "model.gd_width",  # then the resolved width of G and D, now as set
    "image_width": "data.width",
    "image_height": "data.height",
    "batch_size": "train.batch_size",
    "iterations_planned": "train.iterations",
    "workers": "scaling.num_workers",
}


def trial_key(experiment: str, trial_id: str) -> str:
    return f"{experiment}/trials/{trial_id}.parquet"


def curve_key(experiment: str, trial_id: str) -> str:
    return f"{experiment}/curves/{trial_id}.parquet"


def trial_path(results_dir: str | Path, experiment: str, trial_id: str) -> str:
    """Where a trial's row lives: a local path or a URI, like results_dir."""
    return Store.at(results_dir).uri(trial_key(experiment, trial_id))


def curve_path(results_dir: str | Path, experiment: str, trial_id: str) -> str:
    return Store.at(results_dir).uri(curve_key(experiment, trial_id))


def trial_schema(class_names: list[str]) -> pa.Schema:
    columns = TRIAL_COLUMNS | config_types()
    fields = [pa.field(name, kind) for name, kind in columns.items()]
    fields += [pa.field(iou_column(c), pa.float64()) for c in class_names]
    return pa.schema(fields)


def _read(store: Store, key: str) -> pd.DataFrame:
    return _with_current_names(decode(store.read_bytes(key)))[0].to_pandas()


SNAPSHOT = "experiment.json"  # the config an experiment folder was started with


def write_snapshot(exp: Experiment) -> None:
    """Record the config (and its hash) an experiment folder runs with."""
    snapshot = {"config_hash": exp.config_hash(), "experiment": exp.model_dump(mode="json")}
    Store.at(exp.results.dir).write_atomic(
        f"{exp.name}/{SNAPSHOT}", json.dumps(snapshot, indent=2).encode()
    )


def read_snapshot(results_dir: str, name: str) -> dict | None:
    """The experiment.json of an experiment folder, None if there is none; ConfigError if it
    is unreadable or not gtaray's."""
    store, key = Store.at(results_dir), f"{name}/{SNAPSHOT}"
    path = store.uri(key)
    if not store.exists(key):
        return None
    try:
        snapshot = json.loads(store.read_bytes(key))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}); cannot resume") from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("config_hash"), str):
        raise ConfigError(f"{path}: no config_hash; not a gtaray experiment, cannot resume")
    return snapshot


_EXCEPTION_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b(\(\w+\))?:")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_message(error_file: str | None, max_lines: int = 4, max_chars: int = 1000) -> str:
    """What failed a trial, in a few lines: the innermost exception of Tune's error file and
    the lines that follow it (Ray Train puts the worker's own error there), not the path."""
    text = ""
    if error_file:
        with contextlib.suppress(OSError):
            text = Path(error_file).read_text(errors="replace")
    lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("File ", "Traceback", "^", "~"))]
    starts = [i for i, ln in enumerate(lines) if _EXCEPTION_LINE.match(ln)]
    if not starts:
        return (" | ".join(lines[-max_lines:]) or "trial failed (no error text)")[:max_chars]
    return " | ".join(lines[starts[-1] : starts[-1] + max_lines])[:max_chars]


# How a trial's test mIoU is read: at the last evaluation, or at the evaluation a validation
# metric picks (target val: labelled target images held out of training; source val: strict
# UDA, no target labels). Never at the best test mIoU: that would select on the test split.
PROTOCOLS = {
    "last": ("target_miou", "iterations_done"),
    "target_val": ("test_miou_target_val", "iteration_target_val"),
    "source_val": ("test_miou_source_val", "iteration_source_val"),
}
# The same protocols for mIoU* (16-class runs), read at the same evaluations.
PROTOCOLS_13 = {
    "last": "target_miou_13",
    "target_val": "test_miou_13_target_val",
    "source_val": "test_miou_13_source_val",
}


def selected_evaluation(curve: list[dict], metric: str) -> dict | None:
    """The evaluation with the highest `metric` (the earliest among equals), None if none has
    a finite value."""
    scored = [r for r in curve if isinstance(r.get(metric), int | float) and r[metric] == r[metric]]
    return max(scored, key=lambda r: (r[metric], -r["iteration"])) if scored else None


def curve_row(exp: Experiment, trial_id: str, result: dict) -> dict:
    """One evaluation's curve row: the numbers of a reported result (Ray Train's `a/b` keys as
    `a_b`), where it ran, and which trial, variant and seed it belongs to."""
    row = {k: v for k, v in result.items() if isinstance(v, int | float) and "/" not in k}
    row["node_id"] = str(result.get("node_id", ""))
    row |= {k.replace("/", "_"): v for k, v in result.items() if "/" in k}
    return row | {
        "trial_id": trial_id,
        "method.variant": exp.method.variant,
        "train.seed": exp.train.seed,
    }


def trial_row(
    exp: Experiment,
    trial_id: str,
    last: dict,
    classes: list[str],
    error: str | None,
    curve: list[dict] = (),
) -> dict:
    """A trial's row but for where and when it ran: its experiment's settings, its last
    reported metrics, the test mIoU at the evaluations each validation metric selects (from
    its curve), its status, and the error that failed it, if any."""

    def metric(key: str) -> float:
        value = last.get(key)
        return float(value) if isinstance(value, int | float) else math.nan

    row = {
        "experiment": exp.name,
        "trial_id": trial_id,
        "config_id": trial_id,  # a seed group's trials: the group's, set by the sweep
        "phase": exp.sweep.mode,  # an ablation's phase is set by the sweep
        **config_columns(exp),
        "iterations_done": int(last.get("iteration", 0) or 0),
        "target_miou": metric("target_miou"),
        "target_miou_13": metric("target_miou_13"),
        "target_val_miou": metric("target_val_miou"),
        "source_val_miou": metric("source_val_miou"),
        "selection_metric": exp.sweep.metric,
        "iters_per_second": metric("iters_per_second"),
        # What the worker trained on ("cuda:0"), else what was asked for (a failed start).
        "device": str(last.get("device") or exp.scaling.device),
        "config_hash": exp.config_hash(),
    }
    for name in classes:
        row[iou_column(name)] = metric(iou_column(name))
    for protocol in ("target_val", "source_val"):
        miou, iteration = PROTOCOLS[protocol]
        chosen = selected_evaluation(list(curve), f"{protocol}_miou")
        row[miou] = float(chosen["target_miou"]) if chosen else math.nan
        row[iteration] = int(chosen["iteration"]) if chosen else None
        star = chosen.get("target_miou_13") if chosen else None
        row[PROTOCOLS_13[protocol]] = float(star) if isinstance(star, int | float) else math.nan
    if error is not None:
        row["status"] = "failed"
    elif last.get("diverged"):
        row["status"] = "diverged"
    elif row["iterations_done"] >= exp.train.iterations:
        row["status"] = "completed"
    else:
        row["status"] = "pruned"  # stopped early by the scheduler
    row["error"] = error
    return row


def write_trial(row: dict, class_names: list[str], results_dir: str | Path) -> str:
    """Validate one trial row against the schema and write it atomically; return its location."""
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    schema = trial_schema(class_names)
    missing = [name for name in schema.names if name not in row]
    if missing:
        raise ValueError(f"trial row lacks columns: {', '.join(missing)}")
    table = pa.Table.from_pylist([{name: row[name] for name in schema.names}], schema=schema)
    store = Store.at(results_dir)
    key = trial_key(row["experiment"], row["trial_id"])
    if store.exists(key):  # a retried trial (after `failed`): keep the earlier row's history
        history = f"{row['experiment']}/trials/history"
        attempt = len(store.names(history, ".parquet")) + 1
        store.copy(key, f"{history}/{row['trial_id']}.{attempt}.parquet")
    store.write_atomic(key, parquet_bytes(table))
    return store.uri(key)


def write_curve(rows: list[dict], results_dir: str | Path, experiment: str, trial_id: str) -> str:
    store = Store.at(results_dir)
    key = curve_key(experiment, trial_id)
    store.write_atomic(key, parquet_bytes(pa.Table.from_pylist(rows)))
    return store.uri(key)


def load_curve(results_dir: str | Path, experiment: str, trial_id: str) -> list[dict]:
    """One trial's curve rows, [] if it has none yet."""
    store, key = Store.at(results_dir), curve_key(experiment, trial_id)
    return _read(store, key).to_dict("records") if store.exists(key) else []


def load_trial(results_dir: str | Path, experiment: str, trial_id: str) -> pd.Series | None:
    """A trial's row, None if it has none yet."""
    store, key = Store.at(results_dir), trial_key(experiment, trial_id)
    return _read(store, key).iloc[0] if store.exists(key) else None


# Without these a file is not a gtaray trial row.
REQUIRED_COLUMNS = ("experiment", "trial_id", "method.variant", "status")


def load_trials(
    results_dir: str | Path,
    experiment: str | None = None,
    problems: list[str] | None = None,
    index_from: int = INDEX_FROM,
) -> pd.DataFrame:
    """All trial rows under results_dir (optionally one experiment), one row per trial id.

    A file that cannot be read or is not a trial row is skipped; rows of an older schema get
    the missing columns as NaN. Each such case adds a line to `problems`, naming the file.
    Experiments of `index_from` trials or more are read through their index (parquet_folder)."""
    store = Store.at(results_dir)
    experiments = [experiment] if experiment else store.folders()
    tables = [
        t
        for name in experiments
        for t in read_folder(store, f"{name}/trials", _trial_rows, problems, index_from)
    ]
    if not tables:
        return pd.DataFrame(columns=row_columns())
    frame = _concat(tables)
    frame = frame.reindex(columns=list(dict.fromkeys([*row_columns(), *frame.columns])))
    # One file per trial id already; this guards against copies made by hand.
    return frame.drop_duplicates(["experiment", "trial_id"], keep="last").reset_index(drop=True)


def _trial_rows(uri: str, table: pa.Table | Exception) -> Prepared:
    """A trial file's row under today's names, or why it is skipped; a note if it is older."""
    if isinstance(table, Exception):  # truncated, empty, not Parquet
        return None, f"{uri}: skipped, unreadable ({type(table).__name__})"
    table, renamed = _with_current_names(table)
    columns = set(table.column_names)
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        return None, f"{uri}: skipped, not a trial row (no {absent[0]})"
    older = [c for c in row_columns() if c not in columns]
    if not (older or renamed):
        return table, None
    parts = [f"{renamed} column(s) renamed"] if renamed else []
    parts += [f"{len(older)} column(s) empty"] if older else []
    return table, f"{uri}: older schema, {', '.join(parts)}"


def _curve_rows(uri: str, table: pa.Table | Exception) -> Prepared:
    if isinstance(table, Exception):
        return None, f"{uri}: skipped ({table!s:.60})"
    return _with_current_names(table)[0], None


def _with_current_names(table: pa.Table) -> tuple[pa.Table, int]:
    """A table whose older bare setting names (`variant`) read as today's (`method.variant`),
    and how many it renamed."""
    names = [
        OLDER_NAMES[c] if c in OLDER_NAMES and OLDER_NAMES[c] not in table.column_names else c
        for c in table.column_names
    ]
    renamed = sum(a != b for a, b in zip(names, table.column_names, strict=True))
    return (table.rename_columns(names) if renamed else table), renamed


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    """One frame of many files' tables: one Arrow concatenation (columns a file lacks are
    null), converted once; files whose column types disagree go through pandas instead."""
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def load_curves(
    results_dir: str | Path,
    experiment: str,
    problems: list[str] | None = None,
    index_from: int = INDEX_FROM,
) -> pd.DataFrame:
    """All curve rows of an experiment; unreadable files are skipped and noted."""
    store = Store.at(results_dir)
    tables = read_folder(store, f"{experiment}/curves", _curve_rows, problems, index_from)
    return _concat(tables) if tables else pd.DataFrame()
