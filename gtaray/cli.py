"""The `gtaray` command: parses arguments and calls the library. Heavy imports stay inside
each command so `validate`, `--dry-run` and errors answer fast and start no Ray.

Bad input: one line on stderr, exit status 2, before any expensive work.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from gtaray.config import ConfigError, Experiment, load_experiment
from gtaray.errors import USER_ERRORS, ResultsWriteError
from gtaray.services import NoAnswer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(no_args_is_help=True, help="Dataset tools.")
app.add_typer(data_app, name="data")
analyze_app = typer.Typer(no_args_is_help=True, help="Studies of trained checkpoints.")
app.add_typer(analyze_app, name="analyze")

Overrides = Annotated[
    list[str] | None,
    typer.Option("-o", "--override", help="key.path=value, e.g. -o train.iterations=50"),
]


def _version(value: bool) -> None:
    if value:
        from gtaray import __version__

        typer.echo(f"gtaray {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Domain adaptation for semantic segmentation (LSD, CVPR 2018) as Ray sweeps."""


def fail(message: str, hard: bool = False) -> None:
    typer.echo(f"gtaray: error: {message}", err=True)
    if hard:  # a client thread still waits on the network; interpreter shutdown would wait too
        sys.stderr.flush()
        os._exit(2)
    raise typer.Exit(2)


@contextmanager
def user_errors(file: Path | None = None):
    """Turn the library's input errors into one line and exit status 2; a message that starts
    with a config key (`scaling.use_gpu: ...`) is prefixed with the experiment file's name."""
    try:
        yield
    except USER_ERRORS as e:
        message = str(e)
        if file is not None and re.match(r"[a-z_]+(\.[a-z_0-9]+)+: ", message):
            message = f"{file.name}: {message}"
        fail(message, hard=isinstance(e, NoAnswer))


def _load(file: Path, overrides: list[str] | None, out: str | None = None) -> Experiment:
    with user_errors():
        exp = load_experiment(file, overrides or [])
        if out is not None:
            exp = _with_out(exp, out)
        return exp


def _with_out(exp: Experiment, out: str) -> Experiment:
    from pydantic import ValidationError

    try:
        return exp.with_updates({"results.dir": out})
    except ValidationError as e:
        raise ConfigError(f"--out: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


@app.command()
def validate(file: Path, override: Overrides = None) -> None:
    """Check an experiment file; print the resolved config."""
    exp = _load(file, override)
    typer.echo(exp.model_dump_json(indent=2))


@app.command()
def sweep(
    file: Path,
    # A str, not a Path: Path("s3://b/x") would silently become "s3:/b/x".
    out: Annotated[str | None, typer.Option(help="results folder (default: results.dir)")] = None,
    resume: Annotated[bool, typer.Option(help="continue this experiment if it exists")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the plan; start nothing")] = False,
    override: Overrides = None,
) -> None:
    """Run an experiment's sweep (grid or Optuna search) on Ray; one Parquet row per trial.

    Exit status: 0 when a trial completed, 1 when none did, 2 for bad input, 130 when
    interrupted, 143 when stopped by SIGTERM (continue with --resume)."""
    exp = _load(file, override, out)
    if dry_run:
        from gtaray.plan import print_plan

        with user_errors(file):
            print_plan(exp)
        return
    from gtaray.lock import SweepLock
    from gtaray.preflight import check_inputs, check_local_resources, check_start, check_trackers
    from gtaray.storage import Store

    again = _resume_command(file, out, override)
    with user_errors(file), interruptible(again):
        check_trackers(exp)
        _check_services(exp)  # before the lock: a store that does not answer holds no lock
        lock = SweepLock(Store.at(exp.results.dir), exp.name)
        lock.refuse_if_held()  # a running sweep is named first, with or without --resume
        check_start(exp, resume)  # a refused overwrite answers before the data is read
        check_local_resources(exp)
        check_inputs(exp)
        from gtaray.sweep import run_sweep

        try:
            with lock.held():
                outcome = run_sweep(exp, resume=resume)
        except ResultsWriteError as e:
            typer.echo(
                f"gtaray: error: {e}; rows written before are intact. "
                f"When the folder is writable again: {again}",
                err=True,
            )
            raise typer.Exit(1) from None
    typer.echo(f"results: {outcome.folder}")
    if outcome.unfinished:
        _interrupted(again, f"{outcome.unfinished} trial(s) unfinished")
    if not outcome.succeeded:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items()))
        typer.echo(
            f"gtaray: no trial completed ({counts}); the error column of "
            f"{outcome.folder}/trials and {outcome.log} say why",
            err=True,
        )
        raise typer.Exit(1)


