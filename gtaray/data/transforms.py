"""The one conversion every dataset shares: uint8 image + label map -> a training sample.

A sample is a dict of tensors:
  image  float32 3xHxW, ImageNet-normalised (what F eats)
  rgb    float32 3xHxW in [0, 1] (what G reconstructs and D judges)
  label  int64 HxW, train ids, 255 = ignore
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """[0,1] image(s) (..., 3, H, W) -> ImageNet-normalised."""
    return (rgb - IMAGENET_MEAN.to(rgb)) / IMAGENET_STD.to(rgb)


def to_sample(image: np.ndarray, label: np.ndarray) -> dict[str, torch.Tensor]:
    """HxWx3 uint8 image and HxW train-id label map -> sample dict (see module docstring)."""
    rgb = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return {
        "image": normalise(rgb),
        "rgb": rgb,
        "label": torch.from_numpy(np.ascontiguousarray(label)).long(),
    }
