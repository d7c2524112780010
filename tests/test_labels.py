"""Label maps against the official Cityscapes and SYNTHIA-RAND-CITYSCAPES definitions."""

from __future__ import annotations

import numpy as np
import pytest

from gtaray.data.labels import CLASSES, PALETTES, colorize, encode

# Typed in from cityscapesScripts helpers/labels.py (id -> trainId, 255 for ignored ids).
OFFICIAL_CITYSCAPES_TRAIN_ID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
    22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
    32: 17, 33: 18,
}  # fmt: skip
NAMES_19 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
# SYNTHIA README id -> Cityscapes class name (None = ignored; lanemarking ignored by choice).
SYNTHIA = {
    0: None, 1: "sky", 2: "building", 3: "road", 4: "sidewalk", 5: "fence", 6: "vegetation",
    7: "pole", 8: "car", 9: "traffic sign", 10: "person", 11: "bicycle", 12: "motorcycle",
    13: None, 14: None, 15: "traffic light", 16: "terrain", 17: "rider", 18: "truck",
    19: "bus", 20: "train", 21: "wall", 22: None,
}  # fmt: skip


def test_class_lists_follow_the_cityscapes_train_order_and_protocol_subsets():
    assert CLASSES[19] == NAMES_19
    dropped = {"terrain", "truck", "train"}
    assert CLASSES[16] == tuple(n for n in NAMES_19 if n not in dropped)
    assert CLASSES[13] == tuple(n for n in CLASSES[16] if n not in {"wall", "fence", "pole"})
    assert (len(CLASSES[16]), len(CLASSES[13])) == (16, 13)


@pytest.mark.parametrize("dataset", ["cityscapes", "gta5"])
def test_every_cityscapes_id_maps_to_its_official_train_id(dataset):
    ids = np.array(sorted(OFFICIAL_CITYSCAPES_TRAIN_ID), dtype=np.uint8)
    expected = np.array([OFFICIAL_CITYSCAPES_TRAIN_ID[i] for i in ids], dtype=np.uint8)
    out = encode(ids, dataset, 19)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("num_classes", [16, 13])
def test_cityscapes_ids_in_reduced_protocols_index_the_reduced_class_list(num_classes):
    ids = np.arange(34, dtype=np.int64)
    out = encode(ids, "cityscapes", num_classes)
    for raw, tid in OFFICIAL_CITYSCAPES_TRAIN_ID.items():
        name = NAMES_19[tid] if tid != 255 else None
        want = CLASSES[num_classes].index(name) if name in CLASSES[num_classes] else 255
        assert out[raw] == want, (raw, name)


@pytest.mark.parametrize("num_classes", [19, 16, 13])
def test_synthia_ids_map_to_the_named_cityscapes_classes(num_classes):
    out = encode(np.arange(23, dtype=np.uint16), "synthia", num_classes)
    for raw, name in SYNTHIA.items():
        want = CLASSES[num_classes].index(name) if name in CLASSES[num_classes] else 255
        assert out[raw] == want, (raw, name)


def test_synthia_16_class_examples_and_lanemarking_ignored():
    raw = np.array([[3, 4, 10], [8, 22, 0]], dtype=np.uint16)
    # road=0 sidewalk=1 person=10 car=12 in the 16-class order
    np.testing.assert_array_equal(encode(raw, "synthia", 16), [[0, 1, 10], [12, 255, 255]])


def test_unknown_negative_and_large_ids_become_ignore():
    raw = np.array([-1, -300, 34, 200, 255, 7, 65535, 70000], dtype=np.int64)
    np.testing.assert_array_equal(encode(raw, "cityscapes"), [255, 255, 255, 255, 255, 0, 255, 255])
    np.testing.assert_array_equal(
        encode(np.array([23, 40000, 65535], np.uint16), "synthia", 16), [255, 255, 255]
    )


def test_encode_keeps_shape_and_rejects_floats():
    raw = np.full((2, 3, 4), 26, dtype=np.int32)
    out = encode(raw, "gta5")
    assert out.shape == (2, 3, 4) and (out == 13).all()
    with pytest.raises(ValueError, match="integers"):
        encode(np.zeros(3, np.float32), "gta5")


def test_bad_dataset_or_num_classes_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="cityscapes, gta5, synthia"):
        encode(np.zeros(1, np.uint8), "kitti")
    with pytest.raises(ValueError, match="13, 16, 19"):
        encode(np.zeros(1, np.uint8), "gta5", num_classes=20)


def test_palettes_hold_the_official_colours_in_class_order():
    assert PALETTES[19].shape == (19, 3) and PALETTES[19].dtype == np.uint8
    assert tuple(PALETTES[19][0]) == (128, 64, 128)  # road
    assert tuple(PALETTES[19][18]) == (119, 11, 32)  # bicycle
    assert tuple(PALETTES[16][9]) == (70, 130, 180)  # sky is 10th of 16
    assert tuple(PALETTES[13][3]) == (250, 170, 30)  # traffic light is 4th of 13
    pic = colorize(np.array([[0, 255]], np.uint8), 19)
    np.testing.assert_array_equal(pic, [[[128, 64, 128], [0, 0, 0]]])
