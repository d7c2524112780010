"""Where and how a training step runs: the batch stream, device placement, fast-path switches.

    nets, opts, splits, stream = set_up(exp, device, rank, world)   # all of the below, seeded
    place(nets, exp, device)                                     # before the optimizers exist
    stream = training_stream(exp, splits, rank, world, device)   # DataLoader processes if any
    batch = to_device(next(stream), device, exp)                 # uint8 in, expanded there
    compile_nets(nets, exp)                                      # after any DDP wrapping

Shared by the Ray worker loop (gtaray.train) and the bare loop of `gtaray bench`, so that both
measure the same thing. The switches (train.precision, channels_last, compile, fused_adam,
cudnn_benchmark) and their measured effects: docs/benchmarks.md. No Ray here.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
import torch

from gtaray.config import Experiment
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import Splits, make_splits
from gtaray.data.transforms import expand
from gtaray.method import lsd


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Setup(NamedTuple):
    nets: lsd.Nets
    opts: dict
    splits: Splits
    stream: TripletStream


def set_up(exp: Experiment, device: torch.device, rank: int = 0, world: int = 1) -> Setup:
    """One rank's nets on their device, its optimizers, the splits and its share of the
    stream, seeded as every run is: the same initial weights on every rank, then each rank's
    own seed (dropout differs per rank, as in any DDP run). The Ray worker and `gtaray bench`
    both start here, so the loop measured is the loop trained."""
    seed_everything(exp.train.seed)
    nets = lsd.build(exp)
    place(nets, exp, device)
    splits = make_splits(exp)
    stream = training_stream(exp, splits, rank, world, device)
    opts = lsd.make_optimizers(nets, exp)
    seed_everything(exp.train.seed * 1000 + rank)
    return Setup(nets, opts, splits, stream)


def place(nets: lsd.Nets, exp: Experiment, device: torch.device) -> None:
    """Move the nets to the device (channels_last if asked) and set cuDNN's autotuner.
    Before the optimizers exist, so that restored optimizer state lands on the same device."""
    torch.backends.cudnn.benchmark = exp.train.cudnn_benchmark
    for _, net in nets.items():
        net.to(device)
        if exp.train.channels_last:
            net.to(memory_format=torch.channels_last)


def compile_nets(nets: lsd.Nets, exp: Experiment, backend: str = "inductor") -> None:
    """torch.compile every net if asked: the one that trains (through its DDP wrapper, if any)
    and, separately, the plain module its frozen passes call (`Nets.frozen_call`): D inside G's
    update, G and D inside F's, F without gradient. Each role always meets the same
    requires_grad and grad mode, so after the first iteration nothing recompiles; dynamo keeps
    one entry per role on the module's forward."""
    if not exp.train.compile:
        return
    for name, net in nets.items():
        nets.frozen_calls[name] = torch.compile(lsd.unwrap(net), backend=backend)
        setattr(nets, name, torch.compile(net, backend=backend))


def loader_workers(exp: Experiment) -> int:
    """DataLoader processes: as configured, else the worker's CPUs but the one that steps."""
    if exp.train.loader_workers is not None:
        return exp.train.loader_workers
    return max(0, int(exp.scaling.cpus_per_worker) - 1)


def training_stream(
    exp: Experiment, splits: Splits, rank: int, world: int, device: torch.device
) -> TripletStream:
    # target_oracle trains on target labels: its "source" side is the target training set.
    source = splits.target_train if exp.method.variant == "target_oracle" else splits.source_train
    return TripletStream(
        source,
        splits.target_train,
        exp.train.batch_size,
        exp.train.seed,
        rank,
        world,
        workers=loader_workers(exp),
        pin_memory=device.type == "cuda",
        compact=True,
    )


def to_device(batch: dict, device: torch.device, exp: Experiment) -> dict:
    """Copy a batch to the device without blocking the host (pinned memory on GPU); a compact
    batch (uint8 rgb8, label8) becomes image, rgb and label there, in the model's input format."""
    image_format = torch.channels_last if exp.train.channels_last else torch.contiguous_format
    moved = {
        k: v.to(
            device,
            non_blocking=True,
            memory_format=image_format if v.ndim == 4 else torch.preserve_format,
        )
        for k, v in batch.items()
    }
    for prefix in ("src", "tgt"):
        if f"{prefix}_rgb8" in moved:
            rgb8, label8 = moved.pop(f"{prefix}_rgb8"), moved.pop(f"{prefix}_label8")
            image, rgb, label = expand(rgb8, label8, exp.model.input_format)
            moved |= {f"{prefix}_image": image, f"{prefix}_rgb": rgb, f"{prefix}_label": label}
    return moved
