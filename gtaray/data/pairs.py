"""Feeding the method: endless (source, target) batches, sharded across DDP ranks, resumable.

Usage:
    stream = TripletStream(gta5, cityscapes_train, batch_size=1, seed=0, rank=r, world_size=n)
    batch = next(stream)      # src_image, src_rgb, src_label, tgt_image, tgt_rgb, tgt_label
    state = stream.state_dict()                # save with the checkpoint
    stream.load_state_dict(state)              # a fresh stream continues identically

    for i in shard_indices(len(test_set), rank, world_size): ...   # exact DDP evaluation

Each side (source, target) walks its own epochs: epoch e is the permutation drawn from
numpy's Generator seeded by (seed, crc32(side name), e), the same on every rank; rank r takes
every world_size-th index from r, n // world_size of them (the tail is dropped so that every rank
makes the same number of steps and DDP stays in lockstep). Strided, not blocks: step t of N ranks
with batch b then sees exactly the samples of step t of one rank with batch N x b. A batch that
runs past the end of an epoch continues into the next one, so the two sides roll over
independently.

With `workers > 0` a torch DataLoader decodes batches in that many processes, ahead of the
training step (pinned when `pin_memory`). Its sampler walks a copy of the position; the stream's
own position counts only the batches handed out, so `state_dict` is exact however far the
loader has read ahead, and batches are identical with any number of workers.

A batch's key is each sample's (index, epoch of the visit): a dataset with a `draw(index,
epoch)` method (PairDataset, for `data.train_crop: random`) is sampled through it, so a random
crop is drawn afresh every epoch yet depends on the key alone (the same with any number of
workers and after a restore); other datasets are indexed, `ds[index]`.

With `compact=True` (the training loop's stream) a batch is src_/tgt_ rgb8 and label8, uint8,
from each dataset's `compact(index, epoch)`: 8x fewer bytes to pin and copy per step. The
device makes image, rgb and label from them (gtaray.runtime.to_device).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

_KEYS = ("image", "rgb", "label")
_COMPACT_KEYS = ("rgb8", "label8")


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Rank's contiguous block of range(n): no overlap, union is range(n), sizes differ by <= 1.

    Unlike the training shards nothing is dropped, so a distributed evaluation that sums
    confusion matrices over ranks counts every test image exactly once.
    """
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"need n >= 0 and 0 <= rank < world_size, got {n=} {rank=} {world_size=}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (1 if rank < extra else 0)))


class _Side:
    """Position of one side (source or target) in its endless sequence of epochs."""

    def __init__(self, name: str, size: int, seed: int, rank: int, world_size: int) -> None:
        if size < world_size:
            raise ValueError(f"{name} has {size} samples, fewer than world_size={world_size}")
        self.name, self.size, self.seed = name, size, seed
        self.per_rank = size // world_size
        self.rank, self.world_size = rank, world_size
        self.epoch, self.pos = 0, 0
        self._cache: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        """This rank's indices for `epoch` (the shared permutation, sliced)."""
        if self._cache is None or self._cache[0] != epoch:
            key = [self.seed, zlib.crc32(self.name.encode()), epoch]
            perm = np.random.default_rng(key).permutation(self.size)
            stop = self.per_rank * self.world_size
            self._cache = (epoch, perm[self.rank : stop : self.world_size])
        return self._cache[1]

    def visits(self, k: int) -> list[tuple[int, int]]:
        """The next k (index, epoch of this visit) pairs."""
        out: list[tuple[int, int]] = []
        while len(out) < k:
            order = self._order(self.epoch)
            step = min(k - len(out), self.per_rank - self.pos)
            out.extend((int(i), self.epoch) for i in order[self.pos : self.pos + step])
            self.pos += step
            if self.pos == self.per_rank:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def take(self, k: int) -> list[int]:
        return [i for i, _ in self.visits(k)]


Visits = tuple[tuple[int, int], ...]  # (dataset index, epoch) of each sample of one side
BatchKey = tuple[Visits, Visits]  # a batch's (source, target) visits


def _as_key(loaded: Any) -> BatchKey:
    """A key back from a DataLoader process (its collation may turn tuples into lists)."""
    src, tgt = (tuple((int(i), int(e)) for i, e in side) for side in loaded)
    return src, tgt


def _load_batch(
    source: Dataset, target: Dataset, key: BatchKey, compact: bool = False
) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = {}
    for prefix, ds, visits in (("src", source, key[0]), ("tgt", target, key[1])):
        # A dataset that crops at random per visit (PairDataset.draw) gets the visit's epoch:
        # the key alone decides the sample, in any loader process and after a restore.
        draw = ds.compact if compact else getattr(ds, "draw", None)
        samples = [ds[i] if draw is None else draw(i, epoch) for i, epoch in visits]
        for name in _COMPACT_KEYS if compact else _KEYS:
            batch[f"{prefix}_{name}"] = torch.stack([s[name] for s in samples])
    return batch


