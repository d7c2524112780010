"""C, the pixel classifier: FCN-8s score layers, skip fusion and upsampling to the input size.

    C = Classifier(num_classes=19, width=1.0)     # width must match F's; 2x upsamplers fixed
    logits = C(fc7, pool4, pool3, size=(H, W))    # B x num_classes x H x W

Final 8x step: fixed bilinear interpolation (F.interpolate), not a transposed convolution. The
FCN paper fixes that last layer to bilinear interpolation anyway (only the 2x layers learn), so
this is the same function with no parameters, and it lands exactly on `size` without FCN's crop
offsets. The two 2x transposed convolutions start bilinear and, by default, stay so
(`learn_upsampling=False`, requires_grad off): the authors never give them to the optimizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gtaray.models.embedding import FC_CHANNELS, scaled


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Transposed-convolution weight that upsamples each channel bilinearly (channel-diagonal)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt1d[:, None] * filt1d[None, :]
    return weight


def bilinear_up(channels: int, kernel: int, stride: int, padding: int = 0) -> nn.ConvTranspose2d:
    """A transposed convolution without bias that starts as per-channel bilinear upsampling."""
    up = nn.ConvTranspose2d(channels, channels, kernel, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, kernel))
    return up


def upsample2x(channels: int) -> nn.ConvTranspose2d:
    """Learned 2x upsampling, bilinear at init; kernel 4, stride 2, padding 1 gives exactly 2x."""
    return bilinear_up(channels, 4, 2, padding=1)


class Classifier(nn.Module):
    """FCN-8s head on F's (fc7, pool4, pool3)."""

    def __init__(
        self, num_classes: int, width: float = 1.0, learn_upsampling: bool = False
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.score_fr = nn.Conv2d(scaled(FC_CHANNELS, width), num_classes, 1)
        self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1)
        self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1)
        self.upscore2 = upsample2x(num_classes)
        self.upscore_pool4 = upsample2x(num_classes)
        for up in (self.upscore2, self.upscore_pool4):
            up.weight.requires_grad_(learn_upsampling)
        # FCN zero-initialises the score layers: training starts from "no opinion" and the skips
        # add nothing until they learn to.
        for conv in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(
        self, fc7: torch.Tensor, pool4: torch.Tensor, pool3: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        for name, skip, factor in (("pool4", pool4, 2), ("pool3", pool3, 4)):
            want = tuple(factor * s for s in fc7.shape[-2:])
            if tuple(skip.shape[-2:]) != want:
                raise ValueError(
                    f"{name} is {tuple(skip.shape[-2:])}, expected {want} (fc7 x{factor})"
                )
        h = self.upscore2(self.score_fr(fc7)) + self.score_pool4(pool4)  # stride 16
        h = self.upscore_pool4(h) + self.score_pool3(pool3)  # stride 8
        return F.interpolate(h, size=tuple(size), mode="bilinear", align_corners=False)
