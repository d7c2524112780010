"""`gtaray data check ROOT`: is a dataset directory complete and readable?

Usage:
    report = check_dataset("/data/gta5", "gta5")
    print("\\n".join(report.lines()))
    raise SystemExit(0 if report.usable else 2)

It validates the layout the loaders expect (gtaray.data.gta5 / synthia / cityscapes), counts
images per split (GTA5 and SYNTHIA: one split "all"; Cityscapes: "train" and "val"), lists images
without a label, and decodes every image and label file (in a thread pool: the PNG decoders
release the GIL) so corrupt or truncated files are found now rather than hours into training.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from gtaray.data import cityscapes, gta5, synthia
from gtaray.data.io import DataError, Layout, PairDataset, read_label, read_rgb

_DATASETS: dict[str, tuple[tuple[str, ...], Callable[[Path, str], Layout], type[PairDataset]]] = {
    "gta5": (gta5.SPLITS, gta5.layout, gta5.GTA5),
    "synthia": (synthia.SPLITS, synthia.layout, synthia.Synthia),
    "cityscapes": (cityscapes.SPLITS, cityscapes.layout, cityscapes.Cityscapes),
}
_SHOW = 10  # paths listed per problem kind in lines()


@dataclass
class CheckReport:
    """What `check_dataset` found. Paths are strings so the report serialises as is."""

    dataset: str
    root: str
    counts: dict[str, int] = field(default_factory=dict)  # images found per split
    missing_pairs: list[str] = field(default_factory=list)  # images without a label file
    unreadable: list[str] = field(default_factory=list)  # files that fail to decode
    mismatched: list[str] = field(default_factory=list)  # labels sized unlike their image
    errors: list[str] = field(default_factory=list)  # layout problems and decode messages
    usable: bool = False

    def lines(self) -> list[str]:
        """Human-readable summary, one problem per line, ending with the verdict."""
        out = [f"{self.dataset} at {self.root}"]
        for split, n in self.counts.items():
            out.append(f"  {split}: {n} images")
        repaired = self.dataset in _DATASETS and _DATASETS[self.dataset][2].resize_mismatched_labels
        for title, paths in (
            ("images without a label", self.missing_pairs),
            ("unreadable files", self.unreadable),
            (
                "labels sized unlike their image"
                + (" (the loader resizes them)" if repaired else ""),
                self.mismatched,
            ),
        ):
            if paths:
                out.append(f"  {title}: {len(paths)}")
                out.extend(f"    {p}" for p in paths[:_SHOW])
                if len(paths) > _SHOW:
                    out.append(f"    ... and {len(paths) - _SHOW} more")
        if self.errors:
            out.append(f"  errors: {len(self.errors)}")
            out.extend(f"    {e}" for e in self.errors[:_SHOW])
            if len(self.errors) > _SHOW:
                out.append(f"    ... and {len(self.errors) - _SHOW} more")
        out.append("  usable: yes" if self.usable else "  usable: NO")
        return out


def _decode(
    pair: tuple[Path, Path], label_bits: int | None = None
) -> tuple[list[str], list[str], bool]:
    """(unreadable paths, error messages, sizes differ) for one image/label pair."""
    bad, msgs, shapes = [], [], []
    for path, reader in ((pair[0], read_rgb), (pair[1], read_label)):
        try:
            array = reader(path)
        except DataError as err:
            bad.append(str(path))
            msgs.append(str(err))
            continue
        shapes.append(array.shape[:2])
        bits = array.dtype.itemsize * 8
        if reader is read_label and label_bits is not None and bits != label_bits:
            bad.append(str(path))
            msgs.append(f"label {path} is {bits}-bit; expected {label_bits}-bit")
    return bad, msgs, len(shapes) == 2 and shapes[0] != shapes[1]


def check_dataset(root: Path | str, dataset: str, workers: int | None = None) -> CheckReport:
    """Check `root` against the layout of `dataset` ("gta5", "synthia" or "cityscapes")."""
    if dataset not in _DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(_DATASETS)}")
    splits, layout_of, cls = _DATASETS[dataset]
    root = Path(root)
    report = CheckReport(dataset=dataset, root=str(root))
    if not root.is_dir():
        report.errors.append(f"root directory not found: {root}")
        return report

    pairs: list[tuple[Path, Path]] = []
    for split in splits:
        layout = layout_of(root, split)
        try:
            report.counts[split] = len(layout.images())
            found, missing = layout.match()
        except DataError as err:
            report.counts.setdefault(split, 0)
            report.errors.append(str(err))
            continue
        report.missing_pairs.extend(str(p) for p in missing)
        pairs.extend(found)

    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (_, label), (bad, msgs, differ) in zip(
            pairs, pool.map(partial(_decode, label_bits=cls.label_bits), pairs), strict=True
        ):
            report.unreadable.extend(bad)
            report.errors.extend(msgs)
            if differ:
                report.mismatched.append(str(label))

    # GTA5 loaders repair mismatched sizes (see gtaray.data.gta5); the others refuse them.
    fatal_mismatch = bool(report.mismatched) and not cls.resize_mismatched_labels
    report.usable = (
        not report.errors
        and all(n > 0 for n in report.counts.values())
        and not report.missing_pairs
        and not report.unreadable
        and not fatal_mismatch
    )
    return report
