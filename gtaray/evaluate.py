"""Evaluation of a trial's nets: exact mIoU over all ranks, and the adaptation diagnostics.

    means = mean_images(nets, splits)                   # once per trial (adversarial variants)
    metrics = evaluate(nets, splits, exp, device, means)
    # target_miou, target_val_miou, source_val_miou, iou_<class>, diag/... (see diagnostics.py)

Each rank scores its shard and the confusion matrices (and diagnostic counts) are summed over
ranks, so the mIoU is the one of the whole split. With `data.eval_resolution: label` predictions
are resized (nearest) to each label file's own size, as the authors score Cityscapes at 2048x1024.
No Ray here: plain torch.distributed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from gtaray.config import Experiment
from gtaray.data.labels import CLASSES
from gtaray.data.pairs import shard_indices
from gtaray.data.splits import Splits, class_names
from gtaray.method import diagnostics, lsd
from gtaray.metric_names import iou_column
from gtaray.metrics import all_reduce_sum, confusion_matrix, iou, subset_miou

EVAL_BATCH = 8


def resize_prediction(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """HxW class map -> `size`, nearest on pixel centres (the loaders' label resize; equal to
    PIL's NEAREST, the authors' resize, at integer factors such as 1024x512 -> 2048x1024)."""
    if tuple(pred.shape) == tuple(size):
        return pred
    big = F.interpolate(pred[None, None].float(), size=tuple(size), mode="nearest-exact")
    return big[0, 0].to(pred.dtype)


def mean_images(nets: lsd.Nets, splits: Splits) -> dict[str, torch.Tensor] | None:
    """The val splits' mean images, G's baseline; None when the variant has no G."""
    if nets.G is None:
        return None
    return {
        "src": diagnostics.mean_rgb(splits.source_val),
        "tgt": diagnostics.mean_rgb(splits.target_val),
    }


@torch.no_grad()
def evaluate_split(
    nets: lsd.Nets,
    dataset,
    exp: Experiment,
    device: torch.device,
    domain: str | None = None,
    mean: torch.Tensor | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """(confusion matrix, diagnostic counts) of this split, summed over all ranks.

    Diagnostics are measured when `domain` ("src" or "tgt") is given; `mean` is that domain's
    mean image (adversarial variants).
    """
    for _, net in nets.items():
        net.eval()
    f, c = lsd.unwrap(nets.F), lsd.unwrap(nets.C)
    k = exp.data.num_classes
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    cm = torch.zeros(k, k, dtype=torch.int64, device=device)
    sums = torch.zeros(diagnostics.SLOTS, dtype=torch.float64, device=device)
    indices = shard_indices(len(dataset), rank, world)
    for start in range(0, len(indices), EVAL_BATCH):
        samples = [dataset[i] for i in indices[start : start + EVAL_BATCH]]
        x = torch.stack([s["image"] for s in samples]).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=exp.train.precision == "bf16"):
            features = f(x)
            preds = c(*features, x.shape[2:]).argmax(1)
            if domain is not None:
                rgb = torch.stack([s["rgb"] for s in samples]).to(device)
                sums += diagnostics.batch_sums(nets, features, rgb, domain, mean)
        for pred, sample in zip(preds, samples, strict=True):
            label = sample["label"].to(device)
            cm += confusion_matrix(resize_prediction(pred, label.shape), label, k)
    return all_reduce_sum(cm).cpu().numpy(), all_reduce_sum(sums).cpu()


def evaluate(
    nets: lsd.Nets, splits: Splits, exp: Experiment, device, means: dict | None = None
) -> dict[str, float]:
    """Target test / target val / source val mIoU, per-class test IoU and the diagnostics;
    16-class runs add the test mIoU* over SYNTHIA's 13 classes (`target_miou_13`)."""
    means = means or {}
    cm_test, _ = evaluate_split(nets, splits.target_test, exp, device)
    cm_tv, sums_t = evaluate_split(nets, splits.target_val, exp, device, "tgt", means.get("tgt"))
    cm_sv, sums_s = evaluate_split(nets, splits.source_val, exp, device, "src", means.get("src"))
    miou, per_class = iou(cm_test)
    out = {
        "target_miou": miou,
        "target_val_miou": iou(cm_tv)[0],
        "source_val_miou": iou(cm_sv)[0],
    }
    names = class_names(exp)
    if exp.data.num_classes == 16:  # SYNTHIA's protocol: mIoU* of the same model
        out["target_miou_13"] = subset_miou(per_class, names, CLASSES[13])
    for name, value in zip(names, per_class, strict=True):
        out[iou_column(name)] = float(value)
    return out | diagnostics.summarize(sums_t + sums_s)
