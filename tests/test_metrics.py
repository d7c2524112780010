"""Confusion matrix, IoU and the cross-rank sum, checked against hand-computed values."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gtaray.metrics import all_reduce_sum, confusion_matrix, iou, pixel_accuracy

# 3 classes; target 255 pixels are ignored whatever the prediction.
TARGET = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
# rows = target, cols = prediction
EXPECTED_CM = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_confusion_matrix_counts_rows_target_cols_prediction_without_ignored_pixels():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert isinstance(cm, np.ndarray) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, EXPECTED_CM)


def test_torch_input_gives_int64_tensor_equal_to_numpy_result():
    cm = confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET), 3)
    assert isinstance(cm, torch.Tensor) and cm.dtype == torch.int64
    assert cm.device == torch.device("cpu")
    np.testing.assert_array_equal(cm.numpy(), EXPECTED_CM)


def test_iou_matches_hand_computation():
    miou, per_class = iou(EXPECTED_CM)
    # class 0: tp 1 / (row 2 + col 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 1/2
    np.testing.assert_allclose(per_class, [1 / 3, 2 / 3, 1 / 2])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(EXPECTED_CM) == pytest.approx(4 / 6)


def test_class_absent_from_prediction_and_target_is_nan_and_left_out_of_the_mean():
    cm = confusion_matrix(np.array([0, 0, 1, 3]), np.array([0, 1, 1, 3]), 4)
    miou, per_class = iou(cm)
    assert math.isnan(per_class[2])
    np.testing.assert_allclose(per_class[[0, 1, 3]], [1 / 2, 1 / 2, 1.0])
    assert miou == pytest.approx(2 / 3)


def test_class_only_predicted_or_only_in_target_scores_zero_not_nan():
    cm = confusion_matrix(np.array([1, 1]), np.array([0, 0]), 2)
    miou, per_class = iou(cm)
    np.testing.assert_array_equal(per_class, [0.0, 0.0])
    assert miou == 0.0


def test_all_ignored_gives_nan_miou():
    cm = confusion_matrix(np.zeros(4, np.int64), np.full(4, 255), 19)
    assert cm.sum() == 0
    miou, per_class = iou(cm)
    assert math.isnan(miou) and np.isnan(per_class).all()


def test_bad_predictions_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([5]), np.array([0]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3, np.int64), np.zeros(4, np.int64), 3)


def test_all_reduce_is_identity_without_a_process_group():
    cm = torch.ones(3, 3, dtype=torch.int64)
    assert all_reduce_sum(cm) is cm


def _data(num_classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (4, 16, 16), generator=g)
    target[:, :2] = 255
    pred = torch.randint(0, num_classes, (4, 16, 16), generator=g)
    return pred, target


def _rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        pred, target = _data()
        mine = slice(rank * 2, rank * 2 + 2)  # each rank evaluates two of the four images
        cm = all_reduce_sum(confusion_matrix(pred[mine], target[mine], 5))
        torch.save(cm, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_summed_confusion_equals_single_process_exactly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    pred, target = _data()
    whole = confusion_matrix(pred, target, 5)
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), whole)
