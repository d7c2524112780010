"""The checkpoint format: one folder per report, written by every rank, loaded without code.

    <checkpoint>/state.pt      rank 0: the experiment, iteration, metrics, every net's and
                               optimizer's state
    <checkpoint>/rank_<r>.pt   each rank: its RNG states and its data stream's position

Files hold tensors and plain Python values only, so they load with `weights_only=True`: a
tampered checkpoint cannot run code.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from gtaray.config import Experiment
from gtaray.method import lsd


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, nets, opts, stream, metrics: dict, rank: int, exp: Experiment) -> None:
    """Write this rank's part of a checkpoint into folder (rank 0's includes the experiment,
    so a checkpoint can be analysed on its own: `gtaray analyze knn`)."""
    if rank == 0:
        torch.save(
            {
                "experiment": exp.model_dump(mode="json"),
                "iteration": int(metrics["iteration"]),
                "metrics": metrics,
                "world_size": int(metrics["workers"]),
                "nets": {k: lsd.unwrap(v).state_dict() for k, v in nets.items()},
                "opts": {k: v.state_dict() for k, v in opts.items()},
            },
            folder / "state.pt",
        )
    torch.save({"rng": rng_state(), "stream": stream.state_dict()}, folder / f"rank_{rank}.pt")


def load_file(path: Path) -> dict:
    """A checkpoint file, unpickled safely: tensors and plain values only, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore(folder: Path, nets, opts, stream, rank: int) -> tuple[int, dict]:
    """Load a checkpoint folder into the nets, optimizers, stream and RNGs of this rank;
    return (iteration, the metrics reported with it)."""
    state = load_file(folder / "state.pt")
    mine = folder / f"rank_{rank}.pt"
    if not mine.exists():  # a run is resumed with as many workers as it was saved with
        raise RuntimeError(
            f"{folder}: saved by {state.get('world_size', '?')} worker(s), has no rank {rank}"
        )
    own = load_file(mine)
    for name, net in nets.items():
        lsd.unwrap(net).load_state_dict(state["nets"][name])
    for name, opt in opts.items():
        opt.load_state_dict(state["opts"][name])
    stream.load_state_dict(own["stream"])
    set_rng_state(own["rng"])
    return state["iteration"], state["metrics"]
