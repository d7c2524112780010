"""G, the generator: reconstructs the RGB image from F's (fc7, pool4, pool3).

    G = Generator(F.fc7_channels, F.pool4_channels, F.pool3_channels, width=1.0, dropout=0.5)
    rgb = G(fc7, pool4, pool3, size=(H, W))       # B x 3 x H x W in [0, 1] (sigmoid)

Stride 32 -> 1 by five 2x transposed convolutions, with instance norm, residual blocks, and the
pool4 / pool3 maps projected (1x1 conv) and concatenated on the way up. There is no noise vector:
as in the paper and the authors' code (noise size nz = 0), dropout in every residual block is G's
only source of randomness (pix2pix style).
"""

from __future__ import annotations

import torch
from torch import nn

from gtaray.models.embedding import STRIDE, scaled
from gtaray.models.layers import Fp32ConvTranspose2d, InstanceNorm2d


class ResBlock(nn.Module):
    """x + dropout(act(norm(conv3x3(x)))): one conv per block, as in the authors' G and D."""

    def __init__(
        self,
        channels: int,
        dropout: float = 0.0,
        negative_slope: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            # bias off by default: instance norm (affine=False) subtracts it again (the authors'
            # D has one anyway, so `authors` keeps it for an equal parameter count).
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias),
            InstanceNorm2d(channels),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def up_block(in_ch: int, out_ch: int, dropout: float, blocks: int = 2) -> nn.Sequential:
    """2x transposed conv + norm + ReLU + residual blocks (kernel 4 = 2 x stride: even overlap)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
        InstanceNorm2d(out_ch),
        nn.ReLU(inplace=True),
        *[ResBlock(out_ch, dropout) for _ in range(blocks)],
    )


def projection(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1 conv that brings a skip map down to the decoder's width before concatenation."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False), InstanceNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class Generator(nn.Module):
    """Decoder from (fc7, pool4, pool3) at strides (32, 16, 8) to a [0,1] image at stride 1."""

    def __init__(
        self,
        fc7_channels: int,
        pool4_channels: int,
        pool3_channels: int,
        width: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        ngf = scaled(64, width)
        # stride 32: squeeze fc7 (4096 ch) with one 3x3 conv (the authors use a 7x7 transposed
        # conv, 5x the parameters). No instance norm here: at small inputs this map is 1x1 or 2x1,
        # where per-image statistics are undefined or degenerate.
        self.stem = nn.Sequential(
            nn.Conv2d(fc7_channels, ngf * 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.up16 = up_block(ngf * 4, ngf * 8, dropout)  # -> stride 16
        self.proj4 = projection(pool4_channels, ngf * 4)
        self.up8 = up_block(ngf * 8 + ngf * 4, ngf * 4, dropout)  # -> stride 8
        self.proj3 = projection(pool3_channels, ngf * 2)
        self.up4 = up_block(ngf * 4 + ngf * 2, ngf * 2, dropout)  # -> stride 4
        self.up2 = up_block(ngf * 2, ngf, dropout)  # -> stride 2
        self.to_rgb = Fp32ConvTranspose2d(ngf, 3, 4, stride=2, padding=1)  # -> stride 1, fp32

    def forward(
        self, fc7: torch.Tensor, pool4: torch.Tensor, pool3: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        want = tuple(STRIDE * s for s in fc7.shape[-2:])
        if tuple(size) != want:
            raise ValueError(f"size {tuple(size)} does not match fc7 x{STRIDE} = {want}")
        h = self.up16(self.stem(fc7))
        h = self.up8(torch.cat([h, self.proj4(pool4)], dim=1))
        h = self.up4(torch.cat([h, self.proj3(pool3)], dim=1))
        return torch.sigmoid(self.to_rgb(self.up2(h)))
