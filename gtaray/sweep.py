"""Ray Tune: trial plans, the trial driver that builds a TorchTrainer, search, resume.

    gtaray sweep experiments/ablations.yaml            # grid: variants x seeds
    gtaray sweep experiments/search.yaml --resume      # Optuna + ASHA, continue after a kill

Three layers (Ray Train V2): `train_fn_per_worker` (train.py) <- `trial_driver` (one
TorchTrainer per Tune trial) <- `Tuner(trial_driver)`. Rows are written by `ResultsWriter`, a Tune
callback in this process: one writer, atomic files, status taken from the last report.
"""

from __future__ import annotations

import contextlib
import errno
import math
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
import ray.tune
from ray import tune
from rich.console import Console

from gtaray.ablation import FINAL, Phase, final_space, phases, rows_of
from gtaray.cluster import check_cluster, cluster_nodes, init_ray
from gtaray.config import GRID_KEYS, Experiment, LogUniform
from gtaray.data.splits import class_names
from gtaray.errors import ResultsWriteError
from gtaray.metric_names import ALREADY_RECORDED
from gtaray.plan import plan
from gtaray.preflight import check_start, experiment_dir
from gtaray.progress import SweepProgress, output_to_log
from gtaray.provenance import provenance
from gtaray.results import (
    curve_path,
    curve_row,
    error_message,
    load_curve,
    load_curves,
    load_trial,
    load_trials,
    trial_path,
    trial_row,
    write_curve,
    write_snapshot,
    write_trial,
)
from gtaray.seed_asha import SeedASHA
from gtaray.seed_groups import SeedGroups, config_id, trial_updates
from gtaray.storage import Store, local_log
from gtaray.study import StudyJournal
from gtaray.trackers import Tracker, trackers
from gtaray.trainer import StepHook, fit_trial  # Launch: the worker (gtaray.train) is its business


def param_space(exp: Experiment) -> dict[str, Any]:
    """Tune's search space, keyed by the experiment keys it sets (`optim.lr_f`)."""
    sweep = exp.sweep
    if sweep.mode == "grid":
        variant, seed = GRID_KEYS
        return {variant: tune.grid_search(sweep.variants), seed: tune.grid_search(sweep.seeds)}
    space: dict[str, Any] = {}
    for key, value in sweep.space.searched().items():
        if isinstance(value, LogUniform):
            space[key] = tune.loguniform(value.low, value.high)
        else:
            space[key] = tune.choice(value)
    return space


