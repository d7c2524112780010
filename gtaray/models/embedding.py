"""F, the embedding: VGG16 conv1_1..conv5_3 + fc6/fc7 as convolutions (the FCN-8s trunk).

    F = Embedding(width=1.0, dropout=0.5)        # width 1.0 = the paper's VGG16
    fc7, pool4, pool3 = F(image)                 # image B x 3 x H x W in model.input_format
    # strides 32, 16, 8; channels F.fc7_channels, F.pool4_channels, F.pool3_channels

H and W must be multiples of 32 (e.g. 1024x512). ImageNet weights: `pretrained.load_vgg16_imagenet`.
"""

from __future__ import annotations

import torch
from torch import nn

from gtaray.models.layers import conv2d

STRIDE = 32
# torchvision's vgg16 "D" configuration: conv widths, "M" = max-pool.
VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]  # fmt: skip
FC_CHANNELS = 4096
# Indices in `features` just after pool3 / pool4 (same indices as torchvision's vgg16().features).
POOL3_END = 17
POOL4_END = 24


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier: max(1, round(channels * width))."""
    return max(1, round(channels * width))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device, so it costs no memory)."""
    return sum(p.numel() for p in module.parameters())


def check_input_size(height: int, width: int) -> None:
    """Raise ValueError unless both sides are multiples of 32 (F's output stride)."""
    if height % STRIDE or width % STRIDE:
        raise ValueError(
            f"input size {width}x{height} (W x H) is not supported: height and width must be "
            f"multiples of {STRIDE} (F downsamples by {STRIDE}), e.g. 1024x512; resize or crop"
        )


class Embedding(nn.Module):
    """VGG16 trunk returning (fc7, pool4, pool3) at strides 32, 16, 8."""

    # conv1_1's and fc6's padding: 1 and 3 keep the maps at exactly input/8, /16, /32.
    # (gtaray.models.authors sets the authors' 100 and 0.)
    first_padding = 1
    fc6_padding = 3

    def __init__(self, width: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG16_CFG:
            if v == "M":
                # ceil_mode as in FCN; with sides that are multiples of 32 it changes nothing.
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            else:
                out_ch = scaled(int(v), width)
                pad = self.first_padding if not layers else 1
                layers += [conv2d(in_ch, out_ch, 3, padding=pad), nn.ReLU(inplace=True)]
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool3_channels = scaled(256, width)
        self.pool4_channels = scaled(512, width)
        self.fc7_channels = scaled(FC_CHANNELS, width)
        # compact: padding 3 keeps stride 32 at the same size; FCN's "pad 100" + crop trick is
        # not needed because sides are required to be multiples of 32.
        self.fc6 = nn.Conv2d(in_ch, self.fc7_channels, 7, padding=self.fc6_padding)
        self.fc7 = nn.Conv2d(self.fc7_channels, self.fc7_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d(dropout)
        self.drop7 = nn.Dropout2d(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's VGG init (Kaiming, fan_out) so thin from-scratch copies train too.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input_size(x.shape[-2], x.shape[-1])
        pool3 = self.features[:POOL3_END](x)
        pool4 = self.features[POOL3_END:POOL4_END](pool3)
        h = self.features[POOL4_END:](pool4)
        h = self.drop6(self.relu(self.fc6(h)))
        fc7 = self.drop7(self.relu(self.fc7(h)))
        return fc7, pool4, pool3
