"""The trial plan of a sweep, known without Ray: what `gtaray sweep --dry-run` prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gtaray.config import GRID_KEYS, ConfigError, Experiment, LogUniform
from gtaray.preflight import check_resources, local_nodes, placeable_workers

BENCH_FILE = "bench.json"  # written by `gtaray bench` into results.dir


@dataclass(frozen=True)
class Plan:
    """What a sweep will run and on what."""

    trials: list[dict[str, Any]]  # grid: the exact trial parameters; search: one per sample
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    total_iterations: int


def plan(exp: Experiment, nodes: list[dict[str, float]] | None = None) -> Plan:
    """Trials, resources per trial and how many fit at once on the nodes (default: this
    machine as a one-node cluster)."""
    sweep, scaling = exp.sweep, exp.scaling
    if sweep.mode == "grid":
        trials = [
            dict(zip(GRID_KEYS, vs, strict=True)) for vs in product(sweep.variants, sweep.seeds)
        ]
    elif sweep.mode == "search":
        seeds = sweep.seed_group or [exp.train.seed]
        trials = [{"sample": i, "seed": s} for i in range(sweep.num_samples) for s in seeds]
    else:  # ablation: a search per variant, then each variant's best on the final seeds
        seeds = sweep.seed_group or [exp.train.seed]
        trials = [
            {"phase": f"search-{v}", "sample": i, "seed": s}
            for v in sweep.variants
            for i in range(sweep.num_samples)
            for s in seeds
        ]
        trials += [
            {"phase": "final", "variant": v, "seed": s}
            for v in sweep.variants
            for s in sweep.final_seeds
        ]
    cpus = scaling.num_workers * scaling.cpus_per_worker
    gpus = scaling.num_workers * scaling.gpu_share
    fits = placeable_workers(exp, local_nodes() if nodes is None else nodes) // scaling.num_workers
    concurrency = min(sweep.max_concurrent or fits, fits, len(trials))
    return Plan(trials, cpus, gpus, concurrency, len(trials) * exp.train.iterations)


def _bench(exp: Experiment) -> dict | None:
    path = Path(exp.results.dir) / BENCH_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def estimate_seconds(exp: Experiment, p: Plan) -> tuple[float, float] | None:
    """(wall seconds, worker-hours) from `gtaray bench` figures, or None without them."""
    bench = _bench(exp)
    # Figures only transfer to the same image size, width and device.
    device = exp.scaling.device
    same = bench and bench.get("size") == [exp.data.width, exp.data.height]
    if not same or bench.get("width") != exp.model.width or bench.get("device", "cpu") != device:
        return None
    rates = bench.get("iters_per_second", {})
    overhead = float(bench.get("trial_overhead_s", 0.0))
    per_trial = []
    for t in p.trials:
        variant = t.get("method.variant", exp.method.variant)
        rate = rates.get(variant) or (sum(rates.values()) / len(rates) if rates else None)
        if not rate:
            return None
        per_trial.append(overhead + exp.train.iterations / rate)
    worker_hours = sum(per_trial) * exp.scaling.num_workers / 3600
    return sum(per_trial) / p.concurrency, worker_hours


def print_plan(exp: Experiment, console: Console | None = None) -> Plan:
    """Print the plan, and whether this machine can run its trials (a plan for a GPU cluster
    is often made on a laptop)."""
    console = console or Console()
    p = plan(exp)
    s = exp.sweep
    table = Table(title=f"{exp.name}: {len(p.trials)} trials ({s.mode})")
    if s.mode == "grid":
        table.add_column("trial", justify="right")
        for key in GRID_KEYS:
            table.add_column(key)
        for i, t in enumerate(p.trials):
            table.add_row(str(i), *(str(t[key]) for key in GRID_KEYS))
    else:
        table.add_column("parameter")
        table.add_column("sampled from")
        for key, value in s.space.searched().items():
            if isinstance(value, LogUniform):
                table.add_row(key, f"log-uniform [{value.low:g}, {value.high:g}]")
            else:
                table.add_row(key, "one of " + ", ".join(map(str, value)))
        per = " per variant" if s.mode == "ablation" else ""
        table.add_row("sampler", f"Optuna TPE, seed {exp.train.seed}, {s.num_samples} samples{per}")
        if s.mode == "ablation":
            table.add_row("variants", ", ".join(s.variants) + f" (each tuned on {s.metric})")
            table.add_row("final", f"each variant's best on seeds {list(s.final_seeds)}")
        if s.seed_group:
            table.add_row("seeds", f"each sample runs as a group: seeds {s.seed_group}")
        if s.scheduler in ("asha", "seed_asha"):
            on = f"each group's {s.rung_statistic} of " if s.scheduler == "seed_asha" else ""
            table.add_row(
                "scheduler",
                f"{'seed-aware ASHA' if on else 'ASHA'} on {on}{s.metric}: grace "
                f"{s.grace_period} iterations, reduction factor {s.reduction_factor}",
            )
    console.print(table)
    console.print(
        f"per trial: {exp.scaling.num_workers} worker(s) x {exp.scaling.cpus_per_worker:g} CPU"
        + (f", {exp.scaling.gpu_share:g} GPU each" if exp.scaling.use_gpu else "")
        + f" | concurrency here: {p.concurrency} | total iterations: {p.total_iterations}"
        + f" | selection metric: {s.metric}"
    )
    try:
        check_resources(exp, local_nodes(), where="this machine")
    except ConfigError as e:
        console.print(f"not runnable here: {e} (a cluster with these resources can run it)")
    estimate = estimate_seconds(exp, p)
    if estimate is None:
        console.print(
            "estimate: no bench figures for this size, width and device "
            "(run `gtaray bench FILE --only step,trial` with this file)"
        )
    else:
        console.print(f"estimate: ~{estimate[0] / 60:.1f} min wall, {estimate[1]:.2f} worker-hours")
    return p
