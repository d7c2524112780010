"""Where one paper-size `full` iteration spends its time on a GPU: step rate with the DataLoader
and on one fixed batch, GPU-busy time and fraction, kernels per step, time per kernel category
and the top kernels (torch.profiler over PROFILED steps on one batch).

    python benchmarks/profile_step.py OUT_DIR [fp32|bf16_cl|fast ...]

GPU time, per step, in profile.json (the arithmetic is in gtaray/gpu_time.py, unit-tested):
  gpu_busy_s        union of the device's kernel/memcpy/memset intervals from the trace's
                    timeline (overlapping streams count once; CPU rows are not read: they repeat
                    their kernels' time)
  gpu_kernel_sum_s  plain sum of kernel durations (kernels only; >= busy when streams overlap)
  gpu_event_wall_s  CUDA events recorded before the first and after the last profiled step:
                    the GPU's wall time, idle gaps included
  gpu_busy_fraction gpu_busy_s / profiled_wall_s (host wall time per step)
  kernels_per_step, gpu_by_category_s (copy, norm, optimizer, convolution, other: see
  gtaray.gpu_time.CATEGORIES), top_kernels
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from gtaray.bench import Loop
from gtaray.config import load_experiment
from gtaray.gpu_time import gpu_summary, spans_from_profiler
from gtaray.method import lsd

PROFILED = 3  # steps under the profiler
BASE = [
    "data.width=1024", "data.height=512", "model.width=1.0", "train.batch_size=1",
    "scaling.use_gpu=true", "method.variant=full",
]  # fmt: skip
CONFIGS = {
    "fp32": [],
    "bf16_cl": ["train.precision=bf16", "train.channels_last=true"],
    "fast": ["train.precision=bf16", "train.channels_last=true", "train.fused_adam=true",
             "train.cudnn_benchmark=true"],
}  # fmt: skip


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, steps: int) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return steps / (time.perf_counter() - t0)


def profiled(step, steps: int = PROFILED) -> tuple[dict, profile]:
    """Run `step` `steps` times under torch.profiler (and between two CUDA events when a GPU is
    there); GPU figures per step, from the trace's device timeline."""
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2)) if cuda else (None, None)
    sync()
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        if cuda:
            start.record()
        for _ in range(steps):
            step()
        if cuda:
            end.record()
        sync()
        wall = (time.perf_counter() - t0) / steps
    gpu = gpu_summary(spans_from_profiler(prof), steps)
    busy = gpu["busy_us"] / 1e6
    figures = {
        "profiled_steps": steps,
        "profiled_wall_s": wall,
        "gpu_busy_s": busy,
        "gpu_kernel_sum_s": gpu["kernel_sum_us"] / 1e6,
        "gpu_event_wall_s": start.elapsed_time(end) / 1e3 / steps if cuda else None,
        "gpu_busy_fraction": busy / wall if wall > 0 else None,
        "kernels_per_step": gpu["kernels"],
        "gpu_by_category_s": {k: v / 1e6 for k, v in gpu["by_category_us"].items()},
        "top_kernels": [
            {"name": k["name"], "s": k["us"] / 1e6, "calls": k["calls"], "category": k["category"]}
            for k in gpu["top"]
        ],
    }
    return figures, prof


def main(out: Path, names: list[str]) -> None:
    cpus = os.cpu_count() or 2
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name in names:
        exp = load_experiment(
            Path("gtaray/bench.yaml"), BASE + [f"scaling.cpus_per_worker={cpus}"] + CONFIGS[name]
        )
        loop = Loop(exp)
        for _ in range(3):
            loop.step()
        with_loader = timed(loop.step, 20)
        batch = loop.batch()
        fixed = timed(lambda b=batch, e=exp, lp=loop: lsd.step(lp.nets, lp.opts, b, e), 20)
        figures, prof = profiled(lambda b=batch, e=exp, lp=loop: lsd.step(lp.nets, lp.opts, b, e))
        summary[name] = {"its_loader": with_loader, "its_fixed_batch": fixed} | figures
        # The table's rows are per op and per kernel (its totals would count kernels twice).
        table = prof.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60
        )
        (out / f"profile-{name}.txt").write_text(table)
        print(name, {k: v for k, v in summary[name].items() if k != "top_kernels"}, flush=True)
        loop.close()
    (out / "profile.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or list(CONFIGS))
