"""`gtaray bench`: the speed figures the README reports, measured on this machine.

    gtaray bench                       # all sections, results/bench.json for --dry-run estimates
    gtaray bench --only step,data      # just train_step and the synthetic data

Sections:
  data     synthetic scenes rendered per second (one core, both styles)
  step     train_step iterations/s per variant, bare PyTorch (no Ray)
  trainer  the same loop inside a TorchTrainer (1 and 2 workers): ratio to bare, eval and
           checkpoint cost
  trial    per-trial fixed cost in a Tune sweep: trial start -> first report, sweep packing
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gtaray.config import VARIANTS, ConfigError, Experiment, load_experiment, scheme
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import make_splits
from gtaray.method import lsd
from gtaray.plan import BENCH_FILE

SECTIONS = ("data", "step", "trainer", "trial")


def bench_data(exp: Experiment, images: int = 100) -> dict[str, float]:
    from gtaray.data.synthetic import render

    torch.set_num_threads(1)
    out = {}
    for style in ("source", "target"):
        render(0, 0, style, exp.data.width, exp.data.height)  # warm caches
        t0 = time.perf_counter()
        for i in range(images):
            render(i, 0, style, exp.data.width, exp.data.height)
        out[style] = images / (time.perf_counter() - t0)
    return out


def step_rate(exp: Experiment, steps: int, warmup: int = 2) -> float:
    """Iterations/s of the training loop body (data + train_step), bare PyTorch, on as many
    threads as one Ray worker gets (Ray sets OMP_NUM_THREADS to the worker's CPUs)."""
    torch.set_num_threads(max(1, int(exp.scaling.cpus_per_worker)))
    torch.manual_seed(exp.train.seed)
    nets = lsd.build(exp)
    opts = lsd.make_optimizers(nets, exp)
    splits = make_splits(exp)
    stream = TripletStream(splits.source_train, splits.target_train, exp.train.batch_size, 0)
    for _ in range(warmup):
        lsd.train_step(nets, opts, next(stream), exp)
    t0 = time.perf_counter()
    for _ in range(steps):
        lsd.train_step(nets, opts, next(stream), exp)
    return steps / (time.perf_counter() - t0)


def bench_step(exp: Experiment, steps: int) -> dict[str, float]:
    return {v: step_rate(exp.with_updates({"method.variant": v}), steps) for v in VARIANTS}


def bench_trainer(exp: Experiment, steps: int, storage: Path) -> dict[str, float]:
    from gtaray.cluster import init_ray
    from gtaray.trainer import fit_trial

    init_ray()
    out: dict[str, float] = {}
    # Two evaluations: the second one's report carries the first checkpoint's cost.
    run = exp.with_updates({"train.iterations": 2 * steps, "train.eval_every": steps})
    out["bare_its"] = step_rate(run, steps)
    for workers in (1, 2):
        scaled = run.with_updates({"scaling.num_workers": workers})
        result = fit_trial(scaled, f"bench-{workers}w-{time.time_ns()}", storage)
        out[f"ray_{workers}w_its"] = float(result.metrics["iters_per_second"])
        out[f"eval_{workers}w_s"] = float(result.metrics["eval_seconds"])
        out[f"checkpoint_{workers}w_s"] = float(result.metrics["checkpoint_seconds"])
    out["ratio_1w"] = out["ray_1w_its"] / out["bare_its"]
    out["samples_ratio_2w_vs_1w"] = 2 * out["ray_2w_its"] / out["ray_1w_its"]
    return out


def bench_trial(exp: Experiment, trials: int, folder: Path) -> dict[str, float]:
    """Start of a trial to its first report, over a grid of tiny trials, and sweep packing."""
    from gtaray.results import load_curves, load_trials
    from gtaray.sweep import run_sweep

    tiny = exp.with_updates(
        {
            "name": f"bench-trial-{time.time_ns()}",
            "results.dir": str(folder),
            "train.iterations": 1,
            "train.eval_every": 1,
            "sweep.mode": "grid",
            "sweep.variants": ["source_only"],
            "sweep.seeds": list(range(trials)),
        }
    )
    t0 = time.perf_counter()
    run_sweep(tiny, show_progress=False)
    wall = time.perf_counter() - t0
    curves = load_curves(folder, tiny.name)
    rows = load_trials(folder, tiny.name)
    first = curves.groupby("trial_id")["time_total_s"].min()
    concurrency = rows.shape[0] and min(2, rows.shape[0])
    return {
        "trial_to_first_report_s": float(first.mean()),
        "trial_to_first_report_max_s": float(first.max()),
        "sweep_wall_s": wall,
        "sum_trial_s": float(rows["wall_seconds"].sum()),
        "packing": wall / (rows["wall_seconds"].sum() / concurrency),
    }


def run(sections: tuple[str, ...], exp: Experiment, steps: int, console: Console) -> dict:
    results: dict = {
        "experiment": exp.name,
        "size": [exp.data.width, exp.data.height],
        "width": exp.model.width,
        "device": exp.scaling.device,  # --dry-run uses figures of the same device only
    }
    if scheme(exp.results.dir):
        raise ConfigError(f"results.dir: gtaray bench writes a local folder, got {exp.results.dir}")
    folder = Path(exp.results.dir).resolve()
    if "data" in sections:
        results["synthetic_images_per_s"] = bench_data(exp)
    if "step" in sections:
        results["iters_per_second"] = bench_step(exp, steps)
    if "trainer" in sections:
        results["trainer"] = bench_trainer(exp, steps, folder / "bench-train")
    if "trial" in sections:
        results["trial"] = bench_trial(exp, 4, folder)
        results["trial_overhead_s"] = results["trial"]["trial_to_first_report_s"]
    path = folder / BENCH_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(previous | results, indent=2))
    show(results, console)
    console.print(f"written: {path}")
    return results


def show(results: dict, console: Console) -> None:
    table = Table(
        title=f"gtaray bench ({results['size'][0]}x{results['size'][1]}, width {results['width']})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in _flatten(results):
        if isinstance(value, float):
            table.add_row(name, "nan" if math.isnan(value) else f"{value:.3g}")
    console.print(table)


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def main(file: Path | None, sections: tuple[str, ...], steps: int, overrides: list[str]) -> dict:
    exp = load_experiment(file or Path(__file__).parent / "bench.yaml", overrides)
    return run(sections, exp, steps, Console())