class ResultsWriter(tune.Callback):
    """Turns Tune's trial events into Parquet rows and curves, and drives the progress view."""

    def __init__(
        self, exp: Experiment, out: str, phase: str | None = None, study: str | None = None
    ):  # out: results.dir, absolute (path or URI); phase: the rows' phase column
        self.exp, self.out = exp, out
        self.phase, self.study = phase or exp.sweep.mode, study or exp.name
        self.classes = class_names(exp)
        self.started: dict[str, datetime] = {}
        self.curves: dict[str, list[dict]] = {}
        self.provenance = provenance()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_journal"}

    def __setstate__(self, state: dict) -> None:
        # Tune restores callbacks by unpickling them (`--resume`): rows written from now on must
        # carry this run's code revision and versions, not those of the run that was stopped.
        self.__dict__.update(state)
        self.provenance = provenance()
        # A writer pickled by a version without phases or per-variant studies.
        self.__dict__.setdefault("phase", self.exp.sweep.mode)
        self.__dict__.setdefault("study", self.exp.name)

    @property
    def journal(self) -> StudyJournal:
        # Made on first use, never pickled: on a URI it holds a local copy of the journal.
        if getattr(self, "_journal", None) is None:
            self._journal = StudyJournal(self.exp, Store.at(self.out), self.study)
        return self._journal

    @property
    def progress(self) -> SweepProgress | None:
        # Not an attribute: Tune pickles callbacks with the experiment and restores them.
        return SweepProgress.current

    def on_trial_start(self, iteration, trials, trial, **info):
        # A trial started again after a resume is timed from its new start.
        self.started[trial.trial_id] = datetime.now(UTC)
        if self.progress:
            self.progress.trial_started()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("diverged") or result.get(ALREADY_RECORDED) or "target_miou" not in result:
            return
        exp = self._trial_exp(trial)
        row = curve_row(exp, trial.trial_id, result)
        if trial.trial_id in self.started:  # the per-trial fixed cost, for `gtaray bench`
            since = datetime.now(UTC) - self.started[trial.trial_id]
            row["seconds_since_trial_start"] = since.total_seconds()
        if trial.trial_id not in self.curves:  # after a resume, keep the points before it
            self.curves[trial.trial_id] = load_curve(self.out, self.exp.name, trial.trial_id)
        curve = self.curves[trial.trial_id]
        curve[:] = [r for r in curve if r["iteration"] < row["iteration"]] + [row]
        with _writing(curve_path(self.out, self.exp.name, trial.trial_id)):
            write_curve(curve, self.out, self.exp.name, trial.trial_id)
        if self.progress:
            self.progress.trial_result(result.get(self.exp.sweep.metric))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trial, error=error_message(trial.error_file))

    def _trial_exp(self, trial) -> Experiment:
        return self.exp.with_updates(trial_updates(trial.config))

    def _write(self, trial, error: str | None) -> None:
        exp = self._trial_exp(trial)
        last = trial.last_result or {}
        if last.get(ALREADY_RECORDED) and error is None:
            if self.progress:
                self.progress.trial_skipped()
            return
        end = datetime.now(UTC)
        curve = self.curves.get(trial.trial_id) or load_curve(self.out, exp.name, trial.trial_id)
        row = trial_row(exp, trial.trial_id, last, self.classes, error=error, curve=curve)
        row |= self.provenance | {
            "config_id": config_id(trial.config, trial.trial_id),
            "phase": self.phase,
            "node_id": str(last.get("node_id") or last.get("node_ip", "")),
            "start_time": self.started.get(trial.trial_id, end),
            "end_time": end,
            "wall_seconds": (end - self.started.get(trial.trial_id, end)).total_seconds(),
        }
        with _writing(trial_path(self.out, exp.name, trial.trial_id)):
            write_trial(row, self.classes, self.out)
        if exp.sweep.mode == "search":  # after the row: a resume's sync adds what is missing
            with _writing(self.journal.path):
                self.journal.record(row, curve)
        status = row["status"]
        if self.progress:
            self.progress.trial_finished(status)


@contextlib.contextmanager
def _writing(path: Path):
    """An OSError while writing results stops the sweep as a ResultsWriteError (raised out of
    Tune's callback loop), named by the file it could not write."""
    try:
        yield
    except OSError as e:
        raise ResultsWriteError(f"cannot write {path}: {e.strerror or e}") from e


# Errors that mean "this storage cannot take more writes", wherever they happen.
_STORAGE_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES}


def _results_write_error(error: BaseException, folder: str) -> ResultsWriteError | None:
    """The write failure behind an exception from Tune, if any: ours (the rows), or one of
    Tune's own (its experiment state) when the disk is full or read-only."""
    while error is not None:
        if isinstance(error, ResultsWriteError):
            return error
        if isinstance(error, OSError) and error.errno in _STORAGE_FULL:
            where = error.filename or f"Tune's state under {folder}"
            return ResultsWriteError(f"cannot write {where}: {error.strerror}")
        error = error.__cause__ or error.__context__
    return None


def trial_driver(
    config: dict[str, Any],
    base: dict[str, Any],
    storage: str,
    out: str,
    step_hook: StepHook | None = None,
) -> None:
    """One Tune trial: a TorchTrainer over the experiment with this trial's parameters."""
    exp = Experiment.model_validate(base).with_updates(trial_updates(config))
    trial_id = ray.tune.get_context().get_trial_id()
    row = load_trial(out, exp.name, trial_id)
    if row is not None and row["status"] != "failed":
        # Finished before the sweep was killed, but after Tune last saved its state: the row
        # on disk is the truth; hand Tune its final metrics instead of training again.
        # (A failed trial is retried: its Train run resumes from its last checkpoint.)
        ray.tune.report(
            {
                "iteration": float(row["iterations_done"]),
                exp.sweep.metric: float(row[exp.sweep.metric]),
                ALREADY_RECORDED: 1.0,
            }
        )
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    fit_trial(
        exp, name=trial_id, storage=storage, callbacks=[TuneReportCallback()], step_hook=step_hook
    )
    _wait_until_tune_took_the_last_report()


