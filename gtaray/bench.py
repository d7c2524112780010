"""`gtaray bench`: the speed figures the README and docs/benchmarks.md report, measured here.

    gtaray bench --quick --json bench.json          # every section, small, under a minute on 2 CPUs
    gtaray bench --device cuda --size 1024x512 --width 1.0 --only step,switches
    gtaray bench FILE --only step,trial             # figures for FILE's `--dry-run` estimate

Sections (side by side in one run; a rich table, and JSON into results.dir/bench.json and --json):
  data      synthetic scenes rendered per second (one core, both styles)
  step      the bare training loop (stream, copy to device, lsd.step; no Ray) per variant:
            iterations/s, FLOPs per iteration (torch.utils.flop_counter), achieved TFLOP/s, MFU
            against the GPU's bf16 dense peak (PEAK_TFLOPS), peak memory
  switches  the `full` step under each fast-path switch alone and all together, against fp32
            eager: speed-up and how far the first step's losses move
  trainer   the same loop in a 1-worker TorchTrainer (ray_over_bare_ratio) and with 2 workers
  trial     per-trial fixed cost in a Tune sweep (trial start -> first report) and packing

Every ratio (switches' `speedup`, trainer's `ray_over_bare_ratio` and
`two_over_one_worker_samples_ratio`) is measured `--repeats` times, interleaved with what it is
compared with, and reported as its median under the old key, plus `<key>_spread`: {median, low,
high, values} (low/high: the smallest and largest of the per-repeat ratios in `values`). The
speeds they come from are medians too, with their per-repeat `<key>_values`.
"""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from gtaray.config import VARIANTS, ConfigError, Experiment, load_experiment, scheme
from gtaray.method import lsd
from gtaray.plan import BENCH_FILE
from gtaray.ratios import interleaved, ratios, spread
from gtaray.runtime import compile_nets, set_up, to_device

SECTIONS = ("data", "step", "switches", "trainer", "trial")
REPEATS = 3  # default --repeats: measurements per ratio
# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, no sparsity), by a substring of
# torch.cuda.get_device_name(); the first match wins, so longer names come first.
PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "V100": 125.0,  # fp16: V100 has no bf16
    "T4": 65.0,  # fp16
}
SWITCHES = {
    "bf16": {"train.precision": "bf16"},
    "channels_last": {"train.channels_last": True},
    "compile": {"train.compile": True},
    "fused_adam": {"train.fused_adam": True},
    "cudnn_benchmark": {"train.cudnn_benchmark": True},
}
SWITCHES_ALL = {k: v for s in SWITCHES.values() for k, v in s.items()}
QUICK = {  # --quick: tiny images and nets, few steps
    "data.width": 64,
    "data.height": 32,
    "data.source_train": 16,
    "data.target_train": 16,
    "data.source_val": 4,
    "data.target_val": 4,
    "data.target_test": 8,
    "model.width": 0.0625,
}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Loop:
    """The bare training loop of one experiment: what a Ray worker runs, without Ray."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.device = torch.device(exp.scaling.device)
        if self.device.type == "cpu":  # as many threads as one Ray worker gets
            torch.set_num_threads(max(1, int(exp.scaling.cpus_per_worker)))
        self.nets, self.opts, _, self.stream = set_up(exp, self.device)
        compile_nets(self.nets, exp)

    def batch(self) -> dict:
        return to_device(next(self.stream), self.device, self.exp)

    def step(self) -> dict[str, torch.Tensor]:
        return lsd.step(self.nets, self.opts, self.batch(), self.exp)

    def rate(self, steps: int) -> float:
        """Iterations/s over `steps` steps (the device's time: synced at both ends only).
        Process-wide settings are this loop's again first: loops measured in turn share them."""
        torch.backends.cudnn.benchmark = self.exp.train.cudnn_benchmark
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(self.exp.scaling.cpus_per_worker)))
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.device)
        return steps / (time.perf_counter() - t0)

    def flops(self) -> int:
        """FLOPs of one iteration, forward and backward of every update (counted, eager)."""
        counter = FlopCounterMode(display=False)
        with counter:
            self.step()
        return int(counter.get_total_flops())

    def close(self) -> None:
        self.stream.close()


def bench_data(exp: Experiment, images: int) -> dict[str, float]:
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


