"""Label spaces: Cityscapes / GTA5 / SYNTHIA raw ids -> contiguous train ids.

Usage:
    from gtaray.data.labels import CLASSES, PALETTES, encode
    train_ids = encode(raw_ids, "synthia", num_classes=16)   # uint8 HxW, 255 = ignore
    CLASSES[16][train_ids[0, 0]]                              # -> e.g. "road"

Three evaluation protocols are supported, each a subset of the 19 official Cityscapes train
classes in the same relative order:
  19  the official Cityscapes train ids (GTA5 -> Cityscapes)
  16  19 without terrain, truck, train (SYNTHIA -> Cityscapes, the protocol of LSD-seg/AdaptSegNet)
  13  16 without wall, fence, pole (the reduced SYNTHIA protocol)

Cityscapes and GTA5 label files carry Cityscapes label ids; SYNTHIA-RAND-CITYSCAPES label files
carry SYNTHIA ids. `encode` goes through a 65,536-entry lookup table (8- and 16-bit input in one
indexing operation); anything not in the table (unknown, negative, >= 65536) becomes 255.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

IGNORE = 255
DATASETS = ("cityscapes", "gta5", "synthia")


class Label(NamedTuple):
    name: str
    id: int
    train_id: int  # 255 = not one of the 19 train classes
    color: tuple[int, int, int]


# The official table from cityscapesScripts (helpers/labels.py, mcordts/cityscapesScripts):
# name, id, trainId, color. License plate has id -1 and trainId -1 there; here it is ignored.
CITYSCAPES_LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
    Label("license plate", -1, 255, (0, 0, 142)),
)

_TRAIN = sorted(
    (lab for lab in CITYSCAPES_LABELS if lab.train_id != IGNORE), key=lambda x: x.train_id
)
_NAMES_19 = tuple(lab.name for lab in _TRAIN)
_DROP_16 = ("terrain", "truck", "train")
_NAMES_16 = tuple(n for n in _NAMES_19 if n not in _DROP_16)
_NAMES_13 = tuple(n for n in _NAMES_16 if n not in ("wall", "fence", "pole"))

CLASSES: dict[int, tuple[str, ...]] = {19: _NAMES_19, 16: _NAMES_16, 13: _NAMES_13}


def _palette(names: tuple[str, ...]) -> np.ndarray:
    colour = {lab.name: lab.color for lab in _TRAIN}
    arr = np.array([colour[n] for n in names], dtype=np.uint8)
    arr.setflags(write=False)  # shared module constant
    return arr


PALETTES: dict[int, np.ndarray] = {n: _palette(names) for n, names in CLASSES.items()}

# SYNTHIA-RAND-CITYSCAPES ids, from the README.txt shipped with the dataset (class table
# "Class R G B ID", German Ros, synthia-dataset.net), mapped to Cityscapes class names as in the
# SYNTHIA -> Cityscapes id_to_trainid tables of ADVENT / DACS / DAFormer (tools/convert_datasets/
# synthia.py). None = no Cityscapes train class -> 255.
# Decision: lanemarking (22) is ignored (255), not folded into road. Folding would be semantically
# defensible (Cityscapes paints lane markings as road) but every published SYNTHIA -> Cityscapes
# number we compare against (ADVENT, DACS, DAFormer, AdaptSegNet-style tables) leaves 22 unmapped,
# and training with it as road changes the source label distribution of the benchmark.
SYNTHIA_IDS: dict[int, tuple[str, str | None]] = {
    0: ("void", None),
    1: ("sky", "sky"),
    2: ("building", "building"),
    3: ("road", "road"),
    4: ("sidewalk", "sidewalk"),
    5: ("fence", "fence"),
    6: ("vegetation", "vegetation"),
    7: ("pole", "pole"),
    8: ("car", "car"),
    9: ("traffic sign", "traffic sign"),
    10: ("pedestrian", "person"),
    11: ("bicycle", "bicycle"),
    12: ("motorcycle", "motorcycle"),
    13: ("parking-slot", None),
    14: ("road-work", None),
    15: ("traffic light", "traffic light"),
    16: ("terrain", "terrain"),  # in the README, never present in the images
    17: ("rider", "rider"),
    18: ("truck", "truck"),  # in the README, never present in the images
    19: ("bus", "bus"),
    20: ("train", "train"),  # in the README, never present in the images
    21: ("wall", "wall"),
    22: ("lanemarking", None),  # see the decision above
}

_LUT_SIZE = 1 << 16  # covers 8- and 16-bit label files


def _check(dataset: str, num_classes: int) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    if num_classes not in CLASSES:
        allowed = ", ".join(str(n) for n in sorted(CLASSES))
        raise ValueError(f"unsupported num_classes {num_classes!r}; allowed: {allowed}")


@cache
def lookup_table(dataset: str, num_classes: int = 19) -> np.ndarray:
    """Read-only uint8 table of 65,536 entries: raw id -> train id (255 = ignore)."""
    _check(dataset, num_classes)
    index = {name: i for i, name in enumerate(CLASSES[num_classes])}
    if dataset == "synthia":
        raw_to_name = {i: name for i, (_, name) in SYNTHIA_IDS.items()}
    else:  # GTA5 labels use the Cityscapes ids
        raw_to_name = {lab.id: lab.name for lab in CITYSCAPES_LABELS if lab.id >= 0}
    lut = np.full(_LUT_SIZE, IGNORE, dtype=np.uint8)
    for raw, name in raw_to_name.items():
        if name is not None and name in index:
            lut[raw] = index[name]
    lut.setflags(write=False)
    return lut


@cache
def from_19(num_classes: int) -> np.ndarray:
    """Read-only uint8 table of 256 entries: 19-class train id -> `num_classes` train id (the
    classes the smaller protocols drop become 255)."""
    index = {name: i for i, name in enumerate(CLASSES[num_classes])}
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for i, name in enumerate(CLASSES[19]):
        lut[i] = index.get(name, IGNORE)
    lut.setflags(write=False)
    return lut


def encode(raw: np.ndarray, dataset: str, num_classes: int = 19) -> np.ndarray:
    """Raw dataset ids (any integer dtype, any shape) -> uint8 train ids, 255 = ignore."""
    lut = lookup_table(dataset, num_classes)
    raw = np.asarray(raw)
    if raw.dtype == np.bool_:  # 1-bit PNGs
        raw = raw.astype(np.uint8)
    if raw.dtype in (np.uint8, np.uint16):
        return lut[raw]  # every value is a valid index: one gather, no masking
    if not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"label ids must be integers, got dtype {raw.dtype}")
    out = np.full(raw.shape, IGNORE, dtype=np.uint8)
    valid = (raw >= 0) & (raw < _LUT_SIZE)
    out[valid] = lut[raw[valid]]
    return out


def colorize(train_ids: np.ndarray, num_classes: int = 19) -> np.ndarray:
    """Train-id map HxW -> HxWx3 uint8 picture in the Cityscapes colours (ignore = black)."""
    _check("cityscapes", num_classes)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:num_classes] = PALETTES[num_classes]
    ids = np.asarray(train_ids)
    ids = np.where((ids >= 0) & (ids < 256), ids, IGNORE).astype(np.uint8)
    return table[ids]
