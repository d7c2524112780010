"""One function per loss term of the method (Sankaranarayanan et al., CVPR 2018, Sec. 3).

Units (`reduction`):
  "sum"   the authors' code: a cross-entropy is summed over labelled pixels and divided by the
          batch size; L1 is a mean. alpha = beta = 0.1 mean the paper's method only in these
          units. (Their code also divides G's L1 mean by the batch size; at their batch size, 1,
          that is the same number. Kept a mean here, N DDP workers x batch b compute exactly what
          one worker with batch N*b does.)
  "mean"  every term is a per-pixel mean (an option; not the paper's weighting).

Domain labels of D's 4-way head; G's fakes are scored against them per pixel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from gtaray.data.labels import IGNORE

SRC_REAL, SRC_FAKE, TGT_REAL, TGT_FAKE = 0, 1, 2, 3
# FeatureD's 2-way head.
FEAT_SRC, FEAT_TGT = 0, 1
Reduction = Literal["sum", "mean"]


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: Reduction):
    """Summed (per image) or mean over labelled pixels; 0, not NaN, when none is labelled.
    Never waits for the device (no branch on tensor values)."""
    total = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
    if reduction == "sum":
        return total / logits.shape[0]
    return total / (target != IGNORE).sum().clamp(min=1)


def segmentation(
    logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "sum"
) -> torch.Tensor:
    """Pixel cross-entropy of C's scores against train ids; 255 pixels are ignored."""
    return _cross_entropy(logits, labels, reduction)


def domain(logits: torch.Tensor, label: int, reduction: Reduction = "sum") -> torch.Tensor:
    """Cross-entropy of a per-pixel domain head against one constant domain label."""
    target = torch.full(
        (logits.shape[0], *logits.shape[2:]), label, dtype=torch.long, device=logits.device
    )
    return _cross_entropy(logits, target, reduction)


def patch_labels(labels: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Labels downsampled (nearest) to a head's map size."""
    small = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return small[:, 0].long()


def auxiliary(
    logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "sum"
) -> torch.Tensor:
    """D's auxiliary class head against labels downsampled (nearest) to the head's size.

    A patch made only of ignore pixels contributes nothing; an all-ignore batch gives 0, not NaN.
    """
    return _cross_entropy(logits, patch_labels(labels, logits.shape[2:]), reduction)


def reconstruction(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean L1 between G's image and the real [0,1] image (a mean in either unit)."""
    return F.l1_loss(fake, real)
