"""Broken datasets in the real on-disk formats: every error names the file or folder.

Layout problems are refused by the sweep's preflight (`check_inputs`, before Ray starts); files
that do not decode are found by `gtaray data check`, which reads every file (a trial that meets
one fails with the same message)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gtaray.config import load_experiment
from gtaray.data.check import check_dataset
from gtaray.errors import DataError
from gtaray.preflight import check_inputs
from tests.conftest import EXPERIMENTS, assert_one_line_error, no_ray_env, run_cli
from tests.reliability.tally import count
from tests.test_loaders import make_cityscapes, make_gta5, make_synthia, write_ids, write_rgb


def real_pair(root: Path, source: str = "gta5"):
    """A GTA5 (or SYNTHIA) -> Cityscapes experiment over tiny fixtures under root."""
    (make_gta5 if source == "gta5" else make_synthia)(root / source)
    make_cityscapes(root / "cityscapes")
    return load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"data.source={source}", "data.target=cityscapes", f"data.root={root}",
            "data.width=64", "data.height=32", "data.num_classes=16", "data.source_train=null",
            "data.target_train=null", "data.source_val=1", "data.target_val=1",
            "data.target_test=1",
        ],
    )  # fmt: skip


def _missing_root(root: Path) -> Path:
    shutil.rmtree(root / "gta5")
    return root / "gta5" / "images"


def _empty_split(root: Path) -> Path:
    folder = root / "cityscapes" / "leftImg8bit" / "val" / "frankfurt"
    for png in folder.glob("*.png"):
        png.unlink()
    return root / "cityscapes" / "leftImg8bit" / "val"


def _image_without_label(root: Path) -> Path:
    image = root / "gta5" / "images" / "00004.png"
    write_rgb(image, 8, 16)
    return image


def _no_label_folder(root: Path) -> Path:
    shutil.rmtree(root / "cityscapes" / "gtFine")
    return root / "cityscapes" / "gtFine"


@pytest.mark.parametrize(
    ("break_it", "source"),
    [
        (_missing_root, "gta5"),
        (_empty_split, "gta5"),
        (_image_without_label, "gta5"),
        (_no_label_folder, "gta5"),
    ],
)
def test_layout_problems_are_refused_before_ray_naming_the_path(tmp_path, break_it, source):
    exp = real_pair(tmp_path, source)
    check_inputs(exp)  # the intact fixture passes
    path = break_it(tmp_path)
    with pytest.raises(DataError, match=str(path)):
        check_inputs(exp)
    count("bad data files")


CS_TRAIN = "{}/{}_000000_000019_leftImg8bit.png"  # a name in a Cityscapes list
Lists = dict[str, list[str] | None]  # split -> the list's lines (None: no such file)


def _listed_image_missing(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    image = root / "gta5" / "images" / "00007.png"
    return {"source_train": ["00001.png", "00007.png"], "source_val": ["00003.png"]}, [
        f"{lists / 'source_train.txt'}:2",
        f"image not found: {image}",
    ]


def _train_val_leakage(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    aachen, bochum = CS_TRAIN.format("aachen", "aachen"), CS_TRAIN.format("bochum", "bochum")
    image = root / "cityscapes" / "leftImg8bit" / "train" / bochum
    return {"target_train": [aachen, bochum], "target_val": [bochum]}, [
        f"{lists / 'target_val.txt'}:1",
        str(image),
        f"{lists / 'target_train.txt'}:2",
        "leakage",
    ]


def _empty_list(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    return {"source_train": ["# to do", ""], "source_val": ["00003.png"]}, [
        str(lists / "source_train.txt"),
        "lists no images",
    ]


def _no_list_file(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    return {"source_train": ["00001.png"], "source_val": None}, [
        str(lists / "source_val.txt"),
        "list file not found",
    ]


def _listed_twice(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    return {"source_train": ["00001.png", "00002.png", "00001.png"], "source_val": ["00003.png"]}, [
        f"{lists / 'source_train.txt'}:3",
        "00001.png is listed twice (also line 1)",
    ]


def _no_city_folder(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    return {"target_test": ["frankfurt_000000_000019_leftImg8bit.png"]}, [
        f"{lists / 'target_test.txt'}:1",
        "not a cityscapes image name",
        "leftImg8bit/val",
    ]


def _listed_image_without_label(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    (root / "gta5" / "labels" / "00002.png").unlink()
    image = root / "gta5" / "images" / "00002.png"
    return {"source_train": ["00002.png"], "source_val": ["00003.png"]}, [
        f"{lists / 'source_train.txt'}:1",
        f"no label for image {image}",
    ]


def _name_outside_the_folder(root: Path, lists: Path) -> tuple[Lists, list[str]]:
    return {"source_train": ["../labels/00001.png"], "source_val": ["00003.png"]}, [
        f"{lists / 'source_train.txt'}:1",
        "relative to",
        str(root / "gta5" / "images"),
    ]


@pytest.mark.parametrize(
    "break_it",
    [
        _listed_image_missing,
        _train_val_leakage,
        _empty_list,
        _no_list_file,
        _listed_twice,
        _no_city_folder,
        _listed_image_without_label,
        _name_outside_the_folder,
    ],
)
def test_split_list_problems_are_refused_before_ray_naming_the_list(tmp_path, break_it):
    """data.split_lists: one line naming the list file (and line) and the image."""
    root, folder = tmp_path / "data", tmp_path / "lists"
    exp = real_pair(root)
    folder.mkdir()
    lists, fragments = break_it(root, folder)
    for split, lines in lists.items():
        if lines is not None:
            (folder / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    exp = exp.with_updates(
        {f"data.split_lists.{split}": str(folder / f"{split}.txt") for split in lists}
    )
    with pytest.raises(DataError) as err:
        check_inputs(exp)
    message = str(err.value)
    assert "\n" not in message
    key = next(k for k in lists if f"{k}.txt" in fragments[0])
    assert message.startswith(f"data.split_lists.{key}: ")  # the CLI puts the file first
    for fragment in fragments:
        assert fragment in message, message
    count("bad data files")


def _truncated_png(root: Path) -> Path:
    png = root / "gta5" / "images" / "00002.png"
    png.write_bytes(png.read_bytes()[:45])  # the signature, IHDR and a cut IDAT
    return png


def _not_an_image(root: Path) -> Path:
    png = root / "gta5" / "labels" / "00001.png"
    png.write_text("this is a text file with a .png name\n")
    return png


def _eight_bit_synthia_label(root: Path) -> Path:
    label = root / "synthia" / "GT" / "LABELS" / "0000001.png"
    write_ids(label, np.full((6, 10), 3, np.uint8))
    return label


def _cityscapes_label_of_other_size(root: Path) -> Path:
    label = next((root / "cityscapes" / "gtFine" / "train").rglob("*_labelIds.png"))
    write_ids(label, np.full((2, 2), 7, np.uint8))
    return label


@pytest.mark.parametrize(
    ("break_it", "source", "dataset"),
    [
        (_truncated_png, "gta5", "gta5"),
        (_not_an_image, "gta5", "gta5"),
        (_eight_bit_synthia_label, "synthia", "synthia"),
        (_cityscapes_label_of_other_size, "gta5", "cityscapes"),
    ],
)
def test_files_that_do_not_decode_are_found_by_data_check(tmp_path, break_it, source, dataset):
    real_pair(tmp_path, source)
    assert check_dataset(tmp_path / dataset, dataset, workers=2).usable
    path = break_it(tmp_path)
    report = check_dataset(tmp_path / dataset, dataset, workers=2)
    assert not report.usable
    assert str(path) in "\n".join(report.lines())
    count("bad data files")


def test_the_commands_name_the_path_in_one_line(tmp_path):
    """The same refusals from the command line: `sweep` one line and exit 2 before Ray;
    `data check ROOT` takes data.root and lists the broken file."""
    exp = real_pair(tmp_path)
    config = tmp_path / "real.yaml"
    config.write_text(exp.model_dump_json())  # JSON is YAML
    image = _image_without_label(tmp_path)
    ray_tmp, env = no_ray_env(tmp_path)
    result = run_cli("sweep", str(config), "--out", str(tmp_path / "out"), env=env)
    assert_one_line_error(result, str(image))
    assert list(ray_tmp.iterdir()) == []

    label = _truncated_png(tmp_path)
    checked = run_cli("data", "check", str(tmp_path), "--dataset", "gta5")
    assert checked.returncode == 2 and str(label) in checked.stdout
    # The dataset folder itself is not data.root: one line that says which folder to give.
    wrong = run_cli("data", "check", str(tmp_path / "gta5"), "--dataset", "gta5")
    assert_one_line_error(wrong, str(tmp_path / "gta5" / "gta5"), f"here: {tmp_path}")
    count("bad data files", 2)