def _wait_until_tune_took_the_last_report(timeout_s: float = 600.0) -> None:
    """Return only once Tune has taken the Train run's last report.

    TuneReportCallback hands reports over a one-slot queue that the trial actor's main thread
    empties only when Tune asks for the next result. If this function returned first, its
    end-of-trial result would fill the thread queue (also one slot) and the main thread, when
    it then relays the last report, would wait forever: a trial that never ends, seen with
    Tune's loop busy in a tracker's callback (Ray 2.60, ray/train/_internal/session.py)."""
    from ray.train._internal.session import get_session

    queue = get_session()._inter_actor_queue
    deadline = time.monotonic() + timeout_s
    while queue is not None and not queue.empty() and time.monotonic() < deadline:
        time.sleep(0.05)


def _use_current_trackers(tuner: tune.Tuner, exp: Experiment, out: str) -> None:
    """Tune restores its callbacks as the first run pickled them (restore takes no
    run_config): without this, a resumed sweep would ignore its own `tracking` section."""
    run_config = tuner._local_tuner.get_run_config()
    kept = [c for c in run_config.callbacks or [] if not isinstance(c, Tracker)]
    run_config.callbacks = [*kept, *trackers(exp, out)]


def _searcher(exp: Experiment):
    if exp.sweep.mode == "grid":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(seed=exp.train.seed)
    searcher = OptunaSearch(metric=exp.sweep.metric, mode="max", sampler=sampler)
    seeds = exp.sweep.seed_group
    return searcher if seeds is None else SeedGroups(searcher, seeds, exp.sweep.metric)


def _scheduler(exp: Experiment):
    if exp.sweep.scheduler == "none":
        return None
    if exp.sweep.scheduler == "seed_asha":
        return SeedASHA(
            metric=exp.sweep.metric,
            time_attr="iteration",
            max_t=exp.train.iterations,
            grace_period=exp.sweep.grace_period,
            reduction_factor=exp.sweep.reduction_factor,
            group_size=len(exp.sweep.seeds),
            statistic=exp.sweep.rung_statistic,
            ignore=ALREADY_RECORDED,
        )
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="iteration",
        metric=exp.sweep.metric,
        mode="max",
        max_t=exp.train.iterations,
        grace_period=exp.sweep.grace_period,
        reduction_factor=exp.sweep.reduction_factor,
    )


def _live_trials(exp: Experiment, concurrency: int) -> int:
    """How many trials Tune may have started and not finished. seed_asha pauses members at a
    rung until their siblings arrive, and a paused trial still counts: whole groups must fit,
    or a group's last member could never start."""
    if exp.sweep.scheduler != "seed_asha":
        return concurrency
    k = len(exp.sweep.seeds)
    return k * math.ceil(concurrency / k)


@dataclass
class SweepOutcome:
    """Where a sweep stands, read from its rows on disk (the source of truth): rows by status,
    and planned trials without a row (the sweep was interrupted)."""

    folder: str  # a local path or a URI
    log: Path  # sweep.log, always on this machine
    statuses: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0

    @property
    def succeeded(self) -> int:
        return self.statuses.get("completed", 0) + self.statuses.get("pruned", 0)

    @classmethod
    def read(cls, exp: Experiment) -> SweepOutcome:
        rows = load_trials(exp.results.dir, exp.name)
        statuses = rows["status"].value_counts().to_dict() if len(rows) else {}
        unfinished = max(len(plan(exp).trials) - len(rows), 0)
        log = local_log(Store.at(exp.results.dir), f"{exp.name}/sweep.log")
        return cls(experiment_dir(exp), log, statuses, unfinished)


def run_sweep(
    exp: Experiment,
    resume: bool = False,
    show_progress: bool = True,
    step_hook: StepHook | None = None,
) -> SweepOutcome:
    """Run (or resume) the experiment's sweep. step_hook: see gtaray.train (tests only)."""
    restorable = check_start(exp, resume)
    store = Store.at(exp.results.dir)
    log_path = local_log(store, f"{exp.name}/sweep.log")
    # Before anything is written (a refused sweep leaves no folder); Ray's start-up output
    # joins sweep.log once there is one.
    with tempfile.TemporaryDirectory() as scratch:
        with output_to_log(Path(scratch) / "start.log"):
            init_ray()
            check_cluster(exp)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write((Path(scratch) / "start.log").read_text())
    write_snapshot(exp)
    try:
        with output_to_log(log_path) as terminal:
            for phase in sweep_phases(exp):
                _run_phase(
                    exp, phase, store, restorable, terminal if show_progress else None, step_hook
                )
    except Exception as e:
        cause = _results_write_error(e, store.uri(exp.name))
        if cause is None:
            raise
        raise cause from None
    return SweepOutcome.read(exp)


