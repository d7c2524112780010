"""Is adaptation happening? G and D measured on held-out images of both domains (no labels).

    means = {"src": mean_rgb(splits.source_val), "tgt": mean_rgb(splits.target_val)}
    sums = batch_sums(nets, features, rgb, "src", means["src"])   # per batch, summed over batches
    summarize(sums) -> {"diag/d_fake_domain_acc": ..., "diag/g_l1_vs_mean": ..., ...}

  diag/d_fake_domain_acc     how often D's 4-way head puts a generated image in the domain it came
                             from (src-real + src-fake against tgt-real + tgt-fake), per pixel.
                             0.5 is chance: F's cross-domain label swap then carries no domain
                             direction and the adversarial channel is empty.
  diag/g_l1, diag/mean_l1    G's mean L1 reconstruction error, and that of the split's mean image
  diag/g_l1_vs_mean          their ratio: >= 1 means G reconstructs worse than a constant image
  diag/d_feature_domain_acc  feature_d: FeatureD's source/target accuracy on fc7 (0.5 = chance)

Nets are called unwrapped, in the mode the caller set (evaluation: eval mode). No Ray here.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from gtaray.method.losses import FEAT_SRC, FEAT_TGT, SRC_FAKE, SRC_REAL, TGT_FAKE, TGT_REAL
from gtaray.method.lsd import unwrap

MEAN_IMAGES = 64  # images averaged for the mean-image baseline
# batch_sums' slots
G_L1, MEAN_L1, L1_VALUES, FAKE_RIGHT, FAKE_JUDGED, FEAT_RIGHT, FEAT_JUDGED = range(7)
SLOTS = 7


def mean_rgb(dataset: Dataset, limit: int = MEAN_IMAGES) -> torch.Tensor:
    """Per-pixel mean [0,1] image (3xHxW) of the first `limit` images of a split."""
    n = min(len(dataset), limit)
    total = sum(dataset[i]["rgb"].double() for i in range(n))
    return (total / n).float()


@torch.no_grad()
def batch_sums(nets, features, rgb: torch.Tensor, domain: str, mean: torch.Tensor) -> torch.Tensor:
    """This batch's counts (float64, SLOTS long): sums, so ranks and batches add up exactly."""
    out = torch.zeros(SLOTS, dtype=torch.float64, device=rgb.device)
    if nets.D is None:
        return out
    src = domain == "src"
    d = unwrap(nets.D)
    if nets.G is None:  # feature_d: FeatureD on fc7
        pred = d(features[0]).argmax(1)
        out[FEAT_RIGHT] = (pred == (FEAT_SRC if src else FEAT_TGT)).sum()
        out[FEAT_JUDGED] = pred.numel()
        return out
    g = unwrap(nets.G)
    fake = g(*features, rgb.shape[2:]).float()
    out[G_L1] = (fake - rgb).abs().sum()
    out[MEAN_L1] = (mean.to(rgb)[None] - rgb).abs().sum()
    out[L1_VALUES] = rgb.numel()
    p = d(fake)[0].float().softmax(1)
    own, other = ((SRC_REAL, SRC_FAKE), (TGT_REAL, TGT_FAKE))[:: 1 if src else -1]
    right = p[:, list(own)].sum(1) > p[:, list(other)].sum(1)
    out[FAKE_RIGHT] = right.sum()
    out[FAKE_JUDGED] = right.numel()
    return out


def summarize(sums: torch.Tensor) -> dict[str, float]:
    """Diagnostics from summed counts; only those the variant's nets can measure."""
    s = sums.tolist()
    out: dict[str, float] = {}
    if s[L1_VALUES]:
        out["diag/g_l1"] = s[G_L1] / s[L1_VALUES]
        out["diag/mean_l1"] = s[MEAN_L1] / s[L1_VALUES]
        out["diag/g_l1_vs_mean"] = s[G_L1] / s[MEAN_L1] if s[MEAN_L1] else float("nan")
    if s[FAKE_JUDGED]:
        out["diag/d_fake_domain_acc"] = s[FAKE_RIGHT] / s[FAKE_JUDGED]
    if s[FEAT_JUDGED]:
        out["diag/d_feature_domain_acc"] = s[FEAT_RIGHT] / s[FEAT_JUDGED]
    return out