def bench_step(exp: Experiment, steps: int, warmup: int) -> dict[str, dict]:
    device = torch.device(exp.scaling.device)
    peak = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    figures = ("iters_per_second", "flops_per_iteration", "tflops_per_second", "mfu")
    out: dict[str, dict] = {k: {} for k in (*figures, "peak_memory_bytes")}
    for variant in VARIANTS:
        loop = Loop(exp.with_updates({"method.variant": variant}))
        try:
            for _ in range(warmup):
                loop.step()
            flops = loop.flops()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rate = loop.rate(steps)
        finally:
            loop.close()
        achieved = flops * rate / 1e12
        out["iters_per_second"][variant] = rate
        out["flops_per_iteration"][variant] = flops
        out["tflops_per_second"][variant] = achieved
        out["mfu"][variant] = achieved / peak if peak else None
        out["peak_memory_bytes"][variant] = (
            torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss()
        )
    out["peak_tflops"] = peak
    out["memory_measure"] = "max_memory_allocated" if device.type == "cuda" else "process peak RSS"
    return out


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def first_losses(exp: Experiment) -> dict[str, float]:
    """The loss terms of a fresh run's first step, without dropout (which a switch such as
    channels_last changes: masks are drawn in memory order), so only arithmetic differs."""
    loop = Loop(exp.with_updates({"model.dropout": 0.0}))
    try:
        return {k: float(v) for k, v in loop.step().items()}
    finally:
        loop.close()


def loss_drift(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest relative difference between two steps' loss terms."""
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a)


