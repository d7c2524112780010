"""D, the patch discriminator with a 4-way domain head and an auxiliary label head; and FeatureD.

    D = Discriminator(num_classes=19, width=1.0, aux=True, dropout=0.5)
    domain, aux = D(rgb)          # rgb B x 3 x H x W in [0, 1]; maps at stride 8:
                                  # domain B x 4 x H/8 x W/8 (0 src-real, 1 src-fake,
                                  # 2 tgt-real, 3 tgt-fake); aux B x num_classes x H/8 x W/8
    D = Discriminator(19, aux=False)   # no aux head, no aux parameters; aux is None

    FD = FeatureD(in_channels=F.fc7_channels)
    domain = FD(fc7)              # B x 2 x h x w (0 source, 1 target), the `feature_d` variant

Depth follows the authors' _netD: 2*ndf = 128 channels throughout, nine residual blocks, output
stride 8, 3x3 heads, dropout in every residual block (the authors' 0.5). We downsample with
stride-2 4x4 convolutions instead of max-pools.
"""

from __future__ import annotations

import torch
from torch import nn

from gtaray.models.embedding import scaled
from gtaray.models.generator import ResBlock
from gtaray.models.layers import InstanceNorm2d, conv2d

DOMAINS = 4  # 0 src-real, 1 src-fake, 2 tgt-real, 3 tgt-fake
SLOPE = 0.2


def down_block(in_ch: int, out_ch: int, dropout: float, blocks: int = 3) -> nn.Sequential:
    """Stride-2 4x4 conv + instance norm + LeakyReLU, then residual blocks at that scale."""
    return nn.Sequential(
        conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
        InstanceNorm2d(out_ch),
        nn.LeakyReLU(SLOPE, inplace=True),
        *[ResBlock(out_ch, dropout, negative_slope=SLOPE) for _ in range(blocks)],
    )


class Discriminator(nn.Module):
    """Per-patch (stride 8) domain classifier with an optional ACGAN-style label head."""

    def __init__(
        self, num_classes: int, width: float = 1.0, aux: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        ch = scaled(128, width)
        self.trunk = nn.Sequential(
            down_block(3, ch, dropout), down_block(ch, ch, dropout), down_block(ch, ch, dropout)
        )
        self.domain_head = nn.Conv2d(ch, DOMAINS, 3, padding=1)
        # the no_aux variant must not even own the head, so its optimiser and counts exclude it.
        self.aux_head = nn.Conv2d(ch, num_classes, 3, padding=1) if aux else None

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(rgb)
        aux = self.aux_head(h) if self.aux_head is not None else None
        return self.domain_head(h), aux


class FeatureD(nn.Module):
    """FCNs-in-the-wild style source/target classifier at each fc7 location."""

    def __init__(self, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        hidden, half = scaled(1024, width), scaled(512, width)
        # No normalisation: fc7 maps of small inputs are 1x1 or 2x1, too small for instance norm.
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(hidden, half, 3, padding=1),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(half, 2, 1),
        )

    def forward(self, fc7: torch.Tensor) -> torch.Tensor:
        return self.net(fc7)
