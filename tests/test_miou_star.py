"""SYNTHIA's protocol: one 16-class model, scored as mIoU over 16 classes and as mIoU* over the
13 without wall, fence and pole, from the same confusion matrix; rows, protocols and report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtaray.config import load_experiment
from gtaray.data.labels import CLASSES
from gtaray.data.splits import make_splits
from gtaray.data.synthetic import example_batch
from gtaray.evaluate import evaluate
from gtaray.method import lsd
from gtaray.metrics import iou, subset_miou
from gtaray.results import iou_column, load_trials, trial_row, write_trial
from tests.conftest import EXPERIMENTS, run_cli

SMOKE = EXPERIMENTS / "smoke.yaml"
NAMES = list(CLASSES[16])


def hand_made_cm() -> np.ndarray:
    """16 classes: class i has 10 correct pixels and i pixels predicted as class (i+1) % 16;
    class 15 (bicycle) is never labelled and never predicted (NaN IoU)."""
    cm = np.zeros((16, 16), np.int64)
    for i in range(15):
        cm[i, i] = 10
        cm[i, (i + 1) % 15] = i
    return cm


def test_miou_star_is_the_mean_of_the_13_class_ious_of_the_same_matrix():
    cm = hand_made_cm()
    # By hand: IoU_i = tp / (row + column - tp); rows 10 + i, column 10 + (i - 1) (class 0 gets
    # class 14's 14 pixels).
    by_hand = {}
    for i in range(15):
        fp = 14 if i == 0 else i - 1
        by_hand[NAMES[i]] = 10 / (10 + i + fp)
    keep = [n for n in CLASSES[13] if n in by_hand]  # bicycle is absent: excluded, not 0
    want = sum(by_hand[n] for n in keep) / len(keep)
    miou, per_class = iou(cm)
    assert subset_miou(per_class, NAMES, CLASSES[13]) == pytest.approx(want, abs=1e-12)
    assert math.isnan(per_class[15])
    # not the 16-class mIoU: wall, fence and pole are left out
    assert miou == pytest.approx(sum(by_hand.values()) / 15, abs=1e-12)
    assert abs(miou - want) > 1e-3


def test_miou_star_names_classes_the_model_lacks():
    with pytest.raises(ValueError, match="not among"):
        subset_miou(np.zeros(13), list(CLASSES[13]), CLASSES[16])


def _trained_once(overrides: list[str]) -> dict:
    exp = load_experiment(SMOKE, ["method.variant=source_only", *overrides])
    torch.manual_seed(0)
    nets = lsd.build(exp)
    lsd.train_step(nets, lsd.make_optimizers(nets, exp), example_batch(exp), exp)
    return evaluate(nets, make_splits(exp), exp, torch.device("cpu"))


def test_a_16_class_evaluation_reports_miou_star_from_its_per_class_ious():
    out = _trained_once(["data.num_classes=16"])
    per_class = np.array([out[iou_column(n)] for n in NAMES])
    assert out["target_miou_13"] == pytest.approx(subset_miou(per_class, NAMES, CLASSES[13]))
    assert "target_miou_13" not in _trained_once([])  # 19 classes: no mIoU*


def test_rows_carry_miou_star_at_each_protocols_evaluation_and_the_report_prints_it(tmp_path):
    exp = load_experiment(SMOKE, ["data.num_classes=16", "train.iterations=20", "name=syn"])
    classes = NAMES
    for i, (seed, evals) in enumerate([(0, [(0.30, 0.5, 0.1), (0.20, 0.4, 0.2)]),
                                       (1, [(0.34, 0.6, 0.3), (0.24, 0.3, 0.1)])]):  # fmt: skip
        curve = [
            {"iteration": 10 * (j + 1), "target_miou": t, "target_miou_13": t + 0.05,
             "target_val_miou": tv, "source_val_miou": sv}
            for j, (t, tv, sv) in enumerate(evals)
        ]  # fmt: skip
        last = curve[-1] | {iou_column(n): 0.5 for n in classes}
        one = trial_row(
            exp.with_updates({"method.variant": "full", "train.seed": seed}),
            f"syn-t{i}", last | {"iteration": 20}, classes, None, curve,
        )  # fmt: skip
        one |= {"start_time": None, "end_time": None}
        for key in ("wall_seconds", "gtaray_version", "git_sha", "ray_version", "torch_version",
                    "optuna_version", "node_id"):  # fmt: skip
            one.setdefault(key, None)
        write_trial(one, classes, tmp_path)
    rows = load_trials(tmp_path).set_index("trial_id")
    assert rows.loc["syn-t0", "target_miou_13"] == pytest.approx(0.25)  # the last evaluation
    assert rows.loc["syn-t0", "test_miou_13_target_val"] == pytest.approx(0.35)  # eval 1
    assert rows.loc["syn-t0", "test_miou_13_source_val"] == pytest.approx(0.25)  # eval 2
    result = run_cli("report", str(tmp_path), "--format", "markdown", "--select", "target_val")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("|"))
    assert "| mIoU (%) | mIoU* (%) |" in header
    # target val picks eval 1 in both trials: mIoU (30, 34) and mIoU* (35, 39)
    full = next(line for line in result.stdout.splitlines() if "| full |" in line)
    assert "| 32.0 ± 2.8 | 37.0 ± 2.8 |" in full
    assert "mIoU*: the same 16-class model" in result.stdout