def _check_services(exp: Experiment) -> None:
    """The results store and the Ray cluster answer, in seconds, before anything starts."""
    from gtaray.services import check_ray_address, check_store

    check_store(exp.results.dir)
    check_ray_address()


def _resume_command(file: Path, out: str | None, overrides: list[str] | None) -> str:
    import shlex

    words = ["gtaray", "sweep", str(file), "--resume"]
    words += ["--out", out] if out is not None else []
    for o in overrides or []:
        words += ["-o", o]
    return shlex.join(words)


def _interrupted(again: str, what: str | None = None) -> None:
    from gtaray.stopping import stop_cause, stop_status

    what = stop_cause() if what is None else f"{stop_cause()}: {what}"
    typer.echo(f"gtaray: {what}; continue with: {again}", err=True)
    raise typer.Exit(stop_status())


@contextmanager
def interruptible(again: str):
    """Ctrl-C or SIGTERM before Tune takes over the signal: exit 130 or 143 with the command
    that resumes."""
    from gtaray.stopping import stop_on_sigterm

    stop_on_sigterm()
    try:
        yield
    except KeyboardInterrupt:
        _interrupted(again)


@app.command()
def train(file: Path, override: Overrides = None) -> None:
    """Run one trial (the experiment's variant and seed) through a TorchTrainer, without Tune.

    The run is named by the config's hash: the same config resumes, a changed one trains anew."""
    exp = _load(file, override)
    from gtaray.preflight import check_inputs, check_local_resources

    with user_errors(file):
        _check_services(exp)
        check_local_resources(exp)
        check_inputs(exp)
        from gtaray.trainer import run_trial

        metrics = run_trial(exp, show_progress=True)
    from gtaray.report import print_metrics

    print_metrics(metrics)
    if metrics.get("diverged"):
        raise typer.Exit(1)


def _check_results_folder(folder: str) -> None:
    """A results location to read: a supported URI, or a local folder that exists."""
    from gtaray.config import check_location, scheme

    try:
        check_location(folder)
    except ValueError as e:
        fail(str(e))
    if scheme(folder) is None and not Path(folder).is_dir():
        fail(f"{folder}: no such results folder")


