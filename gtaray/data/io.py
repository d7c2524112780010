"""File-level helpers every dataset loader shares: reading, resizing, pairing, the base Dataset.

Usage:
    from gtaray.data.io import read_rgb, read_label, resize_image, resize_label, DataError
    img = read_rgb("x.png")              # uint8 HxWx3
    ids = read_label("x_labels.png")     # uint8 or uint16 HxW (first channel of multi-channel)
    img = resize_image(img, 1024, 512)   # bilinear, (width, height)

Label PNGs come in two flavours: 8-bit (grey or palette; GTA5 and Cityscapes) decoded with PIL
(a palette image yields its indices, which are the ids), and 16-bit (SYNTHIA: 3 channels, class
id in the first) decoded with torchvision's libpng binding, because PIL silently truncates
16-bit RGB PNGs to 8 bits. The bit depth is read from the PNG header.

Every read error becomes `DataError` (a ValueError) whose message names the file.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode  # importing torchvision.io loads its libpng ops

from gtaray.data.labels import encode
from gtaray.data.transforms import INPUT_FORMATS, crop_array, crop_box, to_compact, to_sample
from gtaray.errors import DataError

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fail(path: Path | str, what: str, err: BaseException) -> DataError:
    if isinstance(err, FileNotFoundError):
        return DataError(f"{what} not found: {path}")
    return DataError(f"cannot read {what} {path}: {type(err).__name__}: {err}")


def read_rgb(path: Path | str) -> np.ndarray:
    """Decode a PNG/JPG into uint8 HxWx3 RGB (grey/palette/alpha are converted)."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy for torch
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise _fail(path, "image", err) from err


def _png_bit_depth(path: Path | str) -> int | None:
    """Bit depth from the IHDR chunk, or None when the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _decode_png16(data: bytes) -> np.ndarray:
    """16-bit PNG bytes -> CxHxW uint16, through the libpng op behind torchvision's decode_png.

    The public wrapper (torchvision.io.decode_png) only adds a per-call DeprecationWarning
    (torchvision 0.29 defers to torchcodec, which is not installed), so the op is called direct.
    """
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    out = torch.ops.image.decode_png(raw, ImageReadMode.UNCHANGED.value, False)
    return out.numpy().astype(np.uint16, copy=False)


def read_label(path: Path | str) -> np.ndarray:
    """Decode a label map into HxW ids: uint8 for 8-bit files, uint16 for 16-bit PNGs.

    Multi-channel files give their first channel (SYNTHIA keeps the class id there).
    """
    try:
        if _png_bit_depth(path) == 16:
            return _decode_png16(Path(path).read_bytes())[0]
        with Image.open(path) as im:
            if im.mode in ("1", "P", "L", "I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
            else:  # RGB(A)/LA 8-bit: first channel, as for 16-bit files
                arr = np.asarray(im)[..., 0]
    except (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError) as err:
        raise _fail(path, "label", err) from err
    if arr.ndim != 2:
        raise DataError(f"cannot read label {path}: unexpected shape {arr.shape}")
    return arr


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 HxWx3 -> height x width x 3, bilinear (no-op when the size already matches)."""
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized)


def resize_label(label: np.ndarray, width: int, height: int) -> np.ndarray:
    """HxW ids -> height x width, nearest neighbour on pixel centres (keeps ids, any dtype)."""
    h, w = label.shape[:2]
    if (h, w) == (height, width):
        return label
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]


def same_name(label_dir: Path, image: Path) -> Path:
    """Label of `image` when labels share the image file names (GTA5, SYNTHIA)."""
    return label_dir / image.name


@dataclass(frozen=True)
class Layout:
    """Where one split of a dataset keeps its images and how an image names its label."""

    image_dir: Path
    pattern: str  # glob below image_dir, e.g. "*.png" or "*/*_leftImg8bit.png"
    label_dir: Path
    label_for: Callable[[Path], Path]  # module-level function or partial: keeps it picklable

    def images(self) -> list[Path]:
        """Sorted image files; DataError naming the directory when it is missing or empty."""
        if not self.image_dir.is_dir():
            raise DataError(f"image directory not found: {self.image_dir}")
        files = sorted(p for p in self.image_dir.glob(self.pattern) if p.is_file())
        if not files:
            raise DataError(f"no images matching {self.pattern!r} in {self.image_dir}")
        return files

    def match(self) -> tuple[list[tuple[Path, Path]], list[Path]]:
        """(image, label) pairs and the images whose label file is missing."""
        images = self.images()
        if not self.label_dir.is_dir():
            raise DataError(f"label directory not found: {self.label_dir}")
        pairs, missing = [], []
        for img in images:
            lab = self.label_for(img)
            (pairs if lab.is_file() else missing).append((img, lab))
        return pairs, [img for img, _ in missing]

    def pairs(self) -> list[tuple[Path, Path]]:
        """All pairs; DataError naming the first image without a label."""
        pairs, missing = self.match()
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"no label for image {missing[0]}{more}")
        return pairs


CROPS = ("none", "center", "random")


