"""Segmentation metrics: confusion matrix, per-class IoU, mIoU; summed across DDP ranks.

Usage:
    cm = confusion_matrix(pred, label, num_classes=19)      # rows = target, cols = prediction
    cm = all_reduce_sum(cm)                           # every rank now holds the total
    miou, per_class = iou(cm)

Counting is one `bincount` over target * C + pred, on numpy arrays or torch tensors (on any
device, no host copy for tensors). Pixels whose target is `ignore_index` (or outside
0..C-1) are not counted. A class absent from both prediction and target has IoU NaN and is
left out of the mean, so a test set without trains does not pull mIoU down by 1/19.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch
import torch.distributed as dist

from gtaray.data.labels import IGNORE


@overload
def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE
) -> np.ndarray: ...
@overload
def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE
) -> torch.Tensor: ...
def confusion_matrix(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE,
) -> np.ndarray | torch.Tensor:
    """int64 num_classes x num_classes counts; numpy in -> numpy out, tensor in -> tensor out."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    n2 = num_classes * num_classes
    if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
        t = torch.as_tensor(target).reshape(-1).long()
        p = torch.as_tensor(pred, device=t.device).reshape(-1).long()
        keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
        t, p = t[keep], p[keep]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
            raise ValueError(f"predictions outside 0..{num_classes - 1}")
        return torch.bincount(t * num_classes + p, minlength=n2).reshape(num_classes, num_classes)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    t, p = t[keep], p[keep]
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predictions outside 0..{num_classes - 1}")
    counts = np.bincount(t * num_classes + p, minlength=n2)
    return counts.astype(np.int64).reshape(num_classes, num_classes)


def iou(cm: np.ndarray | torch.Tensor) -> tuple[float, np.ndarray]:
    """(mIoU over present classes, per-class IoU with NaN for classes absent from both)."""
    m = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    m = m.astype(np.float64)
    tp = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - tp
    per_class = np.full(len(tp), np.nan)
    present = union > 0
    per_class[present] = tp[present] / union[present]
    miou = float(per_class[present].mean()) if present.any() else float("nan")
    return miou, per_class


def subset_miou(per_class: np.ndarray, names: list[str], subset: tuple[str, ...]) -> float:
    """Mean IoU over the classes of `subset` only (NaN ones excluded), from the per-class IoUs
    of one confusion matrix: SYNTHIA's mIoU* is the 16-class model's mIoU over its 13 classes
    without wall, fence and pole."""
    missing = [n for n in subset if n not in names]
    if missing:
        raise ValueError(f"classes {missing} are not among the model's {len(names)}")
    values = np.asarray([per_class[names.index(n)] for n in subset], dtype=np.float64)
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: np.ndarray | torch.Tensor) -> float:
    """Fraction of counted pixels predicted correctly (NaN when nothing was counted)."""
    m = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    total = m.sum()
    return float(np.trace(m) / total) if total else float("nan")


def all_reduce_sum(cm: torch.Tensor) -> torch.Tensor:
    """Sum of `cm` (a confusion matrix, or any counts) over all ranks: a new tensor, or `cm`
    itself when not running distributed.

    The tensor must live where the process group's backend expects it (CUDA for NCCL).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return cm
    total = cm.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
