"""GTA5 (Richter et al., "Playing for Data", 24,966 frames) as a torch Dataset.

Layout (the official download, unpacked):
    ROOT/images/00001.png ...   RGB frames
    ROOT/labels/00001.png ...   8-bit palette PNGs whose indices are Cityscapes label ids

Usage:
    ds = GTA5("/data/gta5", width=1024, height=512)            # 19 Cityscapes classes
    sample = ds[0]   # {"image", "rgb", "label"} at 1024x512 (see gtaray.data.transforms)

Size mismatch: a few GTA5 frames differ in size from their label maps. The label is resized
with nearest neighbour to its image's size before the common resize to (width, height), and a
warning is logged once per dataset object; ids are never interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from gtaray.data.io import Layout, PairDataset, same_name

SPLITS = ("all",)


def layout(root: Path | str, split: str = "all") -> Layout:
    """Where GTA5 keeps its files; labels share the image file names."""
    if split not in SPLITS:
        raise ValueError(f"unknown GTA5 split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    labels = root / "labels"
    return Layout(root / "images", "*.png", labels, partial(same_name, labels))


class GTA5(PairDataset):
    """GTA5 frames with Cityscapes-id labels, encoded to `num_classes` train ids."""

    dataset = "gta5"
    resize_mismatched_labels = True

    def __init__(
        self,
        root: Path | str,
        width: int,
        height: int,
        num_classes: int = 19,
        indices: Sequence[int] | None = None,
        native_labels: bool = False,
        **options: Any,  # crop, seed, input_format, files: see PairDataset
    ) -> None:
        super().__init__(
            layout(root), width, height, num_classes, indices, native_labels, **options
        )