def _warm(loop: Loop, steps: int) -> float:
    """Seconds of `steps` first steps (torch.compile compiles here)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        loop.step()
    _sync(loop.device)
    return time.perf_counter() - t0


def bench_switches(
    exp: Experiment, steps: int, warmup: int, quick: bool, repeats: int = REPEATS
) -> dict[str, dict]:
    """The `full` step under each switch, against fp32 eager (everything off). --quick leaves
    out torch.compile (its compilation alone takes about a minute on 2 CPUs).

    Interleaved: the fp32 eager loop is built and warmed once and stays; each switch's loop is
    built and warmed, then the two are timed in turn (fp32 eager, switch, fp32 eager, ...),
    `repeats` pairs of `steps` steps. `speedup` is the median of the pairs' ratios, with its
    `speedup_spread`, `iters_per_second_values` (the switch's) and `fp32_eager_its_values` (the
    baseline's next to them). At most two loops are alive at a time (memory: twice one loop).
    fp32 eager's own `iters_per_second` is the median of all its measurements; its speedup is
    1 by definition, and its loss_drift (a second fresh run against the first) the noise floor
    of the others'.
    """
    base = exp.with_updates(
        {"method.variant": "full"} | {k: False for k in SWITCHES_ALL} | {"train.precision": "fp32"}
    )
    switches = {k: v for k, v in SWITCHES.items() if not (quick and k == "compile")}
    together = {k: v for s in switches.values() for k, v in s.items()}
    reference = first_losses(base)
    out: dict[str, dict] = {"fp32_eager": {}}
    baseline = Loop(base)
    base_values: list[float] = []
    try:
        out["fp32_eager"]["warmup_s"] = _warm(baseline, warmup)
        for name, updates in (switches | {"all": together}).items():
            run = base.with_updates(updates)
            loop = Loop(run)
            try:
                warm = _warm(loop, warmup)
                pairs = interleaved(
                    lambda: baseline.rate(steps), lambda lp=loop: lp.rate(steps), repeats
                )
            finally:
                loop.close()
            base_values += pairs["a"]
            # torch.compile's drift is tested on CPU (tests/test_fast_paths.py): compiling a
            # second time here would double the section's time for one number.
            drift = math.nan if run.train.compile else loss_drift(reference, first_losses(run))
            out[name] = {
                "iters_per_second": spread(pairs["b"])["median"],
                "iters_per_second_values": pairs["b"],
                "fp32_eager_its_values": pairs["a"],
                "warmup_s": warm,
                "loss_drift": drift,
                "speedup": pairs["median"],
                "speedup_spread": {k: pairs[k] for k in ("median", "low", "high", "values")},
            }
        if not base_values:  # no switch at all: still a rate for the baseline
            base_values = [baseline.rate(steps) for _ in range(repeats)]
    finally:
        baseline.close()
    out["fp32_eager"] |= {
        "iters_per_second": spread(base_values)["median"],
        "iters_per_second_values": base_values,
        "loss_drift": loss_drift(reference, first_losses(base)),
        "speedup": 1.0,
    }
    return out


def _windows(result, steps: int) -> list[dict]:
    """The metrics of every evaluation window of a fit after its first (warm-up) window, in
    order. Ray keeps the metrics of the checkpoints it keeps (train.num_to_keep)."""
    frame = result.metrics_dataframe
    rows = [] if frame is None else frame.sort_values("iteration").to_dict("records")
    timed = [r for r in rows if r["iteration"] > steps]
    return timed or [result.metrics]


def bench_trainer(
    exp: Experiment, steps: int, storage: Path, repeats: int = REPEATS
) -> dict[str, float | list | dict]:
    """The bare loop against the same loop in a 1-worker and a 2-worker TorchTrainer.

    A TorchTrainer start costs ~10-20 s on 2 CPUs, a window of `steps` steps a fraction of a
    second; so a fit's repeats are its evaluation windows, and the bare loop is timed between
    the fits:

        bare x repeats | fit 1 worker: warm-up window + repeats windows | bare x repeats |
        fit 2 workers: warm-up window + repeats windows

    Each window is `steps` iterations (eval_every), timed by the worker itself
    (`iters_per_second`: from the window's first step to its report's sync, evaluation and
    checkpoint excluded); the first window (allocations, first-step costs) is left out, every
    later one kept (num_to_keep). One bare Loop, warmed once, serves both bare blocks.

    ray_over_bare_ratio, per repeat i: window i of the 1-worker fit over the mean of bare
    measurement i before and after that fit (a drift over the fit cancels to first order).
    two_over_one_worker_samples_ratio, per repeat i: 2 x window i of the 2-worker fit over
    window i of the 1-worker fit (the two fits follow each other: not interleaved, which would
    cost a fit per repeat). Medians under the keys, `<key>_spread` and `<key>_values` beside.
    `--quick` costs the same two fits as before plus 2 x repeats short windows.
    """
    from gtaray.cluster import init_ray
    from gtaray.trainer import fit_trial

    init_ray()
    run = exp.with_updates(
        {
            "train.iterations": (1 + repeats) * steps,
            "train.eval_every": steps,
            "train.num_to_keep": max(exp.train.num_to_keep, 1 + repeats),
        }
    )
    bare = Loop(run)
    try:
        _warm(bare, 2)
        bare_values = [[bare.rate(steps) for _ in range(repeats)]]
        windows = {}
        for workers in (1, 2):
            if bare.device.type == "cuda":
                torch.cuda.empty_cache()  # leave the device to the trial's worker
            scaled = run.with_updates({"scaling.num_workers": workers})
            result = fit_trial(scaled, f"bench-{workers}w-{time.time_ns()}", storage)
            windows[workers] = _windows(result, steps)
            if workers == 1:
                bare_values.append([bare.rate(steps) for _ in range(repeats)])
    finally:
        bare.close()
    out: dict = {}
    flat = bare_values[0] + bare_values[1]
    out["bare_its"] = spread(flat)["median"]
    out["bare_its_values"] = flat
    for workers, rows in windows.items():
        its = [float(r["iters_per_second"]) for r in rows]
        out[f"ray_{workers}w_its"] = spread(its)["median"]
        out[f"ray_{workers}w_its_values"] = its
        for key, name in (
            (f"data_wait_{workers}w", "data_wait_fraction"),
            (f"eval_{workers}w_s", "eval_seconds"),
            (f"checkpoint_{workers}w_s", "checkpoint_seconds"),
        ):
            out[key] = spread([float(r[name]) for r in rows])["median"]
    one, two = out["ray_1w_its_values"], out["ray_2w_its_values"]
    brackets = [(a + b) / 2 for a, b in zip(*bare_values, strict=True)]
    m, n = min(len(one), len(brackets)), min(len(one), len(two))
    ray_over_bare = spread(ratios(one[:m], brackets[:m]))
    out["ray_over_bare_ratio"] = ray_over_bare["median"]
    out["ray_over_bare_ratio_spread"] = ray_over_bare
    # Samples per second with 2 workers over 1 (each worker steps its own batch).
    two_over_one = spread(ratios([2 * x for x in two[:n]], one[:n]))
    out["two_over_one_worker_samples_ratio"] = two_over_one["median"]
    out["two_over_one_worker_samples_ratio_spread"] = two_over_one
    out["repeats"] = repeats
    out["steps_per_window"] = steps
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
    # From Tune starting the trial (its actor placed) to the row of its first report.
    first = curves.groupby("trial_id")["seconds_since_trial_start"].min()
    concurrency = rows.shape[0] and min(2, rows.shape[0])
    return {
        "trial_to_first_report_s": float(first.mean()),
        "trial_to_first_report_max_s": float(first.max()),
        "sweep_wall_s": wall,
        "sum_trial_s": float(rows["wall_seconds"].sum()),
        # 1.0: the sweep took as long as its trials, `concurrency` at a time, back to back.
        "packing": wall / (rows["wall_seconds"].sum() / concurrency),
    }


def _about(exp: Experiment) -> dict:
    device = torch.device(exp.scaling.device)
    return {
        "experiment": exp.name,
        "size": [exp.data.width, exp.data.height],
        "width": exp.model.width,
        "batch_size": exp.train.batch_size,
        "device": exp.scaling.device,  # --dry-run uses figures of the same device only
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpus_per_worker": exp.scaling.cpus_per_worker,
        "torch": torch.__version__,
    }


def run(
    sections: tuple[str, ...],
    exp: Experiment,
    steps: int,
    console: Console,
    quick: bool = False,
    json_file: Path | None = None,
    repeats: int = REPEATS,
) -> dict:
    if repeats < 1:
        raise ConfigError(f"repeats: must be >= 1, got {repeats}")
    if scheme(exp.results.dir):
        raise ConfigError(f"results.dir: gtaray bench writes a local folder, got {exp.results.dir}")
    folder = Path(exp.results.dir).resolve()
    warmup = 1 if quick else 2
    results: dict = _about(exp) | {"repeats": repeats}
    t0 = time.perf_counter()
    if "data" in sections:
        results["synthetic_images_per_s"] = bench_data(exp, 10 if quick else 100)
    if "step" in sections:
        results["step"] = bench_step(exp, steps, warmup)
        results["iters_per_second"] = results["step"]["iters_per_second"]  # for --dry-run
    if "switches" in sections:
        results["switches"] = bench_switches(exp, steps, warmup, quick, repeats)
    if "trainer" in sections:
        results["trainer"] = bench_trainer(exp, steps, folder / "bench-train", repeats)
        results["ray_over_bare_ratio"] = results["trainer"]["ray_over_bare_ratio"]
    if "trial" in sections:
        results["trial"] = bench_trial(exp, 2 if quick else 4, folder)
        results["trial_overhead_s"] = results["trial"]["trial_to_first_report_s"]
    results["bench_seconds"] = time.perf_counter() - t0
    path = folder / BENCH_FILE
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(previous | results, indent=2))
    if json_file is not None:
        json_file.write_text(json.dumps(results, indent=2))
    show(results, console)
    console.print(f"written: {path}" + (f" and {json_file}" if json_file else ""))
    return results


def show(results: dict, console: Console) -> None:
    about = f"{results['size'][0]}x{results['size'][1]}, width {results['width']}"
    table = Table(title=f"gtaray bench ({about}, {results['device_name']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    shown = {"iters_per_second", "ray_over_bare_ratio", "trial_overhead_s"}  # repeated
    flat = dict(_flatten({k: v for k, v in results.items() if k not in shown}))
    for name, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # lists of per-repeat values, spreads (shown with their median), text
        text = f"{value:.3e}" if isinstance(value, int) and value >= 1e6 else _fmt(value)
        if isinstance(ranged := flat.get(f"{name}_spread"), dict):  # median [low, high]
            text = f"{text} [{_fmt(ranged['low'])}, {_fmt(ranged['high'])}]"
        table.add_row(name, text)
    console.print(table)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3g}"


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and not key.endswith("_spread"):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def main(
    file: Path | None,
    sections: tuple[str, ...],
    steps: int,
    overrides: list[str],
    quick: bool = False,
    json_file: Path | None = None,
    repeats: int = REPEATS,
) -> dict:
    defaults = [f"{k}={v}" for k, v in QUICK.items()] if quick else []
    exp = load_experiment(file or Path(__file__).parent / "bench.yaml", defaults + overrides)
    return run(sections, exp, steps, Console(), quick, json_file, repeats)
