"""data.train_crop / eval_crop, data.split_lists and model.input_format, on fixtures in the
datasets' real on-disk formats.

Fixture images are ramps: red = row, green = column, blue = 10 x the image's number, so a crop's
offset and the image it came from can be read back off any sample that was not resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gtaray.config import load_experiment
from gtaray.data.cityscapes import Cityscapes
from gtaray.data.gta5 import GTA5
from gtaray.data.io import resize_image, resize_label
from gtaray.data.labels import encode
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import make_splits
from gtaray.data.synthetic import example_batch
from gtaray.data.synthia import Synthia
from gtaray.data.transforms import aspect_window, to_sample
from gtaray.errors import ConfigError
from tests.conftest import EXPERIMENTS, assert_one_line_error, no_ray_env, run_cli
from tests.test_loaders import write_ids, write_png16

# Cityscapes label ids of the 19 train classes: a label of these varies along both axes.
TRAIN_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CAFFE_BGR = (104.00698793, 116.66876762, 122.67891434)


def ramp(h: int, w: int, number: int = 0) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.arange(h)[:, None]
    image[..., 1] = np.arange(w)[None, :]
    image[..., 2] = 10 * number
    return image


def label_ids(h: int, w: int) -> np.ndarray:
    """Cityscapes ids (GTA5 and Cityscapes label files) that differ row to row and column to
    column."""
    y, x = np.mgrid[:h, :w]
    return np.asarray(TRAIN_IDS, np.uint8)[(y + x) % len(TRAIN_IDS)]


def synthia_ids(h: int, w: int) -> np.ndarray:
    """SYNTHIA's 16-bit 3-channel label: class id (1..21) in channel 0, instance in 1."""
    y, x = np.mgrid[:h, :w]
    lab = np.zeros((h, w, 3), np.uint16)
    lab[..., 0] = 1 + (y + x) % 21
    lab[..., 1] = 777
    return lab


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_gta5_ramps(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """GTA5 layout: images/0000k.png (k from 1) of the given (width, height), palette labels."""
    for k, (w, h) in enumerate(sizes):
        write_image(root / "images" / f"{k + 1:05d}.png", ramp(h, w, k))
        write_ids(root / "labels" / f"{k + 1:05d}.png", label_ids(h, w), palette=True)
    return root


def make_synthia_ramps(root: Path, sizes: list[tuple[int, int]]) -> Path:
    for k, (w, h) in enumerate(sizes):
        write_image(root / "RGB" / f"{k:07d}.png", ramp(h, w, k))
        write_png16(root / "GT" / "LABELS" / f"{k:07d}.png", synthia_ids(h, w))
    return root


def cityscapes_name(city: str, frame: int) -> str:
    return f"{city}/{city}_000000_{frame:06d}_leftImg8bit.png"


def make_cityscapes_ramps(
    root: Path, split: str, cities: dict[str, int], size: tuple[int, int]
) -> list[str]:
    """Cityscapes layout for one split: `cities[c]` frames per city; their names under
    leftImg8bit/<split>, sorted (the loader's order), numbered in that order."""
    w, h = size
    names = sorted(cityscapes_name(c, f) for c, n in cities.items() for f in range(n))
    for k, name in enumerate(names):
        write_image(root / "leftImg8bit" / split / name, ramp(h, w, k))
        label = name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        write_ids(root / "gtFine" / split / label, label_ids(h, w))
    return names


def rows(sample: dict) -> int:
    """The first row of the original image a sample shows (no resize)."""
    return round(sample["rgb"][0, 0, 0].item() * 255)


def cols(sample: dict) -> int:
    return round(sample["rgb"][1, 0, 0].item() * 255)


def number(sample: dict) -> int:
    return round(sample["rgb"][2, 0, 0].item() * 255) // 10


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_aspect_window_of_the_released_datasets_at_1024x512():
    assert aspect_window(1914, 1052, 1024, 512) == (1914, 957)  # GTA5, 1.82: full width
    assert aspect_window(1280, 760, 1024, 512) == (1280, 640)  # SYNTHIA, 1.68: full width
    assert aspect_window(2048, 1024, 1024, 512) == (2048, 1024)  # Cityscapes: already 2:1
    assert aspect_window(2200, 1000, 1024, 512) == (2000, 1000)  # wider: full height


def test_random_crop_of_a_gta5_like_image_keeps_the_full_width(tmp_path):
    """182x100 (GTA5's 1.82) at 182x91: every row offset 0..9 possible, the label follows."""
    ds = GTA5(make_gta5_ramps(tmp_path / "gta5", [(182, 100)]), 182, 91, crop="random", seed=1)
    encoded = encode(label_ids(100, 182), "gta5", 19)
    tops = set()
    for epoch in range(15):
        s = ds.draw(0, epoch)
        top = rows(s)
        assert s["rgb"].shape == (3, 91, 182) and cols(s) == 0 and 0 <= top <= 9
        np.testing.assert_array_equal(
            s["rgb"][0].mul(255).round().numpy()[:, 0], top + np.arange(91)
        )
        np.testing.assert_array_equal(s["label"].numpy(), encoded[top : top + 91])
        tops.add(top)
    assert len(tops) > 3  # fresh offsets, not one fixed crop


def test_random_crop_of_a_wider_image_keeps_the_full_height(tmp_path):
    ds = GTA5(make_gta5_ramps(tmp_path / "gta5", [(110, 50)]), 100, 50, crop="random", seed=0)
    encoded = encode(label_ids(50, 110), "gta5", 19)
    lefts = set()
    for epoch in range(20):
        s = ds.draw(0, epoch)
        left = cols(s)
        assert rows(s) == 0 and 0 <= left <= 10
        np.testing.assert_array_equal(s["label"].numpy(), encoded[:, left : left + 100])
        lefts.add(left)
    assert len(lefts) > 3
    assert cols(ds[0]) == 5  # ds[i]: the centre crop


def test_synthia_like_image_is_cropped_then_resized(tmp_path):
    """168x100 (SYNTHIA's 1.68) at 64x32: each draw is one of the 17 row offsets of the 168x84
    window, resized; the 16-bit label is cropped to the same rows."""
    ds = Synthia(make_synthia_ramps(tmp_path / "syn", [(168, 100)]), 64, 32, crop="random")
    image, encoded = ramp(100, 168), encode(synthia_ids(100, 168)[..., 0], "synthia", 16)
    candidates = [
        (torch.from_numpy(resize_image(image[t : t + 84].copy(), 64, 32)).permute(2, 0, 1),
         torch.from_numpy(resize_label(encoded[t : t + 84], 64, 32)).long())
        for t in range(17)
    ]  # fmt: skip
    seen = set()
    for epoch in range(12):
        s = ds.draw(0, epoch)
        got = s["rgb"].mul(255).round().byte()
        (top,) = [t for t, (img, _) in enumerate(candidates) if torch.equal(got, img)]
        assert torch.equal(s["label"], candidates[top][1])
        seen.add(top)
    assert len(seen) > 3
    assert torch.equal(ds[0]["rgb"].mul(255).round().byte(), candidates[8][0])  # centre


def test_random_crop_depends_on_seed_index_and_epoch_only(tmp_path):
    root = make_gta5_ramps(tmp_path / "gta5", [(182, 120)] * 4)

    def crops(seed: int, epoch: int) -> list[int]:
        ds = GTA5(root, 182, 91, crop="random", seed=seed)
        return [rows(ds.draw(i, epoch)) for i in range(len(ds))]

    ds = GTA5(root, 182, 91, crop="random", seed=0)
    assert same(ds.draw(2, 5), ds.draw(2, 5))
    assert crops(0, 5) == crops(0, 5)  # a fresh dataset object: nothing kept between calls
    assert crops(0, 5) != crops(0, 6)
    assert crops(0, 5) != crops(1, 5)
    assert all(0 <= t <= 29 for t in crops(0, 5) + crops(1, 6))
    np.random.seed(0)
    torch.manual_seed(0)
    before = crops(0, 5)
    np.random.seed(1)
    torch.manual_seed(1)
    assert crops(0, 5) == before  # global RNG state plays no part
    assert [rows(ds[i]) for i in range(4)] == [14] * 4  # ds[i]: the centre crop, always
    whole = GTA5(root, 182, 91)  # crop none: the whole image resized, draw = ds[i]
    assert same(whole.draw(1, 3), whole[1]) and whole[1]["rgb"].shape == (3, 91, 182)


def test_stream_crops_each_visit_anew_the_same_with_workers_and_after_restore(tmp_path):
    source = GTA5(
        make_gta5_ramps(tmp_path / "gta5", [(182, 120)] * 3), 182, 91, crop="random", seed=4
    )
    make_cityscapes_ramps(tmp_path / "cs", "train", {"aachen": 2}, (182, 110))
    target = Cityscapes(tmp_path / "cs", "train", 182, 91, crop="random", seed=4)
    kw = dict(batch_size=2, seed=4)
    inline = TripletStream(source, target, **kw)
    batches = [next(inline) for _ in range(9)]  # 6 source and 9 target epochs
    # Each visit is the dataset's draw for that visit's epoch (len(ds) visits an epoch).
    for prefix, ds in (("src", source), ("tgt", target)):
        visits = [
            {k: b[f"{prefix}_{k}"][j] for k in ("image", "rgb", "label")}
            for b in batches
            for j in range(2)
        ]
        for n, sample in enumerate(visits):
            assert same(sample, ds.draw(number(sample), n // len(ds)))
        tops = {}
        for sample in visits:
            tops.setdefault(number(sample), set()).add(rows(sample))
        assert any(len(t) > 1 for t in tops.values())  # one image, other crops in other epochs

    loader = TripletStream(source, target, **kw, workers=2)
    assert all(same(next(loader), want) for want in batches)
    loader.close()

    again = TripletStream(source, target, **kw)
    for _ in range(4):
        next(again)
    state = again.state_dict()
    assert set(state) == {"seed", "world_size", "src", "tgt"}  # the format is unchanged
    restored = TripletStream(source, target, **kw, workers=2)
    restored.load_state_dict(state)
    assert all(same(next(restored), want) for want in batches[4:])
    restored.close()


def test_center_crop_of_eval_images_and_of_native_labels(tmp_path):
    make_cityscapes_ramps(tmp_path / "cs", "val", {"frankfurt": 1}, (182, 110))
    image, encoded = ramp(110, 182), encode(label_ids(110, 182), "cityscapes", 19)
    window = image[9:100].copy(), encoded[9:100]  # 182x91, centred in 19 spare rows

    native = Cityscapes(tmp_path / "cs", "val", 64, 32, crop="center", native_labels=True)
    s = native[0]
    np.testing.assert_array_equal(
        s["rgb"].mul(255).round().byte().permute(1, 2, 0).numpy(), resize_image(window[0], 64, 32)
    )
    np.testing.assert_array_equal(s["label"].numpy(), window[1])  # the label file's pixels
    assert same(native.draw(0, 7), s)  # centre crops have no epoch

    resized = Cityscapes(tmp_path / "cs", "val", 64, 32, crop="center")[0]
    np.testing.assert_array_equal(resized["label"].numpy(), resize_label(window[1], 64, 32))
    whole = Cityscapes(tmp_path / "cs", "val", 64, 32, native_labels=True)[0]
    assert whole["label"].shape == (110, 182)  # crop none: as before


def real_fixture(root: Path) -> dict[str, list[str]]:
    """GTA5 (5 images, 64x40) and Cityscapes (train 80x32, val 72x32) at a 64x32 training
    size: source crops rows, target crops columns, none needs a resize."""
    make_gta5_ramps(root / "gta5", [(64, 40)] * 5)
    train = make_cityscapes_ramps(
        root / "cityscapes", "train", {"aachen": 3, "bochum": 2}, (80, 32)
    )
    val = make_cityscapes_ramps(root / "cityscapes", "val", {"frankfurt": 3}, (72, 32))
    return {"train": train, "val": val}


def experiment(root: Path, *overrides: str):
    return load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            "data.source=gta5", "data.target=cityscapes", f"data.root={root}", "data.width=64",
            "data.height=32", "data.num_classes=19", "data.source_train=null",
            "data.target_train=null", "data.source_val=1", "data.target_val=1",
            "data.target_test=null", *overrides,
        ],
    )  # fmt: skip


def test_make_splits_crops_training_at_random_and_evaluation_at_the_centre(tmp_path):
    real_fixture(tmp_path)
    exp = experiment(
        tmp_path, "data.train_crop=random", "data.eval_crop=center", "data.eval_resolution=label",
        "train.seed=3",
    )  # fmt: skip
    splits = make_splits(exp)
    own = GTA5(tmp_path / "gta5", 64, 32, crop="random", seed=3, indices=range(4))
    for i in range(4):
        for epoch in range(3):
            assert same(splits.source_train.draw(i, epoch), own.draw(i, epoch))  # train.seed
    tops = {rows(splits.source_train.draw(0, e)) for e in range(10)}
    lefts = {cols(splits.target_train.draw(0, e)) for e in range(10)}
    assert len(tops) > 1 and tops <= set(range(9)) and len(lefts) > 1 and lefts <= set(range(17))
    test = splits.target_test[0]
    assert cols(test) == 4 and test["label"].shape == (32, 64)  # 72 wide: 4 columns each side
    expected = encode(label_ids(32, 72), "cityscapes", 19)[:, 4:68]
    np.testing.assert_array_equal(test["label"].numpy(), expected)
    assert rows(splits.source_val[0]) == 4 and cols(splits.target_val[0]) == 8

    plain = make_splits(experiment(tmp_path))  # the defaults: no crop, the whole image resized
    assert plain.target_test[0]["label"].shape == (32, 72)
    assert same(plain.source_train.draw(0, 5), plain.source_train[0])


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_split_lists_define_the_splits_in_list_order_capped_by_the_sizes(tmp_path):
    names = real_fixture(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    write_list(lists / "s_train.txt", ["# GTA5 train", "00005.png", "", "00002.png", "00004.png"])
    write_list(lists / "s_val.txt", ["00001.png", "00003.png"])
    write_list(lists / "t_train.txt", [names["train"][4], names["train"][0], names["train"][2]])
    write_list(lists / "t_val.txt", ["  " + names["train"][3] + "  "])  # spaces are trimmed
    write_list(lists / "t_test.txt", [names["val"][2], names["val"][1]])
    exp = experiment(
        tmp_path, "data.source_train=2", "data.source_val=null", "data.target_val=5",
        *(f"data.split_lists.{key}={lists / f}" for key, f in (
            ("source_train", "s_train.txt"), ("source_val", "s_val.txt"),
            ("target_train", "t_train.txt"), ("target_val", "t_val.txt"),
            ("target_test", "t_test.txt"),
        )),
    )  # fmt: skip
    splits = make_splits(exp)

    def images(ds) -> list[str]:
        return [str(ds.paths(i)[0].relative_to(ds.layout.image_dir)) for i in range(len(ds))]

    assert images(splits.source_train) == ["00005.png", "00002.png"]  # first 2: the cap
    assert images(splits.source_val) == ["00001.png", "00003.png"]
    assert images(splits.target_train) == [names["train"][i] for i in (4, 0, 2)]
    assert images(splits.target_val) == [names["train"][3]]
    assert images(splits.target_test) == [names["val"][2], names["val"][1]]
    assert splits.target_test.paths(0)[1].name == "frankfurt_000000_000002_gtFine_labelIds.png"
    assert number(splits.source_train[0]) == 4 and number(splits.target_test[0]) == 2


def test_input_formats_of_a_known_pixel():
    pixel = np.array([[[10, 20, 30]]], np.uint8)  # R, G, B
    label = np.zeros((1, 1), np.uint8)
    rgb = torch.tensor([10, 20, 30]) / 255
    imagenet = to_sample(pixel, label)  # the default: rgb_imagenet
    want = (rgb - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(imagenet["image"][:, 0, 0], want, atol=1e-6)
    caffe = to_sample(pixel, label, "bgr_caffe")
    want = torch.tensor([30 - CAFFE_BGR[0], 20 - CAFFE_BGR[1], 10 - CAFFE_BGR[2]])
    assert torch.allclose(caffe["image"][:, 0, 0], want, atol=1e-4)
    for sample in (imagenet, caffe):  # G's target and D's input: RGB in [0, 1] in both
        assert torch.allclose(sample["rgb"][:, 0, 0], rgb)
    with pytest.raises(ValueError, match="bgr_caffe"):
        to_sample(pixel, label, "bgr")


def caffe_of(rgb: torch.Tensor) -> torch.Tensor:
    """What bgr_caffe should give for (..., 3, H, W) RGB in [0, 1], written out by hand."""
    mean = torch.tensor(CAFFE_BGR).view(3, 1, 1)
    return torch.stack([rgb[..., 2, :, :], rgb[..., 1, :, :], rgb[..., 0, :, :]], -3) * 255 - mean


def test_every_split_and_batch_is_built_in_the_experiments_input_format(tmp_path):
    real_fixture(tmp_path)
    real = experiment(tmp_path, "model.input_format=bgr_caffe", "data.train_crop=random")
    synthetic = load_experiment(EXPERIMENTS / "smoke.yaml", ["model.input_format=bgr_caffe"])
    for exp in (real, synthetic):
        for name, ds in vars(make_splits(exp)).items():
            for sample in (ds[0], ds.draw(0, 1)) if hasattr(ds, "draw") else (ds[0],):
                assert torch.allclose(sample["image"], caffe_of(sample["rgb"]), atol=1e-3), name
    batch = example_batch(synthetic)
    for prefix in ("src", "tgt"):
        assert torch.allclose(batch[f"{prefix}_image"], caffe_of(batch[f"{prefix}_rgb"]), atol=1e-3)
    splits = make_splits(real)
    batch = next(TripletStream(splits.source_train, splits.target_train, 1, seed=0))
    assert torch.allclose(batch["src_image"], caffe_of(batch["src_rgb"]), atol=1e-3)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.train_crop=random", "data.train_crop"),
        ("data.eval_crop=center", "data.eval_crop"),
        ("data.split_lists.target_test=test.txt", "data.split_lists"),
    ],
)
def test_the_synthetic_pair_refuses_the_real_data_options(override, key):
    with pytest.raises(ConfigError, match=rf"smoke.yaml: {key}: only for real datasets"):
        load_experiment(EXPERIMENTS / "smoke.yaml", [override])


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("source_train", "source_val"),
        ("source_val", "source_train"),
        ("target_train", "target_val"),
        ("target_val", "target_train"),
    ],
)
def test_a_domains_train_and_val_lists_come_together(tmp_path, given, missing):
    with pytest.raises(ConfigError) as err:
        experiment(tmp_path, f"data.split_lists.{given}=list.txt")
    assert str(err.value) == (
        f"smoke.yaml: data.split_lists.{missing}: required with data.split_lists.{given} "
        "(a domain's train and val lists are given together)"
    )
    experiment(tmp_path, "data.split_lists.target_test=list.txt")  # the test list stands alone


