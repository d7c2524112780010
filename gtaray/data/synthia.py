"""SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016, 9,400 frames) as a torch Dataset.

Layout (the official download, unpacked):
    ROOT/RGB/0000000.png ...         RGB frames (1280x760)
    ROOT/GT/LABELS/0000000.png ...   16-bit 3-channel PNGs; channel 0 = SYNTHIA class id
                                     (channel 1 = instance id), see gtaray.data.labels

Usage:
    ds = Synthia("/data/synthia", width=1024, height=512)      # 16-class SYNTHIA protocol
    sample = ds[0]   # {"image", "rgb", "label"}

A label whose size differs from its image is an error (it does not happen in the release).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from gtaray.data.io import Layout, PairDataset, same_name

SPLITS = ("all",)


def layout(root: Path | str, split: str = "all") -> Layout:
    """Where SYNTHIA keeps its files; labels share the image file names."""
    if split not in SPLITS:
        raise ValueError(f"unknown SYNTHIA split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    labels = root / "GT" / "LABELS"
    return Layout(root / "RGB", "*.png", labels, partial(same_name, labels))


class Synthia(PairDataset):
    """SYNTHIA-RAND-CITYSCAPES frames, SYNTHIA ids encoded to `num_classes` train ids."""

    dataset = "synthia"
    label_bits = 16

    def __init__(
        self,
        root: Path | str,
        width: int,
        height: int,
        num_classes: int = 16,
        indices: Sequence[int] | None = None,
        native_labels: bool = False,
        **options: Any,  # crop, seed, input_format, files: see PairDataset
    ) -> None:
        super().__init__(
            layout(root), width, height, num_classes, indices, native_labels, **options
        )
