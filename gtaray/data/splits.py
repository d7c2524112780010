"""The five splits an experiment trains and evaluates on, built from its `data` section.

    splits = make_splits(exp)   # source_train, source_val, target_train, target_val, target_test

Real datasets live under `data.root/<name>`; a split size caps the images used (None = all).
Source val is held out of the source training images; target val (for model selection on target
labels, a protocol choice the results record) is held out of the target training images, so the
target test split (Cityscapes val) is never used for selection.

`data.split_lists` replaces a hold-out with text files of image names (one per line, relative to
the split's image folder; blank lines and `#` comments skipped), used in list order and still
capped by the split size. Every listed image and its label must exist, and a domain's train and
val lists must not share an image: `make_splits` (run by the preflight, before Ray starts)
refuses any of that in one DataError naming the list file, its line and the image.

Training splits crop at random per visit (`data.train_crop: random`, seeded by train.seed) and
evaluation splits centre crop (`data.eval_crop: center`); see gtaray.data.io.PairDataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from torch.utils.data import Dataset

from gtaray.config import Experiment
from gtaray.data.io import Layout
from gtaray.data.labels import CLASSES
from gtaray.errors import DataError

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
        return SyntheticScenes(
            style, split, length, d.width, d.height, seed, d.num_classes, exp.model.input_format
        )

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


Listed = list[tuple[Path, Path, int]]  # (image, label, line number) in list order


def read_split_list(key: str, path: Path, layout: Layout, dataset: str) -> Listed:
    """The images a split list names, with their labels; DataError naming the key, the list
    file (and line) and the offending image for any entry that is not a usable image."""
    where = f"data.split_lists.{key}: {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{where}: list file not found") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a folder, not a list file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{where}: cannot read: {e.strerror}") from None
    depth = len(PurePath(layout.pattern).parts)
    out: Listed = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        at = f"{where}:{number}"
        rel = PurePath(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise DataError(f"{at}: {name} must be a name relative to {layout.image_dir}")
        # The layout's pattern, whole: Cityscapes' label name is derived from its suffix.
        if len(rel.parts) != depth or not rel.match(layout.pattern):
            raise DataError(
                f"{at}: {name} is not a {dataset} image name ({layout.pattern!r} under "
                f"{layout.image_dir})"
            )
        if name in seen:  # a repeat would train on it twice, or count it twice in val
            raise DataError(f"{at}: {name} is listed twice (also line {seen[name]})")
        seen[name] = number
        image = layout.image_dir / rel
        if not image.is_file():
            raise DataError(f"{at}: image not found: {image}")
        label = layout.label_for(image)
        if not label.is_file():
            raise DataError(f"{at}: no label for image {image} (expected {label})")
        out.append((image, label, number))
    if not out:
        raise DataError(f"{where}: lists no images (one name per line under {layout.image_dir})")
    return out


def _no_leak(train_key: str, train: Listed, val_key: str, val: Listed, lists: Any) -> None:
    """A domain's validation images must not be among its training images."""
    train_lines = {image: number for image, _, number in train}
    for image, _, number in val:
        if image in train_lines:
            raise DataError(
                f"data.split_lists.{val_key}: {getattr(lists, val_key)}:{number}: {image} is "
                f"also in {train_key}'s list {getattr(lists, train_key)}:{train_lines[image]} "
                "(train/val leakage)"
            )


Pairs = list[tuple[Path, Path]]


def _train_val(exp: Experiment, domain: str, layout: Layout, dataset: str) -> tuple[Pairs, Pairs]:
    """A domain's (train, val) files: its split lists, or gtaray's hold-out of all its images;
    either capped by the split sizes."""
    d, lists = exp.data, exp.data.split_lists
    train_key, val_key = f"{domain}_train", f"{domain}_val"
    train_cap, val_cap = getattr(d, train_key), getattr(d, val_key)
    if getattr(lists, train_key) is None:  # config validation: the val list is None too
        files = layout.pairs()
        train_idx, val_idx = _held_out(len(files), val_cap, train_cap)
        return [files[i] for i in train_idx], [files[i] for i in val_idx]
    train = read_split_list(train_key, getattr(lists, train_key), layout, dataset)
    val = read_split_list(val_key, getattr(lists, val_key), layout, dataset)
    _no_leak(train_key, train, val_key, val, lists)
    return (
        [(i, lab) for i, lab, _ in train[:train_cap]],
        [(i, lab) for i, lab, _ in val[:val_cap]],
    )


def _real(exp: Experiment) -> Splits:
    from gtaray.data import cityscapes, gta5, synthia

    d = exp.data
    source_layout, source_cls = {
        "gta5": (gta5.layout, gta5.GTA5),
        "synthia": (synthia.layout, synthia.Synthia),
    }[d.source]
    source_root, target_root = d.root / d.source, d.root / "cityscapes"
    s_train, s_val = _train_val(exp, "source", source_layout(source_root), d.source)
    train_layout, test_layout = (cityscapes.layout(target_root, s) for s in ("train", "val"))
    t_train, t_val = _train_val(exp, "target", train_layout, "cityscapes")
    if d.split_lists.target_test is None:
        test = test_layout.pairs()
    else:
        listed = read_split_list(
            "target_test", d.split_lists.target_test, test_layout, "cityscapes"
        )
        test = [(i, lab) for i, lab, _ in listed]
    test = test[: d.target_test]

    # Evaluation splits keep their labels' own size when scoring at the label resolution.
    native = d.eval_resolution == "label"
    common = dict(seed=exp.train.seed, input_format=exp.model.input_format)
    train_opts = dict(common, crop="random" if d.train_crop == "random" else "none")
    eval_opts = dict(common, crop="center" if d.eval_crop == "center" else "none")

    def source(files: Pairs, **opts: Any) -> Dataset:
        return source_cls(source_root, d.width, d.height, d.num_classes, files=files, **opts)

    def target(split: str, files: Pairs, **opts: Any) -> Dataset:
        return cityscapes.Cityscapes(
            target_root, split, d.width, d.height, d.num_classes, files=files, **opts
        )

    return Splits(
        source_train=source(s_train, **train_opts),
        source_val=source(s_val, native_labels=native, **eval_opts),
        target_train=target("train", t_train, **train_opts),
        target_val=target("train", t_val, native_labels=native, **eval_opts),
        target_test=target("val", test, native_labels=native, **eval_opts),
    )


def make_splits(exp: Experiment) -> Splits:
    return _synthetic(exp) if exp.data.source == "synthetic" else _real(exp)
