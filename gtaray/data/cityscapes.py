"""Cityscapes (Cordts et al. 2016) fine annotations as a torch Dataset.

Layout (leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip, unpacked into ROOT):
    ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (8-bit label ids)

Usage:
    train = Cityscapes("/data/cityscapes", "train", width=1024, height=512)   # adaptation target
    test = Cityscapes("/data/cityscapes", "val", width=1024, height=512)      # the 500 test images
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from gtaray.data.io import Layout, PairDataset

SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def layout(root: Path | str, split: str) -> Layout:
    """Where a Cityscapes split keeps its files and how an image names its labelIds file."""
    if split not in SPLITS:
        raise ValueError(f"unknown Cityscapes split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    labels = root / "gtFine" / split
    return Layout(
        root / "leftImg8bit" / split, "*/*" + IMAGE_SUFFIX, labels, partial(_label_for, labels)
    )


def _label_for(label_dir: Path, image: Path) -> Path:
    """<city>/<stem>_leftImg8bit.png -> label_dir/<city>/<stem>_gtFine_labelIds.png."""
    return label_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)


class Cityscapes(PairDataset):
    """One Cityscapes split, label ids encoded to `num_classes` train ids."""

    dataset = "cityscapes"

    def __init__(
        self,
        root: Path | str,
        split: str,
        width: int,
        height: int,
        num_classes: int = 19,
        indices: Sequence[int] | None = None,
        native_labels: bool = False,
        **options: Any,  # crop, seed, input_format, files: see PairDataset
    ) -> None:
        self.split = split
        super().__init__(
            layout(root, split), width, height, num_classes, indices, native_labels, **options
        )
