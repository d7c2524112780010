"""The per-worker training loop that every Ray Train rank runs.

    gtaray train experiments/smoke.yaml -o method.variant=full     # one trial, no Tune
    run_trial(load_experiment("experiments/smoke.yaml"))           # gtaray.trainer, from Python

`train_fn_per_worker` is ordinary PyTorch around `gtaray.method.lsd.train_step`: set up, step,
evaluate and report. The Ray lines are marked `# ray:`. Rank 0 reports the metrics; every rank
adds its own RNG and data-stream state to the same checkpoint (gtaray.checkpoint).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from gtaray import checkpoint
from gtaray.config import Experiment
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import Splits
from gtaray.evaluate import evaluate, mean_images
from gtaray.method import lsd
from gtaray.runtime import compile_nets, set_up, to_device
from gtaray.samples import save_grid

# Called as hook(rank, iteration) before every step: how tests inject faults into a worker.
StepHook = Callable[[int, int], None]
NAN_METRICS = ("target_miou", "target_val_miou", "source_val_miou")


@dataclass
class Worker:
    """One rank's training state."""

    exp: Experiment
    rank: int
    world: int
    device: torch.device
    nets: lsd.Nets
    opts: dict
    splits: Splits
    stream: TripletStream
    start: int = 0  # the last iteration already done (a restored checkpoint's)
    means: Any = None  # per-domain mean images: G's baseline in the diagnostics
    checkpoint_seconds: float = math.nan  # the previous report's, reported with the next


@dataclass
class Window:
    """Losses and timings since the last report. Losses stay on the device and are summed
    there: nothing in a step waits for the GPU; `close` reads them once per report."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    last: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    data_seconds: float = 0.0  # waiting for the next batch (the loader's lag behind compute)
    started: float = field(default_factory=time.perf_counter)

    def add(self, losses: dict[str, torch.Tensor], data_seconds: float) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.last = losses
        self.steps += 1
        self.data_seconds += data_seconds

    def close(self) -> dict[str, float]:
        """Mean losses and rates of the window (the one host sync per report)."""
        names = list(self.sums)
        values = torch.stack([self.sums[k].float() for k in names]).tolist() if names else []
        seconds = time.perf_counter() - self.started  # after the sync: the device's real time
        out = {k: v / self.steps for k, v in zip(names, values, strict=True)}
        out["iters_per_second"] = self.steps / seconds if seconds > 0 else math.nan
        out["data_wait_fraction"] = self.data_seconds / seconds if seconds > 0 else math.nan
        return out

    def latest(self) -> dict[str, float]:
        """The last step's losses as floats (a sync: for the live display, at most once a
        second)."""
        seconds = time.perf_counter() - self.started
        return {"its": self.steps / seconds} | {k: float(v) for k, v in self.last.items()}


def _setup(exp: Experiment) -> Worker:
    context = ray.train.get_context()  # ray:
    device = ray.train.torch.get_device()  # ray:
    rank, world = context.get_world_rank(), context.get_world_size()
    nets, opts, splits, stream = set_up(exp, device, rank, world)
    return Worker(exp, rank, world, device, nets, opts, splits, stream)


def _restore(w: Worker) -> None:
    """Continue from Ray's checkpoint (after a worker failure or a resume), and report its
    metrics again: a stop between checkpoint and report (Ctrl-C) must not lose a curve point,
    and a finished run must say so again. Reporting an evaluation twice is harmless."""
    saved = ray.train.get_checkpoint()  # ray:
    if not saved:
        return
    with saved.as_directory() as folder:
        w.start, metrics = checkpoint.restore(Path(folder), w.nets, w.opts, w.stream, w.rank)
    ray.train.report(metrics)  # ray:


def _wrap(nets: lsd.Nets, exp: Experiment) -> None:
    """Wrap every net for DDP (the one place that does; Ray's helper, a no-op on one rank)."""
    for name, net in nets.items():
        setattr(nets, name, ray.train.torch.prepare_model(net, move_to_device=False))  # ray:
    compile_nets(nets, exp)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True if the flag is set on any rank (so all ranks stop together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _step(w: Worker, window: Window) -> None:
    """One D -> G -> F iteration, queued on the device (no host sync)."""
    t0 = time.perf_counter()
    batch = to_device(next(w.stream), w.device, w.exp)
    waited = time.perf_counter() - t0
    window.add(lsd.step(w.nets, w.opts, batch, w.exp), waited)


def _evaluate_and_report(w: Worker, iteration: int, window: Window) -> dict:
    """Close the window, evaluate, report (with a checkpoint unless any rank's losses went
    non-finite since the last report); the metrics say whether the run diverged."""
    metrics = window.close()
    diverged = _any_rank(not all(math.isfinite(v) for v in metrics.values()), w.device)
    t0 = time.perf_counter()
    if diverged:  # NaN metrics keep Tune's searcher and scheduler informed
        metrics |= dict.fromkeys(NAN_METRICS, math.nan)
    else:
        metrics |= evaluate(w.nets, w.splits, w.exp, w.device, w.means)
    metrics |= {
        "iteration": float(iteration),
        "eval_seconds": time.perf_counter() - t0,
        "checkpoint_seconds": w.checkpoint_seconds,
        "diverged": float(diverged),
        "workers": float(w.world),
        "device": str(w.device),  # what the worker trained on, and how ranks reduced
        "backend": dist.get_backend() if dist.is_initialized() else "none",
        "node_id": ray.get_runtime_context().get_node_id(),  # ray: rank 0's node, for the row
    }
    if diverged:  # no checkpoint: the latest one keeps the last finite weights
        ray.train.report(metrics)  # ray:
        return metrics
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.save(Path(folder), w.nets, w.opts, w.stream, metrics, w.rank, w.exp)
        ray.train.report(  # ray: rank 0's metrics + every rank's files in one checkpoint
            metrics, checkpoint=ray.train.Checkpoint.from_directory(folder)
        )
    w.checkpoint_seconds = time.perf_counter() - t0
    return metrics


def train_fn_per_worker(config: dict[str, Any]) -> None:
    exp = Experiment.model_validate(config["experiment"])
    hook: StepHook | None = config.get("step_hook")
    progress = config.get("progress_queue")  # `gtaray train`: rank 0 posts live progress
    w = _setup(exp)
    _restore(w)
    if w.start >= exp.train.iterations:  # finished before a resume; reported again above
        return
    _wrap(w.nets, exp)
    w.means = mean_images(w.nets, w.splits)
    try:
        _train(w, hook, progress)
    finally:
        w.stream.close()  # the DataLoader's processes, if any


def _train(w: Worker, hook: StepHook | None, progress: Any) -> None:
    exp = w.exp
    window, posted = Window(), time.perf_counter()
    for iteration in range(w.start + 1, exp.train.iterations + 1):
        if hook is not None:
            hook(w.rank, iteration)
        lsd.schedule_lr_f(w.opts.f, exp, iteration)
        _step(w, window)
        last = iteration == exp.train.iterations
        if not (last or iteration % exp.train.eval_every == 0):
            if progress is not None and w.rank == 0 and time.perf_counter() - posted > 1.0:
                progress.put_nowait({"iteration": iteration} | window.latest())
                posted = time.perf_counter()
            continue
        metrics = _evaluate_and_report(w, iteration, window)
        if progress is not None and w.rank == 0:
            progress.put_nowait(metrics)
        if metrics["diverged"]:
            return
        if last and w.rank == 0:  # a picture of what the trial learned
            run = ray.train.get_context().get_experiment_name()  # ray:
            save_grid(w.nets, w.splits, exp, w.device, run)
        window = Window()
