"""Where one paper-size `full` iteration spends its time on a GPU: step rate with the DataLoader
and on one fixed batch, GPU-busy fraction, and the top kernels (torch.profiler).

    python benchmarks/profile_step.py OUT_DIR [fp32|bf16_cl|fast ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from gtaray.bench import Loop
from gtaray.config import load_experiment
from gtaray.method import lsd

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


def main(out: Path, names: list[str]) -> None:
    import os

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
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            for _ in range(3):
                lsd.step(loop.nets, loop.opts, batch, exp)
            sync()
            wall = (time.perf_counter() - t0) / 3
        events = prof.key_averages()
        gpu = sum(e.self_device_time_total for e in events) / 3 / 1e6
        summary[name] = {"its_loader": with_loader, "its_fixed_batch": fixed,
                         "profiled_wall_s": wall, "gpu_busy_s": gpu}  # fmt: skip
        table = events.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60)
        (out / f"profile-{name}.txt").write_text(table)
        print(name, summary[name], flush=True)
        loop.close()
    (out / "profile.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or list(CONFIGS))