def sweep_phases(exp: Experiment) -> list[Phase]:
    """One Tune run for a grid or a search (its state in `tune/`); an ablation's searches and
    final grid one after the other (in `tune-<phase>/`)."""
    if exp.sweep.mode == "ablation":
        return phases(exp)
    return [Phase("", exp, None)]


def _run_phase(
    exp: Experiment,
    phase: Phase,
    store: Store,
    restorable: bool,
    terminal,
    step_hook: StepHook | None,
) -> None:
    """Run one phase, resuming its Tune state when there is one; a phase whose trials all
    have rows is done (an ablation resumed after its searches goes straight to the final)."""
    tune_name = f"tune-{phase.name}" if phase.name else "tune"
    restorable = restorable and tune.Tuner.can_restore(store.uri(f"{exp.name}/{tune_name}"))
    rows = load_trials(exp.results.dir, exp.name)
    space = None
    if phase.name == FINAL:
        chosen = final_space(exp, rows)
        if not chosen:
            return  # no variant's search completed a trial: nothing to run
        seeds = list(exp.sweep.final_seeds)
        space = {"final": tune.grid_search(chosen), "train.seed": tune.grid_search(seeds)}
        planned = len(chosen) * len(seeds)
    else:
        planned = len(plan(phase.exp).trials)
    mine = rows_of(rows, phase)
    if phase.name and len(mine) >= planned:
        return
    study = f"{exp.name}-{phase.variant}" if phase.variant else exp.name
    if phase.exp.sweep.mode == "search":  # rows written after the journal's last entry, if any
        StudyJournal(phase.exp, store, study).sync(mine, load_curves(exp.results.dir, exp.name))
    _run_tuner(
        phase.exp,
        store,
        restorable,
        terminal,
        step_hook,
        tune_name,
        space,
        phase.name,
        study,
        already_done=len(mine),
    )


def _run_tuner(
    exp: Experiment,
    store: Store,
    restorable: bool,
    terminal,
    step_hook: StepHook | None,
    tune_name: str = "tune",
    space: dict | None = None,
    phase: str = "",
    study: str | None = None,
    already_done: int = 0,
) -> None:
    """Run Tune to the end, or to Ctrl-C (Tune then saves its state and returns)."""
    the_plan = plan(exp, cluster_nodes())
    progress = None
    if terminal is not None:
        total = len(the_plan.trials)
        if space:  # the final grid: chosen configurations x final seeds
            total = len(space["final"]["grid_search"]) * len(space["train.seed"]["grid_search"])
        progress = SweepProgress(
            total, exp.sweep.metric, Console(file=terminal), already_done=already_done
        )
    SweepProgress.current = progress
    driver = tune.with_resources(
        tune.with_parameters(
            trial_driver,
            # Absolute: trial processes run in folders of their own.
            base=exp.with_updates({"results.dir": store.uri()}).model_dump(mode="json"),
            storage=store.uri(f"{exp.name}/train"),
            out=store.uri(),  # absolute: trial processes run in other folders
            step_hook=step_hook,
        ),
        # The driver only waits on its TorchTrainer: it holds a little memory, no CPU.
        {"memory": 64 * 1024**2},
    )
    writer = ResultsWriter(exp, store.uri(), phase=phase or exp.sweep.mode, study=study)
    try:
        if progress:
            progress.start()
        if restorable:
            tuner = tune.Tuner.restore(
                store.uri(f"{exp.name}/{tune_name}"),
                trainable=driver,
                resume_unfinished=True,
                resume_errored=True,
            )
            _use_current_trackers(tuner, exp, store.uri())
        else:
            tuner = tune.Tuner(
                driver,
                param_space=space if space is not None else param_space(exp),
                tune_config=tune.TuneConfig(
                    search_alg=_searcher(exp),
                    scheduler=_scheduler(exp),
                    num_samples=len(the_plan.trials) if exp.sweep.mode == "search" else 1,
                    max_concurrent_trials=_live_trials(exp, the_plan.concurrency),
                ),
                run_config=tune.RunConfig(
                    name=tune_name,
                    storage_path=store.uri(exp.name),
                    callbacks=[writer, *trackers(exp, store.uri())],
                    verbose=0,
                ),
            )
        tuner.fit()
    finally:
        if progress:
            progress.stop()
