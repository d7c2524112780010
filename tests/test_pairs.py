"""Triplet stream: sharding across ranks, independent endless epochs, exact resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from gtaray.data.pairs import TripletStream, shard_indices


class Numbered(Dataset):
    """Sample i carries i in every pixel, so batches reveal which indices they hold."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.full((3, 2, 2), float(i)),
            "rgb": torch.full((3, 2, 2), i / 100),
            "label": torch.full((2, 2), i, dtype=torch.int64),
        }


def ids(batch: dict[str, torch.Tensor], prefix: str) -> list[int]:
    return batch[f"{prefix}_label"][:, 0, 0].tolist()


@pytest.mark.parametrize("n", [0, 1, 5, 7, 16, 500])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shard_indices_partition_range_exactly(n, world_size):
    shards = [shard_indices(n, r, world_size) for r in range(world_size)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n)) and len(flat) == n
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_indices_rejects_bad_rank():
    with pytest.raises(ValueError):
        shard_indices(10, 2, 2)


def test_batches_have_the_six_stacked_keys():
    batch = next(TripletStream(Numbered(5), Numbered(3), batch_size=2, seed=0))
    assert set(batch) == {"src_image", "src_rgb", "src_label", "tgt_image", "tgt_rgb", "tgt_label"}
    assert batch["src_image"].shape == (2, 3, 2, 2) and batch["tgt_label"].shape == (2, 2, 2)


def test_two_ranks_never_see_the_same_source_index_in_an_epoch():
    n, ws, bs = 11, 2, 1
    per_rank = n // ws
    streams = [TripletStream(Numbered(n), Numbered(4), bs, seed=3, rank=r, world_size=ws)
               for r in range(ws)]  # fmt: skip
    for _epoch in range(3):
        seen = [[i for _ in range(per_rank) for i in ids(next(s), "src")] for s in streams]
        assert not set(seen[0]) & set(seen[1])
        assert all(len(set(s)) == per_rank for s in seen)  # no repeats within a rank
        assert len(set(seen[0]) | set(seen[1])) == per_rank * ws  # only the tail is dropped


def test_epochs_are_reshuffled_and_sides_roll_over_independently():
    s = TripletStream(Numbered(6), Numbered(4), batch_size=2, seed=1)
    batches = [next(s) for _ in range(12)]  # 24 samples a side
    src = [i for b in batches for i in ids(b, "src")]
    tgt = [i for b in batches for i in ids(b, "tgt")]
    src_epochs = [src[k : k + 6] for k in range(0, 24, 6)]
    tgt_epochs = [tgt[k : k + 4] for k in range(0, 24, 4)]
    assert all(sorted(e) == list(range(6)) for e in src_epochs)
    assert all(sorted(e) == list(range(4)) for e in tgt_epochs)  # 4 long, not 6
    assert len({tuple(e) for e in src_epochs}) > 1  # reshuffled per epoch
    assert s.state_dict()["src"]["epoch"] == 4 and s.state_dict()["tgt"]["epoch"] == 6


def test_same_seed_gives_same_sequence_and_other_seed_differs():
    def run(seed: int) -> list[int]:
        s = TripletStream(Numbered(20), Numbered(20), batch_size=4, seed=seed)
        batches = [next(s) for _ in range(5)]
        return [i for b in batches for i in ids(b, "src") + ids(b, "tgt")]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_restored_position_continues_the_identical_sequence():
    kw = dict(batch_size=3, seed=5, rank=1, world_size=2)
    a = TripletStream(Numbered(13), Numbered(7), **kw)
    for _ in range(4):  # past an epoch boundary on both sides
        next(a)
    state = a.state_dict()
    expected = [next(a) for _ in range(6)]
    b = TripletStream(Numbered(13), Numbered(7), **kw)
    b.load_state_dict(state)
    for want in expected:
        got = next(b)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_restore_refuses_a_state_from_another_seed_or_dataset():
    state = TripletStream(Numbered(5), Numbered(5), 1, seed=0).state_dict()
    with pytest.raises(ValueError, match="seed"):
        TripletStream(Numbered(5), Numbered(5), 1, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="dataset of 5 samples"):
        TripletStream(Numbered(6), Numbered(5), 1, seed=0).load_state_dict(state)


def same(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> bool:
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_data_loader_processes_give_the_same_batches_as_inline_loading():
    kw = dict(batch_size=4, seed=2, rank=1, world_size=2)
    inline = TripletStream(Numbered(19), Numbered(11), **kw)
    loader = TripletStream(Numbered(19), Numbered(11), **kw, workers=2)
    for _ in range(12):  # several epochs of both sides
        assert same(next(inline), next(loader))
    assert loader.state_dict() == inline.state_dict()  # batches handed out, not read ahead
    loader.close()


def test_data_loader_restores_exactly_mid_epoch():
    """The state counts batches consumed, not the ones the loader's processes read ahead."""
    kw = dict(batch_size=2, seed=9, workers=2)
    a = TripletStream(Numbered(15), Numbered(9), **kw)
    for _ in range(3):  # mid-epoch on both sides; the loader has prefetched further
        next(a)
    state = a.state_dict()
    assert 0 < state["src"]["pos"] < 15 and state["src"]["epoch"] == 0
    expected = [next(a) for _ in range(8)]
    a.close()
    b = TripletStream(Numbered(15), Numbered(9), **kw)
    next(b)  # a running loader, then a restore: its read-ahead must be dropped
    b.load_state_dict(state)
    assert all(same(next(b), want) for want in expected)
    b.close()


def test_starting_the_loader_leaves_the_global_rng_alone():
    """Dropout draws from the global RNG: a loader that drew too would change training."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    stream = TripletStream(Numbered(5), Numbered(5), 1, seed=0, workers=1)
    next(stream)
    assert torch.equal(torch.rand(3), expected)
    stream.close()


def test_negative_loader_workers_are_refused():
    with pytest.raises(ValueError, match="workers"):
        TripletStream(Numbered(5), Numbered(5), 1, seed=0, workers=-1)