def test_validate_refuses_a_lone_train_list_in_one_line(tmp_path):
    config = tmp_path / "lists.yaml"
    config.write_text(
        "name: t\ndata: {source: gta5, target: cityscapes, root: /data,\n"
        "       split_lists: {target_train: cs_train.txt}}\n"
    )
    result = run_cli("validate", str(config))
    assert_one_line_error(result, "lists.yaml", "data.split_lists.target_val", "target_train")


def test_sweep_refuses_a_listed_image_not_on_disk_before_ray(tmp_path):
    real_fixture(tmp_path / "data")
    train = write_list(tmp_path / "train.txt", ["00001.png", "# next: a typo", "00009.png"])
    val = write_list(tmp_path / "val.txt", ["00002.png"])
    exp = experiment(
        tmp_path / "data", f"data.split_lists.source_train={train}",
        f"data.split_lists.source_val={val}",
    )  # fmt: skip
    config = tmp_path / "real.yaml"
    config.write_text(exp.model_dump_json())  # JSON is YAML
    ray_tmp, env = no_ray_env(tmp_path)
    result = run_cli("sweep", str(config), "--out", str(tmp_path / "out"), env=env)
    image = tmp_path / "data" / "gta5" / "images" / "00009.png"
    assert_one_line_error(
        result, "real.yaml: data.split_lists.source_train", f"{train}:3", f"not found: {image}"
    )
    assert list(ray_tmp.iterdir()) == [] and not (tmp_path / "out").exists()