@app.command()
def report(
    folder: Annotated[str, typer.Argument(help="results folder or URI (s3://, gs://, file://)")] = (
        "results"
    ),
    experiment: Annotated[str | None, typer.Option(help="only this experiment")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or markdown")] = "table",
    select: Annotated[
        str,
        typer.Option(
            help="test mIoU at the last evaluation, or at the best target_val / source_val one"
        ),
    ] = "last",
    plots: Annotated[Path | None, typer.Option(help="write PNG figures into this folder")] = None,
    top: Annotated[int, typer.Option(help="search sweeps: how many best trials to list")] = 5,
) -> None:
    """Paper-style tables from the Parquet results: ablation statistics, per-class IoU, and
    for searches the best trials and parameter importances."""
    if fmt not in ("table", "csv", "markdown"):
        fail(f"--format: must be table, csv or markdown, got {fmt!r}")
    if select not in ("last", "target_val", "source_val"):
        fail(f"--select: must be last, target_val or source_val, got {select!r}")
    if top < 1:
        fail(f"--top: must be >= 1, got {top}")
    _check_results_folder(folder)
    from gtaray.report_run import run_report
    from gtaray.services import check_store

    with user_errors():
        check_store(folder, key=None)
        try:
            run_report(folder, experiment, fmt, select, plots, top)
        except OSError as e:
            fail(f"{folder}: cannot read: {e}")


@app.command()
def status(
    folder: Annotated[str, typer.Argument(help="results folder or URI (s3://, gs://, file://)")] = (
        "results"
    ),
    experiment: Annotated[str | None, typer.Option(help="only this experiment")] = None,
) -> None:
    """Where each experiment stands: trials by status, the best selection metric so far, the
    sweep holding it (and since when), a search's best configuration. Reads only the results."""
    _check_results_folder(folder)
    from gtaray.services import check_store
    from gtaray.status import folder_status, render_status

    with user_errors():
        check_store(folder, key=None)
        try:
            found = folder_status(folder, experiment)
        except OSError as e:
            fail(f"{folder}: cannot read: {e}")
        if not found:
            what = f"experiment {experiment!r}" if experiment else "experiment"
            fail(f"{folder}: no {what} folder (one with experiment.json or trials/)")
        typer.echo(render_status(found), nl=False)


@app.command()
def bench(
    file: Annotated[
        Path | None, typer.Argument(help="experiment to measure (default: built-in)")
    ] = None,
    only: Annotated[
        str, typer.Option(help="comma-separated: data,step,switches,trainer,trial")
    ] = "data,step,switches,trainer,trial",
    quick: Annotated[
        bool, typer.Option("--quick", help="tiny sizes and few steps: under a minute on 2 CPUs")
    ] = False,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="also write the figures to this file")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda")] = None,
    size: Annotated[str | None, typer.Option(help="image size WxH, e.g. 1024x512")] = None,
    width: Annotated[float | None, typer.Option(help="model.width (1.0: paper's)")] = None,
    steps: Annotated[
        int | None, typer.Option(help="timed iterations per measurement (default 10, quick 3)")
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="interleaved measurements per ratio (median and range reported)")
    ] = 3,
    override: Overrides = None,
) -> None:
    """Measure the data, the step (speed, FLOPs, MFU, memory), the fast-path switches, the
    TorchTrainer overhead and per-trial costs into results.dir/bench.json (and --json)."""
    from gtaray.bench import SECTIONS, main

    sections = tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        fail(f"--only: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    steps = steps if steps is not None else (3 if quick else 10)
    if steps < 1:  # zero or negative steps would write meaningless rates
        fail(f"--steps: must be >= 1, got {steps}")
    if repeats < 1:
        fail(f"--repeats: must be >= 1, got {repeats}")
    overrides = list(override or [])
    if device is not None:
        if device not in ("cpu", "cuda"):
            fail(f"--device: cpu or cuda, got {device!r}")
        overrides.append(f"scaling.use_gpu={device == 'cuda'}")
    if size is not None:
        match = re.fullmatch(r"(\d+)x(\d+)", size)
        if not match:
            fail(f"--size: WxH such as 1024x512, got {size!r}")
        overrides += [f"data.width={match[1]}", f"data.height={match[2]}"]
    if width is not None:
        overrides.append(f"model.width={width}")
    if json_file is not None and not json_file.parent.is_dir():
        fail(f"--json: {json_file.parent} is not a folder")
    if file is not None:
        _load(file, overrides)  # validate before anything runs
    with user_errors():
        from gtaray.services import check_cuda, check_ray_address

        if device == "cuda":
            check_cuda("--device cuda")
        if "trainer" in sections or "trial" in sections:  # the sections that start Ray
            check_ray_address()
        main(file, sections, steps, overrides, quick, json_file, repeats)


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="data.root: the folder that holds gta5/ etc.")],
    dataset: Annotated[str, typer.Option(help="gta5, synthia or cityscapes")],
) -> None:
    """Check ROOT/DATASET, the folder an experiment with `data.root: ROOT` reads: its layout
    and every file; exit 2 when it is unusable."""
    if dataset not in ("gta5", "synthia", "cityscapes"):
        fail(f"--dataset: must be gta5, synthia or cityscapes, got {dataset!r}")
    if not (root / dataset).is_dir():
        here = f" (here: {root.parent})" if root.name == dataset else ""
        fail(
            f"{root / dataset}: no such folder; ROOT is data.root, the folder that holds "
            f"{dataset}/{here}"
        )
    from gtaray.data.check import check_dataset

    with user_errors():
        result = check_dataset(root / dataset, dataset)
    for line in result.lines():
        typer.echo(line)
    if not result.usable:
        raise typer.Exit(2)


@analyze_app.command("knn")
def analyze_knn(
    checkpoints: Annotated[list[str], typer.Argument(help="checkpoint folders (paths or URIs)")],
    k: Annotated[int, typer.Option(help="neighbours per target image")] = 10,
    images: Annotated[int, typer.Option(help="validation images per domain")] = 100,
    plots: Annotated[Path | None, typer.Option(help="write knn.png into this folder")] = None,
) -> None:
    """The paper's k-NN study: the fraction of source images among each target image's k
    nearest neighbours in F's feature space (higher = domains better aligned)."""
    if k < 1 or images < 2:
        fail(f"--k must be >= 1 and --images >= 2, got {k} and {images}")
    from gtaray.knn import analyze, print_knn

    results = []
    with user_errors():
        for path in checkpoints:
            try:
                results.append(analyze(path, k, images))
            except (OSError, ValueError, KeyError) as e:
                fail(f"{path}: not a readable gtaray checkpoint ({e!s:.120})")
    print_knn(results)
    if plots is not None:
        from gtaray.plots import plot_knn

        typer.echo(f"plot: {plot_knn(results, plots / 'knn.png')}", err=True)


if __name__ == "__main__":
    app()
