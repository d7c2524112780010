"""GTA5 / SYNTHIA / Cityscapes loaders and `check_dataset` on tiny fixtures in the real formats."""

from __future__ import annotations

import logging
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gtaray.data.check import check_dataset
from gtaray.data.cityscapes import Cityscapes
from gtaray.data.gta5 import GTA5
from gtaray.data.io import DataError, read_label, resize_label
from gtaray.data.synthia import Synthia


def write_png16(path: Path, arr: np.ndarray) -> None:
    """16-bit RGB PNG written by hand (PIL cannot), as SYNTHIA ships its labels."""
    h, w, _ = arr.shape
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def write_rgb(path: Path, h: int, w: int, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def write_ids(path: Path, ids: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = ids.astype(np.uint8)
    im = Image.fromarray(ids, mode="L")
    if palette:  # GTA5 labels are palette PNGs whose indices are the ids
        im = Image.frombytes("P", im.size, ids.tobytes())
        im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    im.save(path)


def make_gta5(root: Path) -> Path:
    ids = np.full((8, 16), 7, np.uint8)  # road
    ids[:4] = 23  # sky on top
    for name in ("00001.png", "00002.png"):
        write_rgb(root / "images" / name, 8, 16)
        write_ids(root / "labels" / name, ids, palette=True)
    write_rgb(root / "images" / "00003.png", 8, 16)
    write_ids(root / "labels" / "00003.png", np.repeat(ids, 2, axis=0), palette=True)  # 16x16
    return root


def make_synthia(root: Path) -> Path:
    lab = np.zeros((6, 10, 3), np.uint16)
    lab[..., 0] = 3  # road
    lab[:, 5:, 0] = 8  # car on the right
    lab[0, 0, 0] = 22  # lanemarking -> ignore
    lab[..., 1] = 1000  # instance ids must not leak into the class
    for name in ("0000000.png", "0000001.png"):
        write_rgb(root / "RGB" / name, 6, 10)
        write_png16(root / "GT" / "LABELS" / name, lab)
    return root


def make_cityscapes(root: Path) -> Path:
    ids = np.full((4, 8), 26, np.uint8)  # car
    ids[:, :2] = 1  # ego vehicle -> ignore
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for city in cities:
            stem = f"{city}_000000_000019"
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 4, 8)
            write_ids(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            write_ids(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", ids)
    return root


def test_sixteen_bit_label_reads_class_id_from_first_channel(tmp_path):
    lab = np.zeros((3, 4, 3), np.uint16)
    lab[..., 0] = [[1, 2, 3, 300]] * 3
    lab[..., 1] = 4242
    write_png16(tmp_path / "l.png", lab)
    out = read_label(tmp_path / "l.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, lab[..., 0])


def test_nearest_label_resize_keeps_ids():
    lab = np.array([[1, 2], [3, 4]], np.uint8)
    np.testing.assert_array_equal(resize_label(lab, 4, 2), [[1, 1, 2, 2], [3, 3, 4, 4]])


def test_gta5_samples_are_resized_and_encoded(tmp_path):
    ds = GTA5(make_gta5(tmp_path / "gta5"), width=8, height=4)
    assert len(ds) == 3
    s = ds[0]
    assert s["image"].shape == (3, 4, 8) and s["rgb"].shape == (3, 4, 8)
    assert s["label"].dtype == torch.int64
    assert (s["label"][:2] == 10).all() and (s["label"][2:] == 0).all()  # sky over road
    assert torch.allclose(s["rgb"], torch.full_like(s["rgb"], 100 / 255))


def test_gta5_label_of_other_size_is_resized_to_its_image_with_one_warning(tmp_path, caplog):
    ds = GTA5(make_gta5(tmp_path / "gta5"), width=16, height=8)
    with caplog.at_level(logging.WARNING, logger="gtaray.data.io"):
        a, b = ds[2], ds[2]
    assert a["label"].shape == (8, 16)
    assert (a["label"][:4] == 10).all() and (a["label"][4:] == 0).all()
    assert torch.equal(a["label"], b["label"])
    warnings = [r for r in caplog.records if "00003.png" in r.getMessage()]
    assert len(warnings) == 1


def test_datasets_pickle_for_spawned_dataloader_workers(tmp_path):
    ds = Cityscapes(make_cityscapes(tmp_path / "cs"), "train", width=8, height=4)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[1]["label"], ds[1]["label"])
    syn = pickle.loads(pickle.dumps(Synthia(make_synthia(tmp_path / "syn"), 10, 6)))
    assert len(syn) == 2


def test_gta5_indices_select_a_subset(tmp_path):
    ds = GTA5(make_gta5(tmp_path / "gta5"), width=8, height=4, indices=[2])
    assert len(ds) == 1 and ds.paths(0)[0].name == "00003.png"


def test_synthia_sixteen_bit_labels_encode_in_the_16_class_protocol(tmp_path):
    ds = Synthia(make_synthia(tmp_path / "syn"), width=10, height=6)
    label = ds[1]["label"]
    assert label[0, 0] == 255  # lanemarking
    assert (label[1:, :5] == 0).all()  # road
    assert (label[:, 5:] == CLASSES_16.index("car")).all()


CLASSES_16 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle",
)  # fmt: skip


def test_cityscapes_splits_pair_images_with_label_ids(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    train = Cityscapes(root, "train", width=8, height=4)
    val = Cityscapes(root, "val", width=4, height=2, num_classes=16)
    assert len(train) == 2 and len(val) == 1
    assert train.paths(1)[1].name == "bochum_000000_000019_gtFine_labelIds.png"
    lab = train[0]["label"]
    assert (lab[:, :2] == 255).all() and (lab[:, 2:] == 13).all()
    assert val[0]["label"].shape == (2, 4) and val[0]["label"][0, 3] == 12
    with pytest.raises(ValueError, match="train, val"):
        Cityscapes(root, "test", width=8, height=4)


def test_native_labels_keep_the_label_files_size(tmp_path):
    """Evaluation at the label resolution: images shrink to the input size, labels do not."""
    root = make_cityscapes(tmp_path / "cs")
    val = Cityscapes(root, "val", width=4, height=2, native_labels=True)
    sample = val[0]
    assert sample["image"].shape == (3, 2, 4)
    assert sample["label"].shape == (4, 8) and (sample["label"][:, :2] == 255).all()


def test_missing_label_is_an_error_naming_the_image(tmp_path):
    root = make_gta5(tmp_path / "gta5")
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"images/00002\.png"):
        GTA5(root, width=8, height=4)


def test_missing_or_empty_directory_is_an_error_naming_it(tmp_path):
    root = make_synthia(tmp_path / "syn")
    for f in (root / "RGB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="RGB"):
        Synthia(root, width=8, height=4)
    with pytest.raises(DataError, match="leftImg8bit"):
        Cityscapes(tmp_path / "nothing", "val", width=8, height=4)


def test_corrupt_png_is_an_error_naming_the_file(tmp_path):
    root = make_gta5(tmp_path / "gta5")
    bad = root / "images" / "00002.png"
    bad.write_bytes(bad.read_bytes()[:50])  # truncated inside the pixel data
    ds = GTA5(root, width=8, height=4)
    with pytest.raises(DataError, match=r"00002\.png"):
        ds[1]


def test_check_reports_counts_for_a_complete_dataset(tmp_path):
    report = check_dataset(make_cityscapes(tmp_path / "cs"), "cityscapes", workers=2)
    assert report.usable
    assert report.counts == {"train": 2, "val": 1}
    assert report.missing_pairs == [] and report.unreadable == []
    assert report.lines()[-1].strip() == "usable: yes"


def test_check_lists_missing_pairs_and_unreadable_files(tmp_path):
    root = make_synthia(tmp_path / "syn")
    write_rgb(root / "RGB" / "0000009.png", 6, 10)  # no label
    corrupt = root / "GT" / "LABELS" / "0000001.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = check_dataset(root, "synthia", workers=2)
    assert not report.usable
    assert report.counts == {"all": 3}
    assert report.missing_pairs == [str(root / "RGB" / "0000009.png")]
    assert report.unreadable == [str(corrupt)]
    text = "\n".join(report.lines())
    assert str(corrupt) in text and "0000009.png" in text and "usable: NO" in text


def test_check_notes_gta5_size_mismatch_without_failing(tmp_path):
    report = check_dataset(make_gta5(tmp_path / "gta5"), "gta5", workers=2)
    assert report.usable and report.counts == {"all": 3}
    assert report.mismatched == [str(tmp_path / "gta5" / "labels" / "00003.png")]


def test_check_reports_missing_label_directory(tmp_path):
    root = make_gta5(tmp_path / "gta5")
    for f in (root / "labels").iterdir():
        f.unlink()
    (root / "labels").rmdir()
    report = check_dataset(root, "gta5")
    assert not report.usable and report.counts == {"all": 3}
    assert any(str(root / "labels") in e for e in report.errors)
