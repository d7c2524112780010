"""Ray Train: the per-worker loop, exact distributed evaluation, checkpoints, one trial.

    gtaray train experiments/smoke.yaml -o method.variant=full     # one trial, no Tune
    run_trial(load_experiment("experiments/smoke.yaml"))           # the same from Python

Every rank runs `train_fn_per_worker`: ordinary PyTorch around `gtaray.method.lsd.train_step`.
The Ray lines are marked `# ray:`. Rank 0 reports the metrics and the model checkpoint; every
rank adds its own RNG and data-stream state to the same checkpoint directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from gtaray.config import Experiment
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import make_splits
from gtaray.evaluate import evaluate, mean_images
from gtaray.method import lsd

# Test-only switch: "RANK:ITERATION:MARKER" makes that rank exit once (marker file = done).
FAIL_ENV = "GTARAY_TEST_FAIL_AT"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    # Only tensors and plain Python values, so checkpoints load with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _batch_to(batch: dict, device: torch.device, channels_last: bool) -> dict:
    image_format = torch.channels_last if channels_last else torch.contiguous_format
    return {
        k: v.to(
            device,
            non_blocking=True,
            memory_format=image_format if v.ndim == 4 else torch.preserve_format,
        )
        for k, v in batch.items()
    }


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True if the flag is set on any rank (so all ranks stop together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _save(folder: Path, nets, opts, stream, metrics: dict, rank: int) -> None:
    if rank == 0:
        torch.save(
            {
                "iteration": int(metrics["iteration"]),
                "best_target_miou": metrics["best_target_miou"],
                "metrics": metrics,
                "nets": {k: lsd.unwrap(v).state_dict() for k, v in nets.items()},
                "opts": {k: v.state_dict() for k, v in opts.items()},
            },
            folder / "state.pt",
        )
    torch.save({"rng": _rng_state(), "stream": stream.state_dict()}, folder / f"rank_{rank}.pt")


def load_checkpoint_file(path: Path) -> dict:
    """A checkpoint file, unpickled safely: tensors and plain values only, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _restore(checkpoint, nets, opts, stream, rank: int) -> tuple[int, float, dict]:
    with checkpoint.as_directory() as folder:
        state = load_checkpoint_file(Path(folder) / "state.pt")
        mine = load_checkpoint_file(Path(folder) / f"rank_{rank}.pt")
    for name, net in nets.items():
        lsd.unwrap(net).load_state_dict(state["nets"][name])
    for name, opt in opts.items():
        opt.load_state_dict(state["opts"][name])
    stream.load_state_dict(mine["stream"])
    _set_rng_state(mine["rng"])
    return state["iteration"], state["best_target_miou"], state["metrics"]


def _maybe_fail(spec: str | None, rank: int, iteration: int) -> None:
    if not spec:
        return
    fail_rank, fail_iteration, marker = spec.split(":", 2)
    if rank == int(fail_rank) and iteration == int(fail_iteration) and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)


def _to_device(nets: lsd.Nets, exp: Experiment, device: torch.device) -> None:
    # Before the optimizers exist, so that restored optimizer state lands on the same device.
    for _, net in nets.items():
        net.to(device)
        if exp.train.channels_last:
            net.to(memory_format=torch.channels_last)


def _wrap(nets: lsd.Nets, exp: Experiment) -> None:
    """Wrap every net for DDP (the one place that does; Ray's helper, a no-op on one rank)."""
    for name, net in nets.items():
        wrapped = ray.train.torch.prepare_model(net, move_to_device=False)  # ray:
        if exp.train.compile:
            wrapped = torch.compile(wrapped)
        setattr(nets, name, wrapped)


def _eval_metrics(nets, splits, exp, device, diverged: bool, means) -> dict[str, float]:
    if diverged:  # the last report; NaN metrics keep Tune's searcher and scheduler informed
        return dict.fromkeys(("target_miou", "target_val_miou", "source_val_miou"), math.nan)
    return evaluate(nets, splits, exp, device, means)