class _Batches(Dataset):
    """A batch per key: what each DataLoader process decodes."""

    def __init__(self, source: Dataset, target: Dataset, compact: bool) -> None:
        self.source, self.target, self.compact = source, target, compact

    def __getitem__(self, key: BatchKey) -> tuple[BatchKey, dict[str, torch.Tensor]]:
        return key, _load_batch(self.source, self.target, key, self.compact)


class _Keys(Sampler):
    """The endless sequence of batch keys from a given position (the DataLoader's sampler)."""

    def __init__(self, sides: dict[str, _Side], batch_size: int) -> None:
        self.sides, self.batch_size = sides, batch_size

    def __iter__(self) -> Iterator[BatchKey]:
        sides = copy.deepcopy(self.sides)
        while True:
            yield (
                tuple(sides["src"].visits(self.batch_size)),
                tuple(sides["tgt"].visits(self.batch_size)),
            )


class TripletStream:
    """Endless iterator of (labelled source, target) batches; see the module docstring."""

    def __init__(
        self,
        source: Dataset,
        target: Dataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        pin_memory: bool = False,
        compact: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {rank=} {world_size=}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.source, self.target = source, target
        self.batch_size, self.seed = batch_size, int(seed)
        self.rank, self.world_size = rank, world_size
        self.workers, self.pin_memory = workers, pin_memory
        for ds in (source, target) if compact else ():
            if not callable(getattr(ds, "compact", None)):
                raise TypeError(f"compact batches need {type(ds).__name__}.compact(index, epoch)")
        self.compact = compact
        self._sides = {
            "src": _Side("source", len(source), self.seed, rank, world_size),
            "tgt": _Side("target", len(target), self.seed, rank, world_size),
        }
        self._loader: Iterator | None = None  # started at the first batch, after any restore

    def __iter__(self) -> TripletStream:
        return self

    def next_indices(self) -> dict[str, list[int]]:
        """Advance by one batch and return the dataset indices it consists of."""
        return {p: side.take(self.batch_size) for p, side in self._sides.items()}

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.workers and self._loader is None:  # its sampler starts from this position
            self._loader = iter(self._data_loader())
        key = (
            tuple(self._sides["src"].visits(self.batch_size)),
            tuple(self._sides["tgt"].visits(self.batch_size)),
        )
        if self._loader is None:
            return _load_batch(self.source, self.target, key, self.compact)
        loaded, batch = next(self._loader)
        if _as_key(loaded) != key:  # the sampler and the position walk in step
            raise RuntimeError(f"data loader out of step: expected {key}, got {loaded}")
        return batch

    def _data_loader(self) -> DataLoader:
        return DataLoader(
            _Batches(self.source, self.target, self.compact),
            batch_size=None,  # the keys are whole batches
            sampler=_Keys(self._sides, self.batch_size),
            num_workers=self.workers,
            persistent_workers=True,
            pin_memory=self.pin_memory,
            prefetch_factor=2,
            # Its own generator: starting the loader must not draw from the global RNG, which
            # the training step's dropout uses (a restore would then diverge).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def state_dict(self) -> dict[str, Any]:
        """Position (and what it is only valid for): plain ints, safe to pickle or JSON."""
        state: dict[str, Any] = {"seed": self.seed, "world_size": self.world_size}
        for prefix, side in self._sides.items():
            state[prefix] = {"size": side.size, "epoch": side.epoch, "pos": side.pos}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was taken (same seed, world size and datasets)."""
        for key, mine in (("seed", self.seed), ("world_size", self.world_size)):
            if state[key] != mine:
                raise ValueError(f"stream state has {key}={state[key]}, this stream has {mine}")
        for prefix, side in self._sides.items():
            s = state[prefix]
            if s["size"] != side.size:
                raise ValueError(
                    f"stream state was taken on a {prefix} dataset of {s['size']} samples, "
                    f"this one has {side.size}"
                )
            if not 0 <= s["pos"] < side.per_rank or s["epoch"] < 0:
                raise ValueError(f"invalid {prefix} position in stream state: {s}")
            side.epoch, side.pos = int(s["epoch"]), int(s["pos"])
        self.close()  # batches read ahead from the old position are dropped

    def close(self) -> None:
        """Stop the loader processes, if any (a later batch starts them again)."""
        self._loader = None  # the iterator's finalizer shuts its workers down
