"""The five splits an experiment trains and evaluates on, built from its `data` section.

    splits = make_splits(exp)   # source_train, source_val, target_train, target_val, target_test

Real datasets live under `data.root/<name>`; a split size caps the images used (None = all).
Source val is held out of the source training images; target val (for model selection on target
labels, a protocol choice the results record) is held out of the target training images, so the
target test split (Cityscapes val) is never used for selection.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from gtaray.config import Experiment
from gtaray.data.labels import CLASSES

TARGET_SEED_OFFSET = 1 << 20


@dataclass(frozen=True)
class Splits:
    source_train: Dataset
    source_val: Dataset
    target_train: Dataset
    target_val: Dataset
    target_test: Dataset


def class_names(exp: Experiment) -> list[str]:
    return list(CLASSES[exp.data.num_classes])


def _synthetic(exp: Experiment) -> Splits:
    from gtaray.data.synthetic import SyntheticScenes, target_style

    d = exp.data

    def scenes(domain: str, split: str, length: int) -> SyntheticScenes:
        # Same seed would give the target the source's layouts (re-rendered): offset it so the
        # target domain has scenes of its own, as real unpaired data does.
        if domain == "source":
            style, seed = "source", d.seed
        else:
            style, seed = target_style(exp), d.seed + TARGET_SEED_OFFSET
        return SyntheticScenes(style, split, length, d.width, d.height, seed, d.num_classes)

    return Splits(
        source_train=scenes("source", "train", d.source_train),
        source_val=scenes("source", "val", d.source_val),
        target_train=scenes("target", "train", d.target_train),
        target_val=scenes("target", "val", d.target_val),
        target_test=scenes("target", "test", d.target_test),
    )


def _held_out(n: int, val: int | None, train: int | None) -> tuple[list[int], list[int]]:
    """Last `val` images for validation, up to `train` of the rest for training."""
    val = min(val or 0, n // 2)
    train_idx = list(range(n - val))
    return train_idx[: train or len(train_idx)], list(range(n - val, n))


def _real(exp: Experiment) -> Splits:
    from gtaray.data.cityscapes import Cityscapes
    from gtaray.data.gta5 import GTA5
    from gtaray.data.synthia import Synthia

    d, k = exp.data, exp.data.num_classes
    source_cls = {"gta5": GTA5, "synthia": Synthia}[d.source]
    source_all = source_cls(d.root / d.source, d.width, d.height, num_classes=k)
    s_train, s_val = _held_out(len(source_all), d.source_val, d.source_train)
    target_all = Cityscapes(d.root / "cityscapes", "train", d.width, d.height, num_classes=k)
    t_train, t_val = _held_out(len(target_all), d.target_val, d.target_train)
    test = Cityscapes(d.root / "cityscapes", "val", d.width, d.height, num_classes=k)
    test_idx = list(range(min(len(test), d.target_test or len(test))))

    # Evaluation splits keep their labels' own size when scoring at the label resolution.
    native = d.eval_resolution == "label"

    def source(idx: list[int], native_labels: bool = False) -> Dataset:
        return source_cls(
            d.root / d.source, d.width, d.height, k, indices=idx, native_labels=native_labels
        )

    def target(split: str, idx: list[int], native_labels: bool = False) -> Dataset:
        return Cityscapes(
            d.root / "cityscapes", split, d.width, d.height, k, idx, native_labels=native_labels
        )

    return Splits(
        source_train=source(s_train),
        source_val=source(s_val, native),
        target_train=target("train", t_train),
        target_val=target("train", t_val, native),
        target_test=target("val", test_idx, native),
    )


def make_splits(exp: Experiment) -> Splits:
    return _synthetic(exp) if exp.data.source == "synthetic" else _real(exp)
