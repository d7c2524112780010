"""One function per loss term of the method (Sankaranarayanan et al., CVPR 2018, Sec. 3).

Domain labels of D's 4-way head; G's fakes are scored against them per pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gtaray.data.transforms import IGNORE_INDEX

SRC_REAL, SRC_FAKE, TGT_REAL, TGT_FAKE = 0, 1, 2, 3
# FeatureD's 2-way head.
FEAT_SRC, FEAT_TGT = 0, 1


def segmentation(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy of C's scores against train ids; 255 pixels are ignored."""
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def domain(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy of a per-pixel domain head against one constant domain label."""
    target = torch.full(
        (logits.shape[0], *logits.shape[2:]), label, dtype=torch.long, device=logits.device
    )
    return F.cross_entropy(logits, target)


def auxiliary(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """D's auxiliary class head against labels downsampled (nearest) to the head's size.

    A patch made only of ignore pixels contributes nothing; an all-ignore batch gives 0, not NaN.
    """
    small = F.interpolate(labels[:, None].float(), size=logits.shape[2:], mode="nearest")
    small = small[:, 0].long()
    if bool((small == IGNORE_INDEX).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, small, ignore_index=IGNORE_INDEX)


def reconstruction(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between G's image and the real [0,1] image."""
    return F.l1_loss(fake, real)
