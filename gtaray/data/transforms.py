"""The conversions every dataset shares: uint8 image + label map -> a training sample, and the
aspect crops of the authors' loader.

A sample is a dict of tensors:
  image  float32 3xHxW, what F eats, in the experiment's `model.input_format`:
         rgb_imagenet  RGB in [0, 1] normalised by ImageNet's mean and std (torchvision's VGG16)
         bgr_caffe     B, G, R in 0..255 minus the Caffe mean (a Caffe-converted VGG16, the
                       authors' weights)
  rgb    float32 3xHxW, RGB in [0, 1] whatever the format (what G reconstructs and D judges)
  label  int64 HxW, train ids, 255 = ignore

Training batches travel compact instead (`to_compact`): rgb8 uint8 3xHxW and label8 uint8 HxW,
8x fewer bytes to pin and copy than the three tensors above; `expand` makes those three from
them on the device. `to_sample` is `expand` of `to_compact`, so both paths give equal values.
"""

from __future__ import annotations

import numpy as np
import torch

INPUT_FORMATS = ("rgb_imagenet", "bgr_caffe")
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
# The mean the authors subtract (B, G, R; fcn8s's Caffe VGG16, in 0..255).
CAFFE_MEAN_BGR = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(3, 1, 1)


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """[0,1] image(s) (..., 3, H, W) -> ImageNet-normalised."""
    return (rgb - IMAGENET_MEAN.to(rgb)) / IMAGENET_STD.to(rgb)


def model_input(rgb: torch.Tensor, input_format: str = "rgb_imagenet") -> torch.Tensor:
    """[0,1] RGB image(s) (..., 3, H, W) -> F's input in `input_format` (module docstring)."""
    if input_format == "rgb_imagenet":
        return normalise(rgb)
    if input_format == "bgr_caffe":
        return rgb.flip(-3) * 255.0 - CAFFE_MEAN_BGR.to(rgb)
    raise ValueError(f"unknown input format {input_format!r}; allowed: {', '.join(INPUT_FORMATS)}")


def to_compact(image: np.ndarray, label: np.ndarray) -> dict[str, torch.Tensor]:
    """HxWx3 uint8 image and HxW uint8 train-id map -> {"rgb8": 3xHxW, "label8": HxW}, uint8."""
    if image.dtype != np.uint8 or label.dtype != np.uint8:
        raise TypeError(f"need uint8 image and label, got {image.dtype} and {label.dtype}")
    return {
        "rgb8": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
        "label8": torch.from_numpy(np.ascontiguousarray(label)),
    }


def expand(
    rgb8: torch.Tensor, label8: torch.Tensor, input_format: str = "rgb_imagenet"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compact image(s) and label(s), on any device -> (image, rgb, label) as in a sample."""
    rgb = rgb8.float().div_(255.0)
    return model_input(rgb, input_format), rgb, label8.long()


def to_sample(
    image: np.ndarray, label: np.ndarray, input_format: str = "rgb_imagenet"
) -> dict[str, torch.Tensor]:
    """HxWx3 uint8 image and HxW uint8 train-id label map -> sample dict (module docstring)."""
    compact = to_compact(image, label)
    image_t, rgb, label_t = expand(compact["rgb8"], compact["label8"], input_format)
    return {"image": image_t, "rgb": rgb, "label": label_t}


def aspect_window(img_w: int, img_h: int, width: int, height: int) -> tuple[int, int]:
    """(w, h) of the largest window of aspect width:height in an img_w x img_h image: the full
    height when the image is wider than that aspect, else the full width (rounded to pixels)."""
    if img_w * height > width * img_h:  # integer comparison: an exact 2:1 image is not "wider"
        return max(1, min(img_w, (img_h * width + height // 2) // height)), img_h
    return img_w, max(1, min(img_h, (img_w * height + width // 2) // width))


def crop_box(
    img_w: int, img_h: int, width: int, height: int, rng: np.random.Generator | None = None
) -> tuple[int, int, int, int]:
    """(left, top, w, h) of the aspect window: at a random offset along the cropped axis when
    `rng` is given, else centred. The authors' PIL boxes read (start, 0, wnew, hnew), taking
    the window's width for its right edge; this box is (left, top) plus a size."""
    w, h = aspect_window(img_w, img_h, width, height)
    slack_x, slack_y = img_w - w, img_h - h  # at most one is non-zero
    if rng is None:
        return slack_x // 2, slack_y // 2, w, h
    slack = slack_x or slack_y
    offset = int(rng.integers(0, slack + 1)) if slack else 0
    return (offset, 0, w, h) if slack_x else (0, offset, w, h)


def crop_array(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box of an HxW(xC) array (a view)."""
    left, top, w, h = box
    return array[top : top + h, left : left + w]