class PairDataset(Dataset):
    """(image, label) files -> `to_sample` dicts at a fixed size, labels in train ids.

    `native_labels` keeps labels at their file's own size (evaluation at the label resolution:
    predictions are resized to them); otherwise they are resized (nearest) with the image.

    `crop` (the authors' loader): "center" or "random" first crops the image, and its label
    to the same pixels, to the aspect of width:height (full height of an image wider than
    that, else full width); "none" resizes the whole image. A "random" dataset is sampled by
    `draw(index, epoch)`: the offset comes from numpy's generator keyed by (seed, dataset,
    index, epoch), so a visit crops the same in any process and after a restore, and every
    epoch crops anew. `ds[i]` is always deterministic: the centre crop of a "random" dataset.

    `files` gives the (image, label) pairs (a split list) instead of all of `layout`'s.

    Subclasses set `dataset` (the `encode` name) and `resize_mismatched_labels`: when True a label
    whose size differs from its image is resized (nearest) to the image first and a warning is
    logged once per dataset object; when False the mismatch is a DataError.
    """

    dataset: str = ""
    resize_mismatched_labels: bool = False
    # Label files must have this many bits per sample (None: 8 or 16): an 8-bit SYNTHIA label
    # is a conversion that clipped class ids, not the release's file.
    label_bits: int | None = None

    def __init__(
        self,
        layout: Layout,
        width: int,
        height: int,
        num_classes: int,
        indices: Sequence[int] | None = None,
        native_labels: bool = False,
        *,
        crop: str = "none",
        seed: int = 0,
        input_format: str = "rgb_imagenet",
        files: Sequence[tuple[Path, Path]] | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; allowed: {', '.join(CROPS)}")
        if input_format not in INPUT_FORMATS:
            raise ValueError(
                f"unknown input format {input_format!r}; allowed: {', '.join(INPUT_FORMATS)}"
            )
        encode(np.zeros(1, np.uint8), self.dataset, num_classes)  # validates both names early
        self.layout = layout
        self.width, self.height, self.num_classes = width, height, num_classes
        self.native_labels = native_labels
        self.crop, self.seed, self.input_format = crop, int(seed), input_format
        self.files = layout.pairs() if files is None else [(Path(i), Path(j)) for i, j in files]
        n = len(self.files)
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"indices out of range 0..{n - 1}: {bad[:5]}")
        self._warned = False

    def __len__(self) -> int:
        return len(self.indices)

    def paths(self, index: int) -> tuple[Path, Path]:
        """(image path, label path) of sample `index`."""
        return self.files[self.indices[index]]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return to_sample(*self._load(index, None), self.input_format)

    def draw(self, index: int, epoch: int) -> dict[str, torch.Tensor]:
        """Sample `index` as visited in `epoch` of training: a fresh random crop per epoch for
        crop "random" (the same for the same seed, index and epoch), else `self[index]`."""
        return to_sample(*self._visit(index, epoch), self.input_format)

    def compact(self, index: int, epoch: int) -> dict[str, torch.Tensor]:
        """`draw`'s sample as uint8 rgb8 and label8 (gtaray.data.transforms.to_compact)."""
        return to_compact(*self._visit(index, epoch))

    def _visit(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self.crop != "random":
            return self._load(index, None)
        # The dataset's name in the key: source and target index 0 do not crop alike.
        key = [self.seed, zlib.crc32(self.dataset.encode()), int(index), int(epoch)]
        return self._load(index, np.random.default_rng(key))

    def _load(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """The (HxWx3 image, label) uint8 arrays of sample `index`, cropped and resized."""
        img_path, lab_path = self.paths(index)
        image = read_rgb(img_path)
        raw = read_label(lab_path)
        if self.label_bits is not None and raw.dtype.itemsize * 8 != self.label_bits:
            raise DataError(
                f"label {lab_path} is {raw.dtype.itemsize * 8}-bit; {self.dataset} labels are "
                f"{self.label_bits}-bit PNGs"
            )
        if raw.shape != image.shape[:2]:
            if not self.resize_mismatched_labels:
                raise DataError(
                    f"label {lab_path} is {raw.shape[1]}x{raw.shape[0]} but image {img_path} "
                    f"is {image.shape[1]}x{image.shape[0]}"
                )
            if not self._warned:
                self._warned = True
                log.warning(
                    "%s: label %s is %dx%d, image is %dx%d; resizing labels to their images "
                    "(nearest) - further mismatches are not reported",
                    self.dataset,
                    lab_path,
                    raw.shape[1],
                    raw.shape[0],
                    image.shape[1],
                    image.shape[0],
                )
            raw = resize_label(raw, image.shape[1], image.shape[0])
        label = encode(raw, self.dataset, self.num_classes)  # uint8 before resizing: cheaper
        if self.crop != "none":
            # The label has its image's size by now, so one box crops both (native labels too:
            # they stay at the label file's resolution, aligned with the cropped image).
            box = crop_box(image.shape[1], image.shape[0], self.width, self.height, rng)
            image, label = crop_array(image, box), crop_array(label, box)
        image = resize_image(np.ascontiguousarray(image), self.width, self.height)
        if not self.native_labels:
            label = resize_label(label, self.width, self.height)
        return image, label
