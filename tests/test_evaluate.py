"""Evaluation: mIoU at the label files' own resolution, and the adaptation diagnostics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gtaray.config import load_experiment
from gtaray.data.io import resize_label
from gtaray.data.splits import make_splits
from gtaray.data.synthetic import example_batch
from gtaray.evaluate import evaluate, evaluate_split, mean_images, resize_prediction
from gtaray.method import diagnostics, lsd

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


def test_prediction_resize_is_nearest_on_pixel_centres():
    pred = torch.randint(0, 19, (4, 8))
    # the same rule as the loaders' label resize, at any size ...
    want = resize_label(pred.numpy(), 24, 10)
    assert np.array_equal(resize_prediction(pred, (10, 24)).numpy(), want)
    # ... and PIL's NEAREST (the authors' resize) at Cityscapes' factor 2 (1024x512 -> 2048x1024)
    pil = Image.fromarray(pred.numpy().astype(np.uint8)).resize((16, 8), Image.Resampling.NEAREST)
    assert np.array_equal(resize_prediction(pred, (8, 16)).numpy(), np.array(pil))
    assert resize_prediction(pred, (4, 8)) is pred


class BigLabels(torch.utils.data.Dataset):
    """Input-size images with labels at 4x the size, all one class: a perfect F+C scores 100."""

    def __init__(self, base, label_class: int) -> None:
        self.base, self.label_class = base, label_class

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        s = dict(self.base[i])
        h, w = s["label"].shape
        s["label"] = torch.full((4 * h, 4 * w), self.label_class, dtype=torch.long)
        return s


def test_confusion_counts_every_label_pixel_at_its_own_resolution():
    exp = load_experiment(SMOKE, ["method.variant=source_only", "model.dropout=0"])
    torch.manual_seed(0)
    nets = lsd.build(exp)
    splits = make_splits(exp)
    ds = BigLabels(splits.target_test, label_class=2)
    cm, _ = evaluate_split(nets, ds, exp, torch.device("cpu"))
    h, w = exp.data.height, exp.data.width
    assert cm.sum() == len(ds) * 16 * h * w  # every full-size label pixel, once
    assert cm[2].sum() == cm.sum()


@pytest.mark.parametrize("variant", ["full", "within_domain", "no_aux", "feature_d", "source_only"])
def test_diagnostics_lie_in_their_ranges(variant):
    exp = load_experiment(SMOKE, [f"method.variant={variant}"])
    torch.manual_seed(0)
    nets = lsd.build(exp)
    opts = lsd.make_optimizers(nets, exp)
    lsd.train_step(nets, opts, example_batch(exp), exp)
    splits = make_splits(exp)
    out = evaluate(nets, splits, exp, torch.device("cpu"), mean_images(nets, splits))
    diag = {k: v for k, v in out.items() if k.startswith("diag/")}
    if variant in ("full", "within_domain", "no_aux"):
        assert set(diag) == {
            "diag/g_l1",
            "diag/mean_l1",
            "diag/g_l1_vs_mean",
            "diag/d_fake_domain_acc",
        }
        assert 0 < diag["diag/g_l1"] < 1 and 0 < diag["diag/mean_l1"] < 1
        ratio = diag["diag/g_l1"] / diag["diag/mean_l1"]
        assert diag["diag/g_l1_vs_mean"] == pytest.approx(ratio)
        assert 0 <= diag["diag/d_fake_domain_acc"] <= 1
    elif variant == "feature_d":
        assert set(diag) == {"diag/d_feature_domain_acc"}
        assert 0 <= diag["diag/d_feature_domain_acc"] <= 1
    else:
        assert diag == {}
    assert all(math.isfinite(v) for v in diag.values())


def test_fake_domain_accuracy_is_one_when_d_knows_and_half_when_it_cannot():
    """A D that answers "own domain" scores 1; one that always says src-fake scores 0.5."""
    exp = load_experiment(SMOKE, ["method.variant=full"])
    torch.manual_seed(0)
    nets = lsd.build(exp)
    batch = example_batch(exp)
    mean = batch["src_rgb"].mean(0)

    class Fixed(torch.nn.Module):
        def __init__(self, label_for) -> None:
            super().__init__()
            self.label_for = label_for

        def forward(self, rgb):
            logits = torch.zeros(rgb.shape[0], 4, rgb.shape[2] // 8, rgb.shape[3] // 8)
            logits[:, self.label_for] = 10.0
            return logits, None

    features = nets.F(batch["src_image"])
    for label, src_acc in ((1, 1.0), (3, 0.0)):  # always src-fake / always tgt-fake
        nets.D = Fixed(label)
        sums = diagnostics.batch_sums(nets, features, batch["src_rgb"], "src", mean)
        assert diagnostics.summarize(sums)["diag/d_fake_domain_acc"] == src_acc
    nets.D = Fixed(1)
    both = diagnostics.batch_sums(nets, features, batch["src_rgb"], "src", mean)
    both += diagnostics.batch_sums(nets, features, batch["src_rgb"], "tgt", mean)
    assert diagnostics.summarize(both)["diag/d_fake_domain_acc"] == 0.5


@pytest.mark.parametrize(
    "resolution, label_shape, labelled",
    [("label", (4, 8), 4 * 6), ("input", (32, 64), 32 * 48)],  # 2 of 8 columns are ego vehicle
)
def test_real_evaluation_splits_keep_labels_at_their_own_size(
    tmp_path, resolution, label_shape, labelled
):
    """GTA5 -> Cityscapes on fixtures in the real formats: with eval_resolution=label the val and
    test splits keep the label files' size (Cityscapes fixture: 8x4); training labels never do."""
    from tests.test_loaders import make_cityscapes, make_gta5

    make_gta5(tmp_path / "gta5")
    make_cityscapes(tmp_path / "cityscapes")
    exp = load_experiment(
        SMOKE,
        [
            "data.source=gta5", "data.target=cityscapes", f"data.root={tmp_path}",
            "data.width=64", "data.height=32", "data.source_val=1", "data.target_val=1",
            "data.target_test=1", f"data.eval_resolution={resolution}",
        ],
    )  # fmt: skip
    splits = make_splits(exp)
    assert splits.target_test[0]["label"].shape == label_shape
    assert splits.target_val[0]["label"].shape == label_shape
    assert splits.target_train[0]["label"].shape == (32, 64)
    assert splits.source_train[0]["label"].shape == (32, 64)
    assert splits.target_test[0]["image"].shape == (3, 32, 64)
    torch.manual_seed(0)
    nets = lsd.build(exp.with_updates({"method.variant": "source_only"}))
    cm, _ = evaluate_split(nets, splits.target_test, exp, torch.device("cpu"))
    assert cm.sum() == labelled  # every labelled pixel of the label map, at its size