def _report(metrics: dict, nets, opts, stream, rank: int) -> float:
    """Checkpoint every rank's state and report rank 0's metrics; return the seconds it took."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        _save(Path(folder), nets, opts, stream, metrics, rank)
        ray.train.report(  # ray: metrics (rank 0's) + every rank's files in one checkpoint
            metrics, checkpoint=ray.train.Checkpoint.from_directory(folder)
        )
    return time.perf_counter() - t0


def train_fn_per_worker(config: dict[str, Any]) -> None:
    exp = Experiment.model_validate(config["experiment"])
    context = ray.train.get_context()  # ray:
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()  # ray:
    seed_everything(exp.train.seed)  # same initial weights on every rank
    nets = lsd.build(exp)
    _to_device(nets, exp, device)
    opts = lsd.make_optimizers(nets, exp)
    splits = make_splits(exp)
    source = splits.target_train if exp.method.variant == "target_oracle" else splits.source_train
    stream = TripletStream(
        source, splits.target_train, exp.train.batch_size, exp.train.seed, rank, world
    )
    seed_everything(exp.train.seed * 1000 + rank)  # dropout differs per rank, as in any DDP run
    start, best = 0, math.nan
    checkpoint = ray.train.get_checkpoint()  # ray: set after a worker failure or a resume
    if checkpoint:
        start, best, last_metrics = _restore(checkpoint, nets, opts, stream, rank)
        if start >= exp.train.iterations:  # finished before a resume: say so again
            ray.train.report(last_metrics)  # ray:
            return
    _wrap(nets, exp)
    means = mean_images(nets, splits)  # G's baseline in the diagnostics

    sums: dict[str, float] = {}
    steps, train_seconds, checkpoint_seconds = 0, 0.0, math.nan
    queue, posted = config.get("progress_queue"), 0.0
    for iteration in range(start + 1, exp.train.iterations + 1):
        _maybe_fail(config.get("fail_at"), rank, iteration)
        t0 = time.perf_counter()
        losses = lsd.train_step(
            nets, opts, _batch_to(next(stream), device, exp.train.channels_last), exp
        )
        train_seconds += time.perf_counter() - t0
        steps += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        diverged = _any_rank(not all(math.isfinite(v) for v in losses.values()), device)
        if queue is not None and rank == 0 and time.perf_counter() - posted > 1.0:
            queue.put_nowait({"iteration": iteration, "its": steps / train_seconds} | losses)
            posted = time.perf_counter()
        if not diverged and iteration % exp.train.eval_every and iteration != exp.train.iterations:
            continue
        t_eval = time.perf_counter()
        metrics = _eval_metrics(nets, splits, exp, device, diverged, means)
        if not math.isnan(metrics["target_miou"]):
            best = metrics["target_miou"] if math.isnan(best) else max(best, metrics["target_miou"])
        metrics |= {k: v / steps for k, v in sums.items()}
        metrics |= {
            "iteration": float(iteration),
            "best_target_miou": best,
            "iters_per_second": steps / train_seconds,
            "eval_seconds": time.perf_counter() - t_eval,
            "checkpoint_seconds": checkpoint_seconds,  # of the previous report
            "diverged": float(diverged),
            "workers": float(world),
        }
        checkpoint_seconds = _report(metrics, nets, opts, stream, rank)
        if queue is not None and rank == 0:
            queue.put_nowait(metrics)
        sums, steps, train_seconds = {}, 0, 0.0
        if diverged:
            return


def lean_trainer_class() -> type:
    """TorchTrainer without Ray Data's per-run DatasetManager actor.

    gtaray feeds its own data (TripletStream), yet Ray Train 2.60 starts a DatasetManager actor
    for every run, datasets or not: a process start (~2 s on 2 cores) on each trial's critical
    path. This swaps only that callback; with another Ray version it falls back to TorchTrainer.
    """
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.execution.callback import WorkerGroupCallback
    except ImportError:
        return TorchTrainer

    class NoShards:
        def get_dataset_shard(self, dataset_info):
            raise KeyError("gtaray trials take no Ray Datasets")

    class NoDatasetsCallback(WorkerGroupCallback):
        def before_init_train_context(self, workers):
            return {"dataset_shard_provider": [NoShards()] * len(workers)}

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [
                NoDatasetsCallback() if isinstance(cb, DatasetsCallback) else cb
                for cb in super()._create_default_callbacks()
            ]

    return LeanTorchTrainer


def init_ray() -> None:
    """Join the cluster named by RAY_ADDRESS, or start a quiet local Ray with every core."""
    if ray.is_initialized():
        return
    # Set before Ray starts so that its processes inherit them.
    # Reports reach the driver at this poll interval (default 2 s).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180")
    if not os.environ.get("RAY_ADDRESS"):
        # One machine is not preempted; the watcher is one more actor process per trial.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # The dashboard stays on: Train's placement-group cleaner needs it (shared/notes).
    ray.init(
        address=os.environ.get("RAY_ADDRESS"),
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=True,
    )


def fit_trial(
    exp: Experiment,
    name: str,
    storage: str | Path,
    callbacks: list | None = None,
    queue: Any = None,
) -> ray.train.Result:
    """Run one experiment through a TorchTrainer; a run of the same name resumes its checkpoint."""
    trainer = lean_trainer_class()(
        train_fn_per_worker,
        # The failure switch travels with the config: Ray's worker processes may predate it.
        train_loop_config={
            "experiment": exp.model_dump(mode="json"),
            "fail_at": os.environ.get(FAIL_ENV),
            "progress_queue": queue,  # rank 0 sends live progress here (`gtaray train`)
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=exp.scaling.num_workers,
            use_gpu=exp.scaling.use_gpu,
            resources_per_worker={"CPU": exp.scaling.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(Path(storage).resolve()),
            callbacks=callbacks or [],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=exp.train.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=exp.train.max_failures),
        ),
    )
    return trainer.fit()


def run_trial(exp: Experiment, name: str | None = None, show_progress: bool = False) -> dict:
    """One trial without Tune (what `gtaray train` runs); returns the last reported metrics."""
    name = name or f"{exp.name}-{exp.method.variant}-s{exp.train.seed}"
    storage = Path(exp.results.dir).resolve() / exp.name / "train"
    if not show_progress:
        init_ray()
        result = fit_trial(exp, name, storage)
    else:
        from ray.util.queue import Queue
        from rich.console import Console

        from gtaray.progress import TrialProgress, output_to_log

        with (
            output_to_log(storage / f"{name}.log") as terminal,
            TrialProgress(exp.train.iterations, Console(file=terminal)) as progress,
        ):
            init_ray()
            queue = Queue()
            box: dict = {}

            def fit() -> None:
                try:
                    box["result"] = fit_trial(exp, name, storage, queue=queue)
                except BaseException as e:  # re-raised in this thread below
                    box["error"] = e

            thread = threading.Thread(target=fit)
            thread.start()
            while thread.is_alive() or not queue.empty():
                with contextlib.suppress(Empty):
                    progress.update(queue.get(timeout=0.2))
            thread.join()
        if "error" in box:
            raise box["error"]
        result = box["result"]
    metrics = dict(result.metrics or {})
    metrics["checkpoint_path"] = result.checkpoint.path if result.checkpoint else ""
    return metrics
